"""The simulator's API keys: a secret, a scope and the channels it may use ("API keys", "Scopes").

Owns parsing ``SIMULATOR_API_KEYS``, finding the key a request carries (its own reading of the
reference's ``Authorization: Bearer <key>``, ``rules.ASSUMPTIONS["bearer"]``: the simulator
shares no check with the webhook port), and deciding whether that key may call an endpoint: its
scope must reach the endpoint's label and the channel in the path must be among its objects
(``rules.ASSUMPTIONS["scope-hierarchy"]`` and ``["objects"]``). Pure; no I/O.

``SIMULATOR_API_KEYS`` is either comma-separated plain keys (each an ``owner`` key for every
channel), or a JSON array like ``[{"key": "k", "scope": "channel", "channels": ["..."]}]``.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from bridge.simulator import rules
from bridge.simulator.checks import is_jid


class Secret:
    """A key or token that never shows itself in ``repr``/``str``; :meth:`reveal` gives it.
    The simulator's own (it imports nothing from the bridge's core)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key. ``channels`` empty: every channel (``rules.ASSUMPTIONS["objects"]``)."""

    secret: Secret
    scope: str = "owner"
    channels: tuple[str, ...] = ()
    description: str | None = None

    @property
    def id(self) -> str:
        """A stable id derived from the key (the platform stores only a hash of it)."""
        digest = hashlib.sha256(self.secret.reveal().encode("utf-8", "surrogatepass")).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))

    def reaches(self, label: str) -> bool:
        return label in rules.SCOPE_GRANTS[self.scope]

    def may_use(self, channel: str) -> bool:
        return not self.channels or channel in self.channels

    def to_json(self) -> dict[str, Any]:
        """The "Read API keys" object."""
        return {
            "cipherKey": None,
            "description": self.description,
            "id": self.id,
            "lastUsed": None,
            "objects": [{"jid": jid, "type": "CHANNEL"} for jid in self.channels],
            "scope": self.scope.upper(),
            "whitelist": None,
        }


def bearer(header: str) -> bytes | None:
    """The key of an ``Authorization: Bearer <key>`` value ("Authentication",
    ``rules.ASSUMPTIONS["bearer"]``), as bytes; ``None`` for any other value."""
    scheme, _, key = header.partition(" ")
    key = key.lstrip(" ")
    if scheme.lower() != "bearer" or not key or any(c.isspace() for c in key):
        return None
    return key.encode("utf-8", "surrogatepass")  # a surrogate compares, never matches


def carries(header: str, secret: Secret) -> bool:
    """Whether ``header`` carries ``secret`` (a constant-time comparison)."""
    given = bearer(header)
    return given is not None and hmac.compare_digest(
        given, secret.reveal().encode("utf-8", "surrogatepass")
    )


def find_key(header: str, keys: tuple[ApiKey, ...]) -> ApiKey | None:
    """The key an ``Authorization`` header carries; every key is compared (constant time)."""
    matches = [carries(header, key.secret) for key in keys]
    return next((key for key, hit in zip(keys, matches, strict=True) if hit), None)


def parse_keys(raw: str) -> tuple[tuple[ApiKey, ...], list[str]]:
    """Keys from ``SIMULATOR_API_KEYS``, and the problems found (named by the variable)."""
    name = "SIMULATOR_API_KEYS"
    if not raw.lstrip().startswith(("[", "{")):
        plain = [k.strip() for k in raw.split(",")]
        if not all(plain):
            return (), [f"{name}: comma-separated keys, none of them empty"]
        return tuple(ApiKey(Secret(k)) for k in plain), []
    try:
        items = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return (), [f"{name}: not valid JSON"]
    if not isinstance(items, list):
        return (), [f"{name}: a JSON array of keys"]
    problems: list[str] = []
    keys: list[ApiKey] = []
    for i, item in enumerate(items):
        where = f"{name}[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"]:
            problems.append(f'{where}: must be an object with a non-empty "key"')
            continue
        unknown = set(item) - {"key", "scope", "channels", "description"}
        scope = item.get("scope", "owner")
        channels = item.get("channels", [])
        description = item.get("description")
        if unknown:
            problems.append(f"{where}: unknown fields {', '.join(sorted(unknown))}")
        elif scope not in rules.SCOPES:
            problems.append(f"{where}.scope: one of {', '.join(rules.SCOPES)}")
        elif not isinstance(channels, list) or not all(is_jid(c) for c in channels):
            problems.append(f"{where}.channels: must be an array of channel JIDs")
        elif description is not None and not isinstance(description, str):
            problems.append(f"{where}.description: must be a string")
        else:
            keys.append(ApiKey(Secret(item["key"]), scope, tuple(channels), description))
    if not keys and not problems:
        problems.append(f"{name}: at least one key")
    return tuple(keys), problems
