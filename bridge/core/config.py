"""Settings: the ``BRIDGE_*`` environment variables, read once into frozen dataclasses.

This module owns configuration and nothing else. Each setting is declared once, as a dataclass
field with its default and, in the field's metadata, the variable it is read from, how the text
is parsed and checked, and a one-line description (:func:`setting`). :meth:`Settings.from_env`
walks those fields, so a default is written in exactly one place; :func:`variables` lists them
for ``bridge config --env``, the README and the Helm chart checks. It reads a
``Mapping[str, str]`` handed to it (never ``os.environ`` directly) and reports *all* bad
variables at once, each by name. Secrets are wrapped in :class:`Secret` so that printing
settings never shows them. It imports no I/O library.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, TypeVar

from bridge.core.errors import ConfigError

Role = Literal["ingress", "egress", "serve", "simulator"]

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")
_TOPIC_PREFIX = re.compile(r"[A-Za-z0-9._-]{1,100}")
N = TypeVar("N", int, float)


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


# -- parsers: text in, value out, ValueError with a message that completes "NAME: ..." ---------

Parser = Callable[[str], Any]


def text(raw: str) -> str:
    return raw


# The factories bind plain functions with partial() rather than return closures: the parsers
# are built at import time, and mutation testing (docs/testing.md) sees only what runs in a test.
def integer(low: int = 0, high: int | None = None) -> Parser:
    return partial(_integer, low=low, high=high)


def _integer(raw: str, low: int, high: int | None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"expected an integer, got {raw!r}") from None
    return _bounded(value, low, high)


def number(low: float = 0.0, high: float | None = None) -> Parser:
    return partial(_number, low=low, high=high)


def _number(raw: str, low: float, high: float | None) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None
    if math.isnan(value):  # NaN never satisfies a bound; say so instead of passing it on
        raise ValueError("expected a number, got NaN")
    return _bounded(value, low, high)


def _bounded(value: N, low: N, high: N | None) -> N:
    if value < low or (high is not None and value > high):
        span = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"must be {span}, got {value}")
    return value


def choice(allowed: tuple[str, ...], case: Callable[[str], str] = str.lower) -> Parser:
    return partial(_choice, allowed=allowed, case=case)


def _choice(raw: str, allowed: tuple[str, ...], case: Callable[[str], str]) -> str:
    value = case(raw)
    if value not in allowed:
        raise ValueError(f"must be one of {', '.join(allowed)}, got {raw!r}")
    return value


def matching(pattern: re.Pattern[str]) -> Parser:
    return partial(_matching, pattern=pattern)


def _matching(raw: str, pattern: re.Pattern[str]) -> str:
    if not pattern.fullmatch(raw):
        raise ValueError(f"must match {pattern.pattern}, got {raw!r}")
    return raw


def http_url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError(f"must be an http:// or https:// URL, got {raw!r}")
    return raw.rstrip("/")


def flag(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def is_loopback_url(url: str) -> bool:
    """True when ``url``'s host is ``localhost`` or a loopback address (no I/O, no DNS)."""
    rest = url.split("://", 1)[-1]
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    host = host[1 : host.index("]")] if host.startswith("[") and "]" in host else host
    host = host.split(":", 1)[0] if host.count(":") <= 1 else host
    return host.lower() in ("localhost", "::1") or host.startswith("127.")


def jid_list(raw: str) -> tuple[str, ...]:
    """Comma-separated JIDs (``local@domain``), each once, in the order given."""
    jids = [j.strip() for j in raw.split(",") if j.strip()]
    bad = [j for j in jids if j.count("@") != 1 or j.startswith("@") or j.endswith("@")]
    if bad or any(not j.isprintable() or " " in j for j in jids):
        raise ValueError(
            f"expected comma-separated JIDs like 31612345678@whatsapp.eazy.im, got {raw!r}"
        )
    return tuple(dict.fromkeys(jids))


def secret(raw: str) -> Secret:
    return Secret(raw)


def secrets(raw: str) -> tuple[Secret, ...]:
    return tuple(Secret(t.strip()) for t in raw.split(",") if t.strip())


#: Shortest accepted webhook token: a guessable token is no authentication.
MIN_TOKEN_LENGTH = 16


