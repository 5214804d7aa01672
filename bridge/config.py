"""Settings: the ``BRIDGE_*`` environment variables, read once into frozen dataclasses.

This module owns configuration and nothing else. It reads a ``Mapping[str, str]`` handed to it
(never ``os.environ`` directly), validates every value, and reports *all* bad variables at once,
each by name. Secrets are wrapped in :class:`Secret` so that printing settings never shows them.
It imports no I/O library.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from bridge.errors import ConfigError

T = TypeVar("T")

Role = Literal["ingress", "egress", "serve", "simulator"]

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")
_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class Secret:
    """A string that never shows itself in ``repr``/``str``; call :meth:`reveal` to use it."""

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
class KafkaSettings:
    bootstrap_servers: str = "localhost:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: str | None = None
    topic_prefix: str = "spotler"
    linger_ms: int = 0


@dataclass(frozen=True, slots=True)
class IngressSettings:
    host: str = "0.0.0.0"
    port: int = 8080
    webhook_tokens: tuple[Secret, ...] = ()
    auth_disabled: bool = False
    max_body_bytes: int = 1024 * 1024
    read_timeout: float = 10.0
    publish_timeout: float = 5.0
    dedup_size: int = 100_000
    dedup_ttl: float = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class SpoolSettings:
    dir: str = "./var/spool"
    max_bytes: int = 1024 * 1024 * 1024
    segment_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ApiSettings:
    url: str = "https://api.eazy.im/v3"
    api_key: Secret | None = None
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class EgressSettings:
    group_id: str = "spotler-bridge-egress"
    concurrency: int = 64
    max_attempts: int = 8
    retry_deadline: float = 300.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    rate_limit: float = 200.0
    channel_rate_limit: float = 50.0
    max_age: float = 24 * 3600.0
    circuit_failures: int = 10
    circuit_open_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class Settings:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    ingress: IngressSettings = field(default_factory=IngressSettings)
    spool: SpoolSettings = field(default_factory=SpoolSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    egress: EgressSettings = field(default_factory=EgressSettings)
    ops_port: int = 9090
    shutdown_timeout: float = 25.0
    log_level: str = "info"
    log_format: str = "json"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from ``environ``; raise :class:`ConfigError` naming every bad variable."""
        r = _Reader(environ)
        tokens = tuple(
            Secret(t.strip()) for t in r.text("BRIDGE_WEBHOOK_TOKENS", "").split(",") if t.strip()
        )
        auth = r.choice("BRIDGE_WEBHOOK_AUTH", "token", ("token", "none"))
        password = r.opt("BRIDGE_KAFKA_SASL_PASSWORD")
        api_key = r.opt("BRIDGE_SPOTLER_API_KEY")
        settings = cls(
            kafka=KafkaSettings(
                bootstrap_servers=r.text("BRIDGE_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
                security_protocol=r.choice(
                    "BRIDGE_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", SECURITY_PROTOCOLS, upper=True
                ),
                sasl_mechanism=r.opt_choice(
                    "BRIDGE_KAFKA_SASL_MECHANISM", SASL_MECHANISMS, upper=True
                ),
                sasl_username=r.opt("BRIDGE_KAFKA_SASL_USERNAME"),
                sasl_password=Secret(password) if password else None,
                ssl_cafile=r.opt("BRIDGE_KAFKA_SSL_CAFILE"),
                topic_prefix=r.match("BRIDGE_TOPIC_PREFIX", "spotler", _TOPIC_PREFIX),
                linger_ms=r.integer("BRIDGE_KAFKA_LINGER_MS", 0, low=0, high=1000),
            ),
            ingress=IngressSettings(
                host=r.text("BRIDGE_HTTP_HOST", "0.0.0.0"),
                port=r.integer("BRIDGE_HTTP_PORT", 8080, low=0, high=65535),
                webhook_tokens=tokens,
                auth_disabled=auth == "none",
                max_body_bytes=r.integer("BRIDGE_MAX_BODY_BYTES", 1024 * 1024, low=1024),
                read_timeout=r.number("BRIDGE_HTTP_READ_TIMEOUT", 10.0, low=0.1),
                publish_timeout=r.number("BRIDGE_PUBLISH_TIMEOUT", 5.0, low=0.05),
                dedup_size=r.integer("BRIDGE_DEDUP_SIZE", 100_000, low=0),
                dedup_ttl=r.number("BRIDGE_DEDUP_TTL", 24 * 3600.0, low=0.0),
            ),
            spool=SpoolSettings(
                dir=r.text("BRIDGE_SPOOL_DIR", "./var/spool"),
                max_bytes=r.integer("BRIDGE_SPOOL_MAX_BYTES", 1024**3, low=1024 * 1024),
                segment_bytes=r.integer("BRIDGE_SPOOL_SEGMENT_BYTES", 16 * 1024**2, low=64 * 1024),
            ),
            api=ApiSettings(
                url=r.url("BRIDGE_SPOTLER_API_URL", "https://api.eazy.im/v3"),
                api_key=Secret(api_key) if api_key else None,
                timeout=r.number("BRIDGE_SPOTLER_API_TIMEOUT", 10.0, low=0.1),
            ),
            egress=EgressSettings(
                group_id=r.text("BRIDGE_EGRESS_GROUP_ID", "spotler-bridge-egress"),
                concurrency=r.integer("BRIDGE_EGRESS_CONCURRENCY", 64, low=1, high=10_000),
                max_attempts=r.integer("BRIDGE_EGRESS_MAX_ATTEMPTS", 8, low=1, high=100),
                retry_deadline=r.number("BRIDGE_EGRESS_RETRY_DEADLINE", 300.0, low=0.1),
                backoff_base=r.number("BRIDGE_EGRESS_BACKOFF_BASE", 0.5, low=0.001),
                backoff_max=r.number("BRIDGE_EGRESS_BACKOFF_MAX", 30.0, low=0.001),
                rate_limit=r.number("BRIDGE_EGRESS_RATE_LIMIT", 200.0, low=0.0),
                channel_rate_limit=r.number("BRIDGE_EGRESS_CHANNEL_RATE_LIMIT", 50.0, low=0.0),
                max_age=r.number("BRIDGE_EGRESS_MAX_AGE", 24 * 3600.0, low=1.0),
                circuit_failures=r.integer("BRIDGE_CIRCUIT_FAILURES", 10, low=1),
                circuit_open_seconds=r.number("BRIDGE_CIRCUIT_OPEN_SECONDS", 30.0, low=0.1),
            ),
            ops_port=r.integer("BRIDGE_OPS_PORT", 9090, low=0, high=65535),
            shutdown_timeout=r.number("BRIDGE_SHUTDOWN_TIMEOUT", 25.0, low=1.0),
            log_level=r.choice("BRIDGE_LOG_LEVEL", "info", LOG_LEVELS, lower=True),
            log_format=r.choice("BRIDGE_LOG_FORMAT", "json", LOG_FORMATS, lower=True),
        )
        k = settings.kafka
        if k.security_protocol.startswith("SASL_"):
            if not k.sasl_mechanism:
                r.error("BRIDGE_KAFKA_SASL_MECHANISM", "is required with SASL_* security protocols")
            if not (k.sasl_username and k.sasl_password):
                r.error(
                    "BRIDGE_KAFKA_SASL_USERNAME",
                    "and BRIDGE_KAFKA_SASL_PASSWORD are required with SASL_* security protocols",
                )
        r.raise_if_errors()
        return settings

    def check_role(self, role: Role) -> None:
        """Raise :class:`ConfigError` when a setting that ``role`` needs is missing."""
        problems: list[str] = []
        if (
            role in ("ingress", "serve")
            and not self.ingress.webhook_tokens
            and not self.ingress.auth_disabled
        ):
            problems.append(
                "BRIDGE_WEBHOOK_TOKENS: required for ingress (comma-separated secrets); "
                "set BRIDGE_WEBHOOK_AUTH=none to accept unauthenticated webhooks on purpose"
            )
        if role in ("egress", "serve") and self.api.api_key is None:
            problems.append("BRIDGE_SPOTLER_API_KEY: required for egress")
        if problems:
            raise ConfigError(problems)

    def masked(self) -> dict[str, Any]:
        """The settings as plain data with every secret replaced by ``"****"``."""
        masked: dict[str, Any] = _masked(dataclasses.asdict(self))
        return masked


def _masked(value: Any) -> Any:
    if isinstance(value, Secret):
        return "****"
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return value


class _Reader:
    """Reads typed values from the environment, collecting one message per bad variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._env = environ
        self._errors: list[str] = []

    def error(self, name: str, message: str) -> None:
        self._errors.append(f"{name}: {message}")

    def raise_if_errors(self) -> None:
        if self._errors:
            raise ConfigError(self._errors)

    def _get(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def text(self, name: str, default: str) -> str:
        return self._get(name) or default

    def opt(self, name: str) -> str | None:
        return self._get(name)

    def _parse(self, name: str, default: T, parse: Callable[[str], T], what: str) -> T:
        raw = self._get(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError:
            self.error(name, f"expected {what}, got {raw!r}")
            return default

    def integer(self, name: str, default: int, *, low: int = 0, high: int | None = None) -> int:
        value = self._parse(name, default, int, "an integer")
        return self._bounded(name, value, default, low, high)

    def number(
        self, name: str, default: float, *, low: float = 0.0, high: float | None = None
    ) -> float:
        value = self._parse(name, default, float, "a number")
        if value != value:  # NaN never satisfies a bound; say so instead of passing it on
            self.error(name, "expected a number, got NaN")
            return default
        return self._bounded(name, value, default, low, high)

    def _bounded(self, name: str, value: T, default: T, low: Any, high: Any) -> T:
        if value < low or (high is not None and value > high):
            span = f"between {low} and {high}" if high is not None else f"at least {low}"
            self.error(name, f"must be {span}, got {value}")
            return default
        return value

    def choice(
        self,
        name: str,
        default: str,
        allowed: tuple[str, ...],
        *,
        upper: bool = False,
        lower: bool = False,
    ) -> str:
        value = self.opt_choice(name, allowed, upper=upper, lower=lower)
        return default if value is None else value

    def opt_choice(
        self, name: str, allowed: tuple[str, ...], *, upper: bool = False, lower: bool = False
    ) -> str | None:
        raw = self._get(name)
        if raw is None:
            return None
        value = raw.upper() if upper else raw.lower() if lower else raw
        if value not in allowed:
            self.error(name, f"must be one of {', '.join(allowed)}, got {raw!r}")
            return None
        return value

    def match(self, name: str, default: str, pattern: re.Pattern[str]) -> str:
        raw = self.text(name, default)
        if not pattern.match(raw):
            self.error(name, f"must match {pattern.pattern}, got {raw!r}")
            return default
        return raw

    def url(self, name: str, default: str) -> str:
        raw = self.text(name, default).rstrip("/")
        if not raw.startswith(("http://", "https://")):
            self.error(name, f"must be an http:// or https:// URL, got {raw!r}")
            return default
        return raw
