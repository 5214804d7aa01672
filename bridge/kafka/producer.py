"""Kafka publishing: records out to Kafka with ``acks=all`` and the idempotent producer.

Owns the process's :class:`aiokafka.AIOKafkaProducer` and its *session* (producer id and
sequence numbers). Connecting is retried in the background (the process starts, and is not
ready, while Kafka is away); every aiokafka error is translated here into
:class:`~bridge.core.errors.PublishError` (:class:`~bridge.core.errors.RecordRejected` when Kafka
refuses the record itself), so nothing above this module knows aiokafka.

Delivery bound: aiokafka's idempotent producer never gives up on a batch it has sent (it retries
until acknowledged), and fails a batch still waiting for a partition leader after
``request_timeout_ms``. Every record is therefore either acknowledged, failed by aiokafka, or
still owned by the producer; a record owned longer than ``delivery_timeout`` ends the session.

Sessions: aiokafka does not repair the sequence gap a failed batch leaves (the Java client bumps
the epoch), so after *any* failed delivery every later batch of that partition would fail with
``OutOfOrderSequenceNumber`` for good. So a failed delivery, an overdue one, or a dead sender
ends the session: the producer is abandoned (everything it still holds fails with
:class:`PublishError`, definitely: it will not send it any more), and a new producer (new
producer id) is started. Callers resend from where they keep records (the spool, the egress
result loop), with the same ids; :meth:`KafkaPublisher.until_new_session` tells a retry loop
when a new session works, so it resends then rather than after its backoff. A record that was
in flight when its session ended may still have been written: a duplicate with the same id,
never a loss (see README, "Delivery").

Group commit (issue 13): records are not sent one by one. Each partition has a lane that
appends the records of concurrent callers to one batch and hands the batches to aiokafka in
order (``send_batch``); one acknowledgement resolves every caller of a batch. How long a caller
waits is kept by :class:`Deadlines` (one timer per distinct limit, not one per call).
:func:`bridge.kafka.publisher.make_publisher` returns this publisher, or the optional librdkafka
one (:mod:`bridge.kafka.rdkafka`); connecting is :mod:`bridge.kafka.connect`'s, the session
bookkeeping both share :mod:`bridge.kafka.sessions`'.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from bridge.contract.records import Record
from bridge.core.backoff import Backoff
from bridge.core.config import KafkaSettings
from bridge.core.errors import PublishError, PublishTimeout, RecordRejected
from bridge.kafka.connect import RECONNECT_MAX, client_options, start_with_retry
from bridge.kafka.lanes import Batch, Lane
from bridge.kafka.sessions import Deadlines, SessionKeeper, settle
from bridge.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)

#: Kafka refused the record itself: sending it again cannot succeed.
REFUSED: tuple[type[KafkaError], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
    InvalidTimestampError,
    InvalidTopicError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
)


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


class SessionEnded(KafkaError):  # type: ignore[misc]  # aiokafka is untyped
    """The producer session holding this record was abandoned; the record was not sent by it."""

    retriable = True


class _Session:
    """One started producer and the deliveries it still owns, oldest first."""

    def __init__(self, producer: AIOKafkaProducer, number: int) -> None:
        self.producer = producer
        self.number = number
        self.pending: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self.ended: str | None = None
        self.acknowledged = False
        self.lanes: dict[tuple[str, int], Lane] = {}

    def track(self, future: asyncio.Future[Any], now: float) -> None:
        self.pending.append((now, future))
        future.add_done_callback(self._delivered)

    def _delivered(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        exc = future.exception()  # also marks it retrieved when nobody waits any more
        if exc is not None:
            self.end(f"delivery failed: {type(exc).__name__}: {exc}")
        else:
            self.acknowledged = True

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason

    def overdue(self, now: float, bound: float) -> bool:
        pending = self.pending
        while pending and pending[0][1].done():
            pending.popleft()
        return bool(pending) and now - pending[0][0] > bound

    def sender_dead(self) -> bool:
        sender = getattr(self.producer, "_sender", None)
        task = getattr(sender, "sender_task", None)
        return task is not None and task.done()

    def fail_lanes(self, exc: KafkaError) -> None:
        """Fail every record not yet handed to the producer, and stop the lanes."""
        for lane in self.lanes.values():
            if lane.task is not None:
                lane.task.cancel()
            lane.fail(exc)
        self.lanes.clear()

    async def drain_lanes(self) -> None:
        """Wait until every lane has handed its records to the producer."""
        while tasks := [lane.task for lane in self.lanes.values() if lane.task is not None]:
            await asyncio.wait(tasks)


def _batch_done(waiters: list[asyncio.Future[None]], future: asyncio.Future[Any]) -> None:
    if future.cancelled():
        settle(waiters, SessionEnded("the batch was cancelled"))
    else:
        settle(waiters, future.exception())


class KafkaPublisher(SessionKeeper[_Session]):
    """The process's Kafka producer: connect and keep a working session with :meth:`run_connect`,
    close with :meth:`close`."""

    def __init__(
        self, kafka: KafkaSettings, metrics: Metrics, *, max_request_size: int = 4 * 1024**2
    ) -> None:
        super().__init__()
        self._kafka = kafka
        self._metrics = metrics
        self._max_request_size = max_request_size
        self._partitioner = CachedPartitioner()
        self._deadlines = Deadlines()

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            partitioner=CachedPartitioner(),
            acks="all",
            enable_idempotence=True,
            linger_ms=self._kafka.linger_ms,
            max_batch_size=256 * 1024,
            max_request_size=self._max_request_size,
            # A request may take this long; a record may be owned twice as long (delivery bound).
            request_timeout_ms=int(self._kafka.delivery_timeout * 500),
            **client_options(self._kafka),
        )

    async def run_connect(self) -> None:
        """Connect (retrying with backoff), then keep a working session until cancelled:
        when the session ends, abandon it and start a new producer. A refusal the brokers will
        repeat forever (wrong credentials, untrusted CA) raises :class:`KafkaRefused`.

        Connecting is retried at most ``RECONNECT_MAX`` seconds apart, so a new session starts
        within that time of Kafka's return. A session is replaced at once; sessions that keep
        ending without a single acknowledgement are started further and further apart (up to
        ``RECONNECT_MAX``), never in a tight loop.
        """
        pause = Backoff(0.2, RECONNECT_MAX)
        while True:
            producer = await start_with_retry(
                self._new_producer, "kafka", RECONNECT_MAX, kafka=self._kafka
            )
            self._sessions += 1
            session = _Session(producer, self._sessions)
            self._announce(session)
            log.info("kafka.connected", bootstrap=self._kafka.bootstrap_servers)
            reason = await self._watch(session)
            self._session = None
            self._metrics.producer_recreations.inc()
            log.warning("kafka.producer_recreated", reason=reason)
            await self._abandon(session, reason)
            if session.acknowledged:
                pause.reset()
            elif (delay := pause.next()) and pause.failures > 1:
                await asyncio.sleep(delay)  # the first replacement is immediate

    async def _watch(self, session: _Session) -> str:
        """Return why ``session`` ended: a failed delivery, an overdue one, or a dead sender."""
        loop = asyncio.get_running_loop()
        bound = self._kafka.delivery_timeout
        while session.ended is None:
            await asyncio.sleep(0.25)  # a plain tick: cancellation is never lost in it
            if session.overdue(loop.time(), bound):
                session.end(f"a record not acknowledged within {bound}s")
            elif session.sender_dead():
                session.end("the producer's sender task stopped")
        return session.ended

    @staticmethod
    async def _abandon(session: _Session, reason: str) -> None:
        """Stop the producer without flushing: whatever it still holds fails, definitely.

        aiokafka has no public way to abandon a session (``stop`` flushes, which never ends
        while a partition refuses the session); these are its own shutdown steps, in order.
        """
        session.fail_lanes(SessionEnded(reason))
        producer: Any = session.producer
        sender = producer._sender
        task = sender.sender_task if sender is not None else None
        if task is not None and not task.done():
            # its own failure hook breaks on a non-transactional producer (aiokafka 0.14)
            task.remove_done_callback(sender._fail_all)
            task.cancel()  # sends nothing more
        accumulator = producer._message_accumulator
        queued = [b for q in accumulator._batches.values() for b in q]
        queued += list(accumulator._pending_batches)
        accumulator.fail_all(SessionEnded(reason))
        for batch in queued:  # nobody waits for their drain any more: retrieved, not logged
            drained = batch._drain_waiter
            if drained.done() and not drained.cancelled():
                drained.exception()
        producer._closed = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await producer.client.close()  # ends requests still in flight
        if task is not None:
            await asyncio.wait([task], timeout=10)
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: the session is gone either way

    async def publish(self, record: Record, *, timeout: float | None = None) -> None:
        """Send one record and wait for Kafka's answer.

        ``timeout=None`` (the spool drain, egress results) waits for the producer's own decision:
        acknowledged, or failed at the latest after the delivery bound. A shorter ``timeout``
        (the webhook answer) stops waiting earlier: the producer keeps the record and may still
        deliver it, so the caller's other copy makes a duplicate, never a gap.
        """
        session = self._session
        if session is None or session.ended is not None:
            raise PublishError("no Kafka producer session (connecting)")
        started = time.perf_counter()
        outcome = "error"
        try:
            waiter = self._append(session, record)
            if waiter is None:  # the topic's partitions are not known yet: ask, then append
                async with asyncio.timeout(timeout):
                    await session.producer.partitions_for(record.topic)
                if session.ended is not None:
                    raise SessionEnded(session.ended)
                waiter = self._append(session, record)
                if waiter is None:
                    raise PublishError(f"no partitions known for {record.topic}")
            if timeout is not None:
                self._deadlines.add(waiter, timeout)
            await waiter
            outcome = "ok"
        except TimeoutError as exc:
            outcome = "timeout"
            raise PublishTimeout(f"no acknowledgement within {timeout}s") from exc
        except REFUSED as exc:
            raise RecordRejected(f"{type(exc).__name__}: {exc}") from exc
        except KafkaError as exc:
            raise PublishError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._metrics.child(self._metrics.publish_duration, outcome).observe(
                time.perf_counter() - started
            )

    def _append(self, session: _Session, record: Record) -> asyncio.Future[None] | None:
        """Append ``record`` to its partition's lane; the future its batch's answer resolves.
        None when the topic's partitions are not in the producer's metadata yet."""
        producer: Any = session.producer
        cluster = producer.client.cluster
        partitions = cluster.partitions_for_topic(record.topic)
        if not partitions:
            return None
        headers = list(record.headers)
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(record.key, record.value, headers)
        if size > self._max_request_size:  # what aiokafka's send checks
            raise MessageSizeTooLargeError(
                f"The message is {size} bytes when serialized, more than max_request_size "
                f"({self._max_request_size})"
            )
        all_partitions = sorted(partitions)
        available = all_partitions
        if record.key is None:
            available = sorted(cluster.available_partitions_for_topic(record.topic) or partitions)
        partition = self._partitioner(record.key, all_partitions, available)
        lane = session.lanes.get((record.topic, partition))
        if lane is None:
            lane = session.lanes[record.topic, partition] = Lane(record.topic, partition)
        loop = self._deadlines.loop
        waiter: asyncio.Future[None] = loop.create_future()
        lane.append(producer, record.key, record.value, headers, waiter)
        if lane.task is None:
            lane.task = loop.create_task(self._run_lane(session, lane))
        return waiter

    async def _run_lane(self, session: _Session, lane: Lane) -> None:
        """Hand the lane's batches to the producer, one after the other, until it is empty."""
        producer: Any = session.producer
        loop = asyncio.get_running_loop()
        batch: Batch | None = None
        try:
            while (batch := lane.take()) is not None:
                builder, waiters = batch
                builder.close()
                try:
                    # Waits while this partition's previous batch is not yet on its way.
                    future = await producer.send_batch(
                        builder, lane.topic, partition=lane.partition
                    )
                except Exception as exc:  # not handed over (no slot in time, closed, a bug)
                    if not isinstance(exc, KafkaError):  # a bug must not leave callers waiting
                        log.exception(
                            "kafka.lane_crashed", topic=lane.topic, partition=lane.partition
                        )
                    batch = None
                    self._hand_over_failed(session, lane, waiters, exc)
                    return
                session.track(future, loop.time())
                future.add_done_callback(functools.partial(_batch_done, waiters))
                self._metrics.kafka_batches.inc()
            batch = None
        except asyncio.CancelledError:
            if batch is not None:
                settle(batch[1], SessionEnded(session.ended or "lane cancelled"))
            raise
        finally:
            if lane.task is asyncio.current_task():
                lane.task = None

    @staticmethod
    def _hand_over_failed(
        session: _Session, lane: Lane, waiters: list[asyncio.Future[None]], exc: BaseException
    ) -> None:
        """A batch was not handed over: it fails, and so does everything queued behind it in
        the lane, and the session ends. Sending the later batches would put them in Kafka
        before the failed one, which its caller (the spool drain) sends again (issue 26)."""
        reason = f"a batch for {lane.topic}[{lane.partition}] not handed over: {exc!r}"
        session.end(reason)
        settle(waiters, exc)
        lane.fail(SessionEnded(reason))

    async def close(self, flush_timeout: float = 10.0) -> None:
        """Flush what is pending (at most ``flush_timeout`` seconds: Kafka may be away) and
        disconnect; what could not be flushed fails, and the spool still holds its copy."""
        session, self._session = self._session, None
        self._connected = False
        if session is not None:
            try:
                async with asyncio.timeout(flush_timeout):
                    await session.drain_lanes()
                    await session.producer.stop()
            except TimeoutError:
                await self._abandon(session, "shutdown: Kafka did not take the rest in time")
            log.info("kafka.producer_closed")