def tokens(raw: str) -> tuple[Secret, ...]:
    """Comma-separated bearer tokens, each at least :data:`MIN_TOKEN_LENGTH` characters."""
    parsed = secrets(raw)
    short = [str(n) for n, t in enumerate(parsed, 1) if len(t.reveal()) < MIN_TOKEN_LENGTH]
    if short:
        raise ValueError(
            f"every token must be at least {MIN_TOKEN_LENGTH} characters "
            f"(token {', '.join(short)} of {len(parsed)} is shorter)"
        )
    return parsed


@dataclass(frozen=True, slots=True)
class Variable:
    """One ``BRIDGE_*`` variable: where it lands in :class:`Settings` and its default."""

    name: str
    path: str  # e.g. "ingress.port"
    default: Any
    help: str


def setting(name: str, default: Any, parse: Parser = text, help: str = "") -> Any:
    """A settings field read from ``name``; unset or blank means ``default``."""
    return field(default=default, metadata={"env": name, "parse": parse, "help": help})


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap_servers: str = setting(
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092", help="Kafka brokers"
    )
    security_protocol: str = setting(
        "BRIDGE_KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        choice(SECURITY_PROTOCOLS, str.upper),
        "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
    )
    sasl_mechanism: str | None = setting(
        "BRIDGE_KAFKA_SASL_MECHANISM",
        None,
        choice(SASL_MECHANISMS, str.upper),
        "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (required with SASL)",
    )
    sasl_username: str | None = setting("BRIDGE_KAFKA_SASL_USERNAME", None, help="SASL user name")
    sasl_password: Secret | None = setting(
        "BRIDGE_KAFKA_SASL_PASSWORD", None, secret, "SASL password (secret)"
    )
    ssl_cafile: str | None = setting(
        "BRIDGE_KAFKA_SSL_CAFILE", None, help="CA bundle for SSL/SASL_SSL"
    )
    topic_prefix: str = setting(
        "BRIDGE_TOPIC_PREFIX", "spotler", matching(_TOPIC_PREFIX), "prefix P of every topic"
    )
    linger_ms: int = setting(
        "BRIDGE_KAFKA_LINGER_MS", 0, integer(0, 1000), "producer batching delay (ms)"
    )
    client: str = setting(
        "BRIDGE_KAFKA_CLIENT",
        "aiokafka",
        choice(("aiokafka", "librdkafka")),
        "publisher's Kafka client: aiokafka, or librdkafka (extra rdkafka)",
    )
    delivery_timeout: float = setting(
        "BRIDGE_KAFKA_DELIVERY_TIMEOUT",
        60.0,
        number(2.0, 600.0),
        "seconds a record may wait for Kafka before its producer session is replaced",
    )


@dataclass(frozen=True, slots=True)
class IngressSettings:
    host: str = setting("BRIDGE_HTTP_HOST", "0.0.0.0", help="webhook listener address")
    port: int = setting("BRIDGE_HTTP_PORT", 8080, integer(0, 65535), "webhook listener port")
    webhook_tokens: tuple[Secret, ...] = setting(
        "BRIDGE_WEBHOOK_TOKENS", (), tokens, "comma-separated accepted bearer tokens"
    )
    webhook_auth: str = setting(
        "BRIDGE_WEBHOOK_AUTH",
        "token",
        choice(("token", "none")),
        "`none` accepts unauthenticated webhooks",
    )
    max_body_bytes: int = setting(
        "BRIDGE_MAX_BODY_BYTES", 1024 * 1024, integer(1024), "larger bodies get 413"
    )
    max_inflight_bytes: int = setting(
        "BRIDGE_MAX_INFLIGHT_BYTES",
        16 * 1024 * 1024,
        integer(1024),
        "bytes of bodies read and normalized at once; beyond it 503 with Retry-After",
    )
    read_timeout: float = setting(
        "BRIDGE_HTTP_READ_TIMEOUT", 10.0, number(0.1), "seconds to receive a body"
    )
    publish_timeout: float = setting(
        "BRIDGE_PUBLISH_TIMEOUT", 5.0, number(0.05), "seconds to wait for Kafka before spooling"
    )
    dedup_size: int = setting(
        "BRIDGE_DEDUP_SIZE", 100_000, integer(0), "event ids remembered to drop repeats"
    )
    dedup_ttl: float = setting(
        "BRIDGE_DEDUP_TTL", 24 * 3600.0, number(0.0), "seconds an event id is remembered"
    )

    @property
    def auth_disabled(self) -> bool:
        return self.webhook_auth == "none"


