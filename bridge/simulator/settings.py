"""Simulator settings: the ``SIMULATOR_*`` environment variables, read once into a frozen value.

Owns the simulator's configuration only; reads the mapping it is given (never ``os.environ``)
and reports every bad variable at once, by name. No I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from bridge.core.config import Secret
from bridge.core.errors import ConfigError
from bridge.simulator.checks import is_http_url, is_jid
from bridge.simulator.keys import ApiKey, parse_keys

#: The channel of the reference's "Read API keys" example, which the simulator serves by default.
DEFAULT_CHANNEL = "31612345678@whatsapp.eazy.im"


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

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SimulatorSettings:
        """Read ``SIMULATOR_*`` variables; raise :class:`ConfigError` naming each bad one."""
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
        settings = cls(
            host=get("SIMULATOR_HOST") or "127.0.0.1",
            port=port,
            api_keys=keys,
            channels=channels,
            webhook_url=url,
            webhook_headers=headers,
            receipt_delay=number("SIMULATOR_RECEIPT_DELAY", 0.2, 0.0),
            retry_base=number("SIMULATOR_RETRY_BASE", 0.5, 0.001),
            retry_max=number("SIMULATOR_RETRY_MAX", 30.0, 0.001),
            max_attempts=int(number("SIMULATOR_MAX_ATTEMPTS", 0, 0, integer=True)),
        )
        if problems:
            raise ConfigError(problems)
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
