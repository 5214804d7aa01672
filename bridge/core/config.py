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
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bridge.core.errors import ConfigError
from bridge.core.limits import spool_limits
from bridge.core.parsers import (
    Secret,
    Variable,
    choice,
    flag,
    http_url,
    integer,
    is_loopback_url,
    jid_list,
    matching,
    number,
    secret,
    setting,
    tokens,
)

Role = Literal["ingress", "egress", "serve", "simulator"]

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")
_TOPIC_PREFIX = re.compile(r"[A-Za-z0-9._-]{1,100}")


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


_INSTANCE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True, slots=True)
class SpoolSettings:
    dir: str = setting(
        "BRIDGE_SPOOL_DIR",
        "./var/spool",
        help="spool root: each process spools into <root>/<BRIDGE_INSTANCE> and adopts the "
        "spools of processes that are gone",
    )
    instance: str | None = setting(
        "BRIDGE_INSTANCE",
        None,
        matching(_INSTANCE),
        "this process's spool directory name under the root (default: the host name)",
    )
    adopt_interval: float = setting(
        "BRIDGE_SPOOL_ADOPT_INTERVAL",
        30.0,
        number(0.1, 3600.0),
        "seconds between looks for spools under the root whose owner is gone",
    )
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
    retry_after_max: float = setting(
        "BRIDGE_RETRY_AFTER_MAX",
        300.0,
        number(1.0, 86400.0),
        "longest pause a Retry-After may cause (seconds); longer values are capped",
    )
    max_age: float = setting(
        "BRIDGE_EGRESS_MAX_AGE", 24 * 3600.0, number(1.0), "older commands fail as expired"
    )
    circuit_failures: int = setting(
        "BRIDGE_CIRCUIT_FAILURES", 10, integer(1), "failures in a row that open the breaker"
    )
    circuit_open_seconds: float = setting(
        "BRIDGE_CIRCUIT_OPEN_SECONDS", 15.0, number(0.1), "pause before a probe"
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
    channels_refresh_seconds: float = setting(
        "BRIDGE_CHANNELS_REFRESH_SECONDS",
        300.0,
        number(1.0, 86400.0),
        "seconds between refreshes of GET /channels (ingress, without BRIDGE_CHANNELS)",
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
        if not errors:
            errors += spool_limits(settings.ingress.max_body_bytes, settings.spool.max_bytes)
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
        if (
            role in ("egress", "serve")
            and self.egress.circuit_open_seconds >= self.shutdown_timeout
        ):
            problems.append(
                f"BRIDGE_CIRCUIT_OPEN_SECONDS: {self.egress.circuit_open_seconds:g} s must be "
                f"shorter than BRIDGE_SHUTDOWN_TIMEOUT ({self.shutdown_timeout:g} s): commands "
                "waiting at a breaker open that long would outlast a graceful stop"
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