@dataclass(frozen=True, slots=True)
class SpoolSettings:
    dir: str = setting("BRIDGE_SPOOL_DIR", "./var/spool", help="spool directory")
    max_bytes: int = setting(
        "BRIDGE_SPOOL_MAX_BYTES", 1024**3, integer(1024 * 1024), "spool size bound"
    )
    segment_bytes: int = setting(
        "BRIDGE_SPOOL_SEGMENT_BYTES", 16 * 1024**2, integer(64 * 1024), "spool segment size"
    )
    stall_seconds: float = setting(
        "BRIDGE_SPOOL_STALL_SECONDS",
        120.0,
        number(1.0),
        "seconds a spool holding records may go without draining while Kafka is connected "
        "before ingress turns not ready",
    )


@dataclass(frozen=True, slots=True)
class ApiSettings:
    url: str = setting(
        "BRIDGE_SPOTLER_API_URL", "https://api.eazy.im/v3", http_url, "platform API base URL"
    )
    api_key: Secret | None = setting(
        "BRIDGE_SPOTLER_API_KEY", None, secret, "API key (required by egress)"
    )
    timeout: float = setting(
        "BRIDGE_SPOTLER_API_TIMEOUT", 10.0, number(0.1), "seconds per API call"
    )
    allow_http: bool = setting(
        "BRIDGE_SPOTLER_API_ALLOW_HTTP", False, flag, "allow http:// to a non-loopback API host"
    )


@dataclass(frozen=True, slots=True)
class EgressSettings:
    group_id: str = setting(
        "BRIDGE_EGRESS_GROUP_ID", "spotler-bridge-egress", help="consumer group"
    )
    concurrency: int = setting(
        "BRIDGE_EGRESS_CONCURRENCY", 64, integer(1, 10_000), "API calls in flight at once"
    )
    max_attempts: int = setting(
        "BRIDGE_EGRESS_MAX_ATTEMPTS", 8, integer(1, 100), "attempts per command"
    )
    retry_deadline: float = setting(
        "BRIDGE_EGRESS_RETRY_DEADLINE", 300.0, number(0.1), "seconds a command may retry"
    )
    backoff_base: float = setting(
        "BRIDGE_EGRESS_BACKOFF_BASE", 0.5, number(0.001), "first backoff (seconds)"
    )
    backoff_max: float = setting(
        "BRIDGE_EGRESS_BACKOFF_MAX", 30.0, number(0.001), "longest backoff (seconds)"
    )
    rate_limit: float = setting(
        "BRIDGE_EGRESS_RATE_LIMIT", 200.0, number(0.0), "API calls per second (0 = unlimited)"
    )
    channel_rate_limit: float = setting(
        "BRIDGE_EGRESS_CHANNEL_RATE_LIMIT", 50.0, number(0.0), "API calls per second per channel"
    )
    max_age: float = setting(
        "BRIDGE_EGRESS_MAX_AGE", 24 * 3600.0, number(1.0), "older commands fail as expired"
    )
    circuit_failures: int = setting(
        "BRIDGE_CIRCUIT_FAILURES", 10, integer(1), "failures in a row that open the breaker"
    )
    circuit_open_seconds: float = setting(
        "BRIDGE_CIRCUIT_OPEN_SECONDS", 30.0, number(0.1), "pause before a probe"
    )
    circuit_stuck_seconds: float = setting(
        "BRIDGE_CIRCUIT_STUCK_SECONDS", 900.0, number(1.0), "breaker not closed: not ready"
    )
    results_stall_seconds: float = setting(
        "BRIDGE_EGRESS_RESULTS_STALL_SECONDS", 60.0, number(1.0), "results unpublished: not ready"
    )


@dataclass(frozen=True, slots=True)
class StatusSettings:
    """Delivery status per command (docs/status.md): the send log's window and bounds."""

    enabled: bool = setting(
        "BRIDGE_STATUS_ENABLED", True, flag, "status worker in egress, receipt naming in ingress"
    )
    group_id: str = setting(
        "BRIDGE_STATUS_GROUP_ID", "spotler-bridge-status", help="status worker consumer group"
    )
    window: float = setting(
        "BRIDGE_STATUS_WINDOW", 7 * 86400.0, number(60.0), "seconds of sends kept for receipts"
    )
    max_entries: int = setting(
        "BRIDGE_STATUS_MAX_ENTRIES", 150_000, integer(100), "sends kept per process, at most"
    )
    grace: float = setting(
        "BRIDGE_STATUS_GRACE", 600.0, number(0.1), "seconds a receipt waits for its send"
    )


