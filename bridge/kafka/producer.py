"""Kafka publishing: records out to Kafka with ``acks=all`` and the idempotent producer.

Owns the one :class:`aiokafka.AIOKafkaProducer` of a process. Connecting is retried in the
background (the process starts, and is not ready, while Kafka is away); every aiokafka error is
translated here into :class:`~bridge.core.errors.PublishError`, so nothing above this module knows
aiokafka. ``InMemoryPublisher`` is the fake for tests that do not need a broker.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner

from bridge.contract.records import Record
from bridge.core.config import KafkaSettings
from bridge.core.errors import ConfigError, PublishError, PublishTimeout
from bridge.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)
T = TypeVar("T")


class Publisher(Protocol):
    """Where ingress and egress put records. ``publish`` returns once Kafka acknowledged."""

    @property
    def connected(self) -> bool: ...

    async def publish(self, record: Record, *, timeout: float) -> None: ...


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection and security options shared by the producer and the consumer."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
        "client_id": "spotler-bridge",
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        try:
            options["ssl_context"] = create_ssl_context(cafile=kafka.ssl_cafile)
        except OSError as exc:  # missing file, or not PEM certificates (ssl.SSLError)
            raise ConfigError(
                [f"BRIDGE_KAFKA_SSL_CAFILE: cannot load {kafka.ssl_cafile!r} as a CA bundle: {exc}"]
            ) from None
    if kafka.security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = (
            kafka.sasl_password.reveal() if kafka.sasl_password else None
        )
    return options


class KafkaRefused(ConfigError):
    """The brokers refuse this client for good (credentials, TLS trust): retrying cannot help."""


async def refusal(kafka: KafkaSettings) -> str | None:
    """Why the brokers refuse these settings, naming the variable to fix; None if they do not.

    aiokafka's start only says "Unable to bootstrap"; one direct connection to each bootstrap
    server tells a refusal (the certificate is not trusted, the credentials are rejected) from
    a broker that is away or slow (``None``: worth retrying).
    """
    if kafka.security_protocol == "PLAINTEXT":
        return None
    options = client_options(kafka)
    for server in kafka.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            continue
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host.strip("[]"),
                    int(port),
                    client_id=options["client_id"],
                    ssl_context=options.get("ssl_context"),
                    security_protocol=kafka.security_protocol,
                    sasl_mechanism=options.get("sasl_mechanism", "PLAIN"),
                    sasl_plain_username=options.get("sasl_plain_username"),
                    sasl_plain_password=options.get("sasl_plain_password"),
                ),
                timeout=10,
            )
        except ssl.SSLCertVerificationError as exc:
            return (
                f"BRIDGE_KAFKA_SSL_CAFILE: the certificate of {server.strip()} is not trusted "
                f"({exc.verify_message}); set it to the CA bundle that signed the brokers' "
                f"certificates (now {kafka.ssl_cafile or 'unset: the system CAs'})"
            )
        except SaslAuthenticationFailed as exc:
            return (
                f"BRIDGE_KAFKA_SASL_USERNAME / BRIDGE_KAFKA_SASL_PASSWORD: {server.strip()} "
                f"rejected user {kafka.sasl_username!r} with {kafka.sasl_mechanism} ({exc})"
            )
        except UnsupportedSaslMechanismError as exc:
            return f"BRIDGE_KAFKA_SASL_MECHANISM: {server.strip()}: {exc}"
        except (KafkaError, OSError, TimeoutError):
            continue  # away, slow, or not speaking TLS yet: retry
        conn.close()
    return None


async def start_with_retry(
    make: Callable[[], T], what: str, retry_max: float = 10.0, *, kafka: KafkaSettings | None = None
) -> T:
    """Make and start an aiokafka client, again and again with backoff until one starts.

    A client whose start failed is stopped before the next try (it holds connections). With
    ``kafka``, a failure the brokers will repeat forever (:func:`refusal`) is not retried: it is
    logged naming the variable to fix and raised as :class:`KafkaRefused`.
    """
    delay = 0.2
    while True:
        try:
            client: Any = make()
        except ConfigError as exc:  # e.g. an unreadable CA file
            log.error(f"{what}.misconfigured", error="; ".join(exc.problems))
            raise
        try:
            await client.start()
        except (KafkaError, OSError) as exc:
            await client.stop()
            problem = await refusal(kafka) if kafka is not None else None
            if problem is not None:
                log.error(f"{what}.refused", error=problem)
                raise KafkaRefused([problem]) from None
            log.warning(f"{what}.connect_failed", error=str(exc), retry_in=round(delay, 1))
            await asyncio.sleep(delay)
            delay = min(delay * 2, retry_max)
            continue
        except BaseException:
            await client.stop()
            raise
        started: T = client
        return started


class CachedPartitioner:
    """aiokafka's default partitioner (murmur2, as Java clients do) with the answer cached.

    Keys are conversations, so the same few thousand keys repeat; murmur2 is pure Python in
    aiokafka and was ~3% of ingress CPU. The partition for a key changes only with the
    partition count, which is part of the cache key.
    """

    def __init__(self, size: int = 50_000) -> None:
        self._default = DefaultPartitioner()
        self._size = size
        self._cache: dict[tuple[bytes, int], int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return int(self._default(key, all_partitions, available))
        entry = (key, len(all_partitions))
        partition = self._cache.get(entry)
        if partition is None:
            if len(self._cache) >= self._size:
                self._cache.clear()
            partition = self._cache[entry] = int(self._default(key, all_partitions, available))
        return partition


class KafkaPublisher:
    """The process's Kafka producer: connect with :meth:`run_connect`, close with :meth:`close`."""

    def __init__(
        self, kafka: KafkaSettings, metrics: Metrics, *, max_request_size: int = 4 * 1024**2
    ) -> None:
        self._kafka = kafka
        self._metrics = metrics
        self._max_request_size = max_request_size
        self._producer: AIOKafkaProducer | None = None
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            partitioner=CachedPartitioner(),
            acks="all",
            enable_idempotence=True,
            linger_ms=self._kafka.linger_ms,
            max_batch_size=256 * 1024,
            max_request_size=self._max_request_size,
            request_timeout_ms=30_000,
            **client_options(self._kafka),
        )

    async def run_connect(self) -> None:
        """Connect, retrying with backoff until it works (or the task is cancelled)."""
        self._producer = await start_with_retry(self._new_producer, "kafka", kafka=self._kafka)
        self._connected = True
        log.info("kafka.connected", bootstrap=self._kafka.bootstrap_servers)

    async def publish(self, record: Record, *, timeout: float) -> None:
        """Send one record and wait for its acknowledgement, at most ``timeout`` seconds."""
        producer = self._producer
        if producer is None:
            raise PublishError("not connected to Kafka yet")
        started = time.perf_counter()
        outcome = "error"
        try:
            async with asyncio.timeout(timeout):
                future = await producer.send(
                    record.topic, record.value, key=record.key, headers=list(record.headers)
                )
                # shield: giving up waiting must not cancel aiokafka's own delivery future.
                await asyncio.shield(future)
            outcome = "ok"
        except TimeoutError as exc:
            outcome = "timeout"
            raise PublishTimeout(f"no acknowledgement within {timeout}s") from exc
        except KafkaError as exc:
            raise PublishError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._metrics.child(self._metrics.publish_duration, outcome).observe(
                time.perf_counter() - started
            )

    async def close(self) -> None:
        """Flush what is pending and disconnect."""
        producer, self._producer = self._producer, None
        self._connected = False
        if producer is not None:
            await producer.stop()
            log.info("kafka.producer_closed")


class InMemoryPublisher:
    """A publisher that keeps records in a list (tests of code above Kafka)."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.connected = True
        self.fail_with: Exception | None = None

    async def publish(self, record: Record, *, timeout: float) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.records.append(record)
