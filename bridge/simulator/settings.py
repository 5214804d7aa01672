"""Simulator settings: the ``SIMULATOR_*`` environment variables, read once into a frozen value.

Owns the simulator's configuration only; reads the mapping it is given (never ``os.environ``)
and reports every bad variable at once, by name. No I/O.

The ``/_sim`` admin endpoints can read what the simulator recorded and post any webhook body to
the bridge with the bridge's own token, so they are for local use: a bind to anything but a
loopback address is refused unless ``SIMULATOR_ADMIN_TOKEN`` is set, and then every ``/_sim``
request must carry it as a bearer token.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from bridge.simulator.checks import is_http_url, is_jid
from bridge.simulator.keys import ApiKey, Secret, parse_keys

#: The channel of the reference's "Read API keys" example, which the simulator serves by default.
DEFAULT_CHANNEL = "31612345678@whatsapp.eazy.im"
#: The shortest admin token accepted (the same floor as the bridge's webhook tokens).
ADMIN_TOKEN_MIN_LENGTH = 16


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the simulator on this machine (``localhost``, 127/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or a wildcard such as 0.0.0.0 may be reachable from outside


class SimulatorConfigError(Exception):
    """One or more ``SIMULATOR_*`` variables are invalid; ``problems`` names each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.problems))


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    """How the simulator listens, whom it lets in, and how it delivers webhooks."""

    host: str = "127.0.0.1"
    port: int = 8800
    api_keys: tuple[ApiKey, ...] = (ApiKey(Secret("sim-key")),)
    #: The channels ``GET /channels`` lists besides those the keys name.
    channels: tuple[str, ...] = (DEFAULT_CHANNEL,)
    #: A webhook for every event on every channel, registered at start (None: none).
    webhook_url: str | None = None
    webhook_headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: Seconds between a send and its ``delivered`` receipt, and between ``delivered`` and ``read``.
    receipt_delay: float = 0.2
    retry_base: float = 0.5
    retry_max: float = 30.0
    #: Delivery attempts per webhook call; 0 retries forever, like the platform.
    max_attempts: int = 0
    #: Required as ``Authorization: Bearer`` on ``/_sim`` when set (None: /_sim is open).
    admin_token: Secret | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SimulatorSettings:
        """Read ``SIMULATOR_*`` variables; raise :class:`SimulatorConfigError` naming each bad
        one."""
        problems: list[str] = []

        def get(name: str) -> str | None:
            value = environ.get(name, "").strip()
            return value or None

        def number(name: str, default: float, low: float, *, integer: bool = False) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = int(raw) if integer else float(raw)
            except ValueError:
                problems.append(f"{name}: expected {'an integer' if integer else 'a number'}")
                return default
            if not math.isfinite(value) or value < low:
                problems.append(f"{name}: must be at least {low:g}, got {raw}")
                return default
            return value

        port = int(number("SIMULATOR_PORT", 8800, 0, integer=True))
        if port > 65535:
            problems.append(f"SIMULATOR_PORT: must be at most 65535, got {port}")
        keys, key_problems = parse_keys(get("SIMULATOR_API_KEYS") or "sim-key")
        problems += key_problems
        channels = tuple(
            c.strip() for c in (get("SIMULATOR_CHANNELS") or DEFAULT_CHANNEL).split(",")
        )
        if not all(is_jid(c) for c in channels):
            problems.append("SIMULATOR_CHANNELS: comma-separated channel JIDs")
        url = get("SIMULATOR_WEBHOOK_URL")
        if url is not None and not is_http_url(url):
            problems.append(f"SIMULATOR_WEBHOOK_URL: must be an http(s) URL, got {url!r}")
        headers = _headers(get("SIMULATOR_WEBHOOK_HEADERS"), problems)
        host = get("SIMULATOR_HOST") or "127.0.0.1"
        admin_token = get("SIMULATOR_ADMIN_TOKEN")
        if admin_token is not None and len(admin_token) < ADMIN_TOKEN_MIN_LENGTH:
            problems.append(
                f"SIMULATOR_ADMIN_TOKEN: at least {ADMIN_TOKEN_MIN_LENGTH} characters, "
                f"got {len(admin_token)}"
            )
        if admin_token is None and not is_loopback(host):
            problems.append(
                f"SIMULATOR_HOST: {host!r} is not a loopback address; the /_sim admin endpoints "
                "would be open to the network: set SIMULATOR_ADMIN_TOKEN (then required as "
                "'Authorization: Bearer <token>' on /_sim) or bind 127.0.0.1"
            )
        settings = cls(
            host=host,
            port=port,
            api_keys=keys,
            channels=channels,
            webhook_url=url,
            webhook_headers=headers,
            receipt_delay=number("SIMULATOR_RECEIPT_DELAY", 0.2, 0.0),
            retry_base=number("SIMULATOR_RETRY_BASE", 0.5, 0.001),
            retry_max=number("SIMULATOR_RETRY_MAX", 30.0, 0.001),
            max_attempts=int(number("SIMULATOR_MAX_ATTEMPTS", 0, 0, integer=True)),
            admin_token=Secret(admin_token) if admin_token is not None else None,
        )
        if problems:
            raise SimulatorConfigError(problems)
        return settings


def _headers(raw: str | None, problems: list[str]) -> dict[str, str]:
    if raw is None:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        problems.append(
            'SIMULATOR_WEBHOOK_HEADERS: must be a JSON object of strings, like {"a": "b"}'
        )
        return {}
    return value