@dataclass(frozen=True, slots=True)
class PlatformSettings:
    """The platform side of a deployment: ``bridge topics ensure``, ``webhooks sync``, doctor."""

    public_url: str | None = setting(
        "BRIDGE_PUBLIC_URL", None, http_url, "public URL of POST /webhooks (webhooks sync, doctor)"
    )
    channels: tuple[str, ...] = setting(
        "BRIDGE_CHANNELS", (), jid_list, "channel JIDs (else GET /channels with the API key)"
    )
    topic_partitions: int = setting(
        "BRIDGE_TOPIC_PARTITIONS", 6, integer(1, 10_000), "partitions of topics it creates"
    )
    topic_replication: int = setting(
        "BRIDGE_TOPIC_REPLICATION", 3, integer(1, 32), "replication of topics it creates"
    )


@dataclass(frozen=True, slots=True)
class Settings:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    ingress: IngressSettings = field(default_factory=IngressSettings)
    spool: SpoolSettings = field(default_factory=SpoolSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    egress: EgressSettings = field(default_factory=EgressSettings)
    platform: PlatformSettings = field(default_factory=PlatformSettings)
    status: StatusSettings = field(default_factory=StatusSettings)
    ops_port: int = setting("BRIDGE_OPS_PORT", 9090, integer(0, 65535), "metrics and health")
    shutdown_timeout: float = setting(
        "BRIDGE_SHUTDOWN_TIMEOUT", 25.0, number(1.0), "seconds for a graceful stop"
    )
    log_level: str = setting("BRIDGE_LOG_LEVEL", "info", choice(LOG_LEVELS), "log level")
    log_format: str = setting("BRIDGE_LOG_FORMAT", "json", choice(LOG_FORMATS), "log format")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from ``environ``; raise :class:`ConfigError` naming every bad variable."""
        errors: list[str] = []
        settings: Settings = _read(cls, environ, errors)
        k = settings.kafka
        if k.security_protocol.startswith("SASL_"):
            if not k.sasl_mechanism:
                errors.append(
                    "BRIDGE_KAFKA_SASL_MECHANISM: is required with SASL_* security protocols"
                )
            if not (k.sasl_username and k.sasl_password):
                errors.append(
                    "BRIDGE_KAFKA_SASL_USERNAME: and BRIDGE_KAFKA_SASL_PASSWORD are required "
                    "with SASL_* security protocols"
                )
        if errors:
            raise ConfigError(errors)
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
        if (
            role in ("egress", "serve")
            and self.api.url.startswith("http://")
            and not is_loopback_url(self.api.url)
            and not self.api.allow_http
        ):
            problems.append(
                "BRIDGE_SPOTLER_API_URL: http:// to a host other than loopback would send the API "
                "key in clear; use https:// or set BRIDGE_SPOTLER_API_ALLOW_HTTP=true on purpose"
            )
        if problems:
            raise ConfigError(problems)

    def masked(self) -> dict[str, Any]:
        """The settings as plain data with every secret replaced by ``"****"``."""
        masked: dict[str, Any] = _masked(dataclasses.asdict(self))
        return masked


def _read(cls: type[Any], environ: Mapping[str, str], errors: list[str]) -> Any:
    """Instantiate the settings dataclass ``cls`` from ``environ``, recursing into sections."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if "env" not in f.metadata:  # a section: a settings dataclass of its own
            values[f.name] = _read(f.default_factory, environ, errors)  # type: ignore[arg-type]
            continue
        name = f.metadata["env"]
        raw = (environ.get(name) or "").strip()
        if not raw:
            continue  # the field's default applies
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            errors.append(f"{name}: {exc}")
    return cls(**values)


def variables(cls: type[Any] = Settings, prefix: str = "") -> Iterator[Variable]:
    """Every ``BRIDGE_*`` variable with its settings path and default: the one source."""
    for f in dataclasses.fields(cls):
        if "env" not in f.metadata:
            yield from variables(f.default_factory, f"{prefix}{f.name}.")  # type: ignore[arg-type]
            continue
        yield Variable(f.metadata["env"], prefix + f.name, f.default, f.metadata["help"])


# ``scheme://userinfo@host``: credentials embedded in a URL (the password, or a lone token).
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/@\s]+)@")


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match["info"].partition(":")
    return f"{match['scheme']}{user + ':****' if colon else '****'}@"


def _masked(value: Any) -> Any:
    if isinstance(value, Secret):
        return "****"
    if isinstance(value, str):
        return _URL_CREDENTIALS.sub(_mask_userinfo, value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return value
