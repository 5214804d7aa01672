"""Kafka publishing: records out to Kafka with ``acks=all`` and the idempotent producer.

Owns the one :class:`aiokafka.AIOKafkaProducer` of a process. Connecting is retried in the
background (the process starts, and is not ready, while Kafka is away); every aiokafka error is
translated here into :class:`~bridge.core.errors.PublishError`, so nothing above this module knows
aiokafka. The broker-free fake publisher for tests is in ``tests/fakes.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    CorruptRecordException,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner

from bridge.contract.records import Record
from bridge.core.backoff import Backoff
from bridge.core.config import KafkaSettings
from bridge.core.errors import PublishError, PublishTimeout, RecordRejected
from bridge.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)
T = TypeVar("T")

#: Errors with which Kafka refuses a record for good: sending it again cannot succeed.
REFUSALS = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
    InvalidTopicError,
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    UnsupportedForMessageFormatError,
)


class Publisher(Protocol):
    """Where ingress and egress put records. ``publish`` returns once Kafka acknowledged."""

    @property
    def connected(self) -> bool:
        """True from the first successful start until close.

        A broker lost later does not clear it: aiokafka reconnects by itself, and a publish
        then fails or times out (:class:`~bridge.core.errors.PublishError`) while Kafka is away.
        """
        ...

    async def publish(self, record: Record, *, timeout: float) -> None: ...


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection and security options shared by the producer and the consumer."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
        "client_id": "spotler-bridge",
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(cafile=kafka.ssl_cafile)
    if kafka.security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = (
            kafka.sasl_password.reveal() if kafka.sasl_password else None
        )
    return options


async def start_with_retry(make: Callable[[], T], what: str, retry_max: float = 10.0) -> T:
    """Make and start an aiokafka client, again and again with backoff until one starts.

    A client whose start failed is stopped before the next try (it holds connections).
    """
    retry = Backoff(0.2, retry_max)
    while True:
        client: Any = make()
        try:
            await client.start()
        except (KafkaError, OSError) as exc:
            await client.stop()
            delay = retry.next()
            log.warning(f"{what}.connect_failed", error=str(exc), retry_in=round(delay, 1))
            await asyncio.sleep(delay)
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
        self._producer = await start_with_retry(self._new_producer, "kafka")
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
        except REFUSALS as exc:
            raise RecordRejected(f"{type(exc).__name__}: {exc}") from exc
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
