"""Command consumption: Kafka command topics to API calls, one result per command, safe commits.

Owns the egress consumer (aiokafka, manual commits). Each record is parsed and validated
(:mod:`bridge.commands`), then run in its conversation's chain: a command starts only after the
previous command of the same conversation finished, while other conversations run alongside,
up to ``BRIDGE_EGRESS_CONCURRENCY`` at once. Retries, rate limits and the circuit breaker come
from :mod:`bridge.policy`; a result is published before the record counts as finished, and
offsets are committed only up to the first record that is not finished (no gaps).

Crash window: a command whose API call succeeded but whose result or commit was not yet durable
is consumed again after a restart and may be sent twice. Command ids completed by this process
are remembered, so a redelivery within the process's lifetime is not sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from bridge import commands
from bridge.api_client import SpotlerClient
from bridge.commands import Command, Kind, Position
from bridge.config import Settings
from bridge.dedup import RecentIds
from bridge.errors import ApiError, InvalidCommand, PublishError
from bridge.events import Record, Topics
from bridge.metrics import Metrics
from bridge.policy import CircuitBreaker, CircuitState, RateLimiter, backoff
from bridge.publisher import Publisher, client_options

log = structlog.get_logger(__name__)


class _Aborted(Exception):
    """Shutdown interrupted a command before its result was durable: leave it uncommitted."""


class OffsetTracker:
    """Offsets of one partition in consumption order; the commit point is the first unfinished."""

    def __init__(self) -> None:
        self._entries: deque[list[int]] = deque()  # [offset, finished]
        self._by_offset: dict[int, list[int]] = {}
        self.committed: int | None = None

    def add(self, offset: int) -> None:
        entry = [offset, 0]
        self._entries.append(entry)
        self._by_offset[offset] = entry

    def finish(self, offset: int) -> None:
        entry = self._by_offset.pop(offset, None)
        if entry is not None:
            entry[1] = 1

    def commit_point(self) -> int | None:
        """The offset to commit (next to consume), if it moved past ``committed``."""
        point = None
        while self._entries and self._entries[0][1]:
            point = self._entries.popleft()[0] + 1
        return point

    @property
    def pending(self) -> int:
        return len(self._entries)


class Egress:
    """Consumes command topics and runs each command against the platform."""

    def __init__(
        self, settings: Settings, metrics: Metrics, publisher: Publisher, api: SpotlerClient
    ) -> None:
        self._s = settings.egress
        self._kafka = settings.kafka
        self._topics = Topics(settings.kafka.topic_prefix)
        self._metrics = metrics
        self._publisher = publisher
        self._api = api
        self._limiter = RateLimiter(self._s.rate_limit, self._s.channel_rate_limit)
        self._breaker = CircuitBreaker(
            self._s.circuit_failures, self._s.circuit_open_seconds, self._on_circuit
        )
        self._slots = asyncio.Semaphore(self._s.concurrency)
        self._completed = RecentIds(100_000, 24 * 3600.0)
        self._trackers: dict[TopicPartition, OffsetTracker] = {}
        self._chains: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._max_inflight = max(100, self._s.concurrency * 8)
        self._room = asyncio.Event()
        self._room.set()
        self._stop = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self.assigned = False

    @property
    def ready(self) -> bool:
        return self.assigned and self._publisher.connected and not self._stop.is_set()

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until :meth:`stop`; then finish in-flight commands and commit."""
        consumer = await self._connect()
        side = [asyncio.create_task(self._commit_loop()), asyncio.create_task(self._lag_loop())]
        try:
            while not self._stop.is_set():
                await self._room.wait()
                batch = await consumer.getmany(timeout_ms=300, max_records=500)
                for tp, records in batch.items():
                    for record in records:
                        self._dispatch(tp, record)
        finally:
            for task in side:
                task.cancel()
            await self._drain()
            await consumer.stop()
            log.info("egress.stopped")

    async def stop(self) -> None:
        self._stop.set()
        self._room.set()

    async def _connect(self) -> AIOKafkaConsumer:
        delay = 0.2
        while True:
            consumer = AIOKafkaConsumer(
                group_id=self._s.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_interval_ms=300_000,
                **client_options(self._kafka),
            )
            consumer.subscribe(
                [self._topics.send_message, self._topics.update_conversation],
                listener=_Listener(self),
            )
            try:
                await consumer.start()
            except (KafkaError, OSError) as exc:
                await consumer.stop()
                log.warning("egress.connect_failed", error=str(exc), retry_in=round(delay, 1))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self._consumer = consumer
            log.info("egress.started", group=self._s.group_id)
            return consumer

    async def _drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._commit()

    # -- dispatch --------------------------------------------------------------------------

    def _dispatch(self, tp: TopicPartition, record: Any) -> None:
        tracker = self._trackers.setdefault(tp, OffsetTracker())
        tracker.add(record.offset)
        position = Position(
            record.topic, record.partition, record.offset, record.key, record.timestamp
        )
        kind = commands.kind_of(record.topic, self._topics) or "send-message"
        try:
            command: Command | InvalidCommand = commands.parse(record.value, kind)
        except InvalidCommand as exc:
            command = exc
        chain = command.conversation if isinstance(command, Command) else None
        previous = self._chains.get(chain) if chain else None
        task = asyncio.create_task(
            self._run(tp, tracker, position, kind, record.value, command, previous)
        )
        if chain:
            self._chains[chain] = task
            task.add_done_callback(lambda t: self._chain_done(chain, t))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        self._metrics.commands_in_flight.set(len(self._tasks))
        if len(self._tasks) >= self._max_inflight:
            self._room.clear()

    def _chain_done(self, chain: str, task: asyncio.Task[None]) -> None:
        if self._chains.get(chain) is task:
            del self._chains[chain]

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._metrics.commands_in_flight.set(len(self._tasks))
        if len(self._tasks) < self._max_inflight // 2:
            self._room.set()

    async def _run(
        self,
        tp: TopicPartition,
        tracker: OffsetTracker,
        position: Position,
        kind: Kind,
        raw: bytes | None,
        command: Command | InvalidCommand,
        previous: asyncio.Task[None] | None,
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # strictly after the conversation's previous command
        started = time.perf_counter()
        try:
            async with self._slots:
                if self._stop.is_set():
                    return  # not started before shutdown: left for the next consumer
                outcome = await self._handle(position, kind, raw, command)
        except _Aborted:
            return  # not finished: stays uncommitted and is consumed again after a restart
        except Exception as exc:  # a bug must neither stop the consumer nor stall the commits
            log.exception("egress.command_crashed", offset=position.offset)
            try:
                command_id = commands.salvage_id(raw, position)
                await self._finish(
                    command_id,
                    kind,
                    None,
                    None,
                    0,
                    position,
                    reason=f"internal error: {type(exc).__name__}",
                )
            except _Aborted:
                return
            outcome = "failed"
        tracker.finish(position.offset)
        self._metrics.commands.labels(kind, outcome).inc()
        self._metrics.command_duration.labels(kind).observe(time.perf_counter() - started)

    async def _handle(
        self, position: Position, kind: Kind, raw: bytes | None, command: Command | InvalidCommand
    ) -> str:
        if isinstance(command, InvalidCommand):
            command_id = commands.salvage_id(raw, position)
            await self._publish(
                commands.deadletter_record(self._topics, raw, position, command.reason)
            )
            await self._finish(
                command_id, kind, None, None, 0, position, reason=f"invalid: {command.reason}"
            )
            log.info("command", outcome="deadletter", command_id=command_id, reason=command.reason)
            return "deadletter"
        if command.id in self._completed:
            log.info("command", outcome="duplicate", command_id=command.id)
            return "duplicate"
        age = time.time() - position.timestamp_ms / 1000.0
        if position.timestamp_ms > 0 and age > self._s.max_age:
            await self._finish(
                command.id, kind, command.channel, command.contact, 0, position, reason="expired"
            )
            log.info("command", outcome="expired", command_id=command.id, age_s=round(age))
            return "expired"
        attempts, response, error = await self._call(command)
        await self._finish(
            command.id,
            kind,
            command.channel,
            command.contact,
            attempts,
            position,
            response=response,
            error=error,
        )
        self._completed.add(command.id)
        outcome = "succeeded" if error is None else "failed"
        log.info(
            "command",
            outcome=outcome,
            command_id=command.id,
            kind=kind,
            attempts=attempts,
            status=error.status if error else None,
            code=error.code if error else None,
        )
        return outcome

    async def _call(self, command: Command) -> tuple[int, dict[str, Any] | None, ApiError | None]:
        deadline = time.monotonic() + self._s.retry_deadline
        attempt = 0
        call = (
            self._api.send_message
            if command.kind == "send-message"
            else self._api.update_conversation
        )
        while True:
            await self._breaker.allow()
            await self._limiter.acquire(command.channel)
            attempt += 1
            try:
                response = await call(
                    command.channel, command.contact, command.body, request_id=command.id
                )
            except ApiError as exc:
                if exc.retriable:
                    self._breaker.failure()
                else:
                    self._breaker.neutral()
                if not exc.retriable or attempt >= self._s.max_attempts:
                    return attempt, None, exc
                delay = exc.retry_after
                if delay is None:
                    delay = backoff(attempt, self._s.backoff_base, self._s.backoff_max)
                if time.monotonic() + delay > deadline:
                    return attempt, None, exc
                self._metrics.retries.labels(command.kind).inc()
                await self._sleep(delay)
                continue
            self._breaker.success()
            return attempt, response, None

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but give up at once when shutting down (the command is then redelivered)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()
                raise _Aborted

    async def _finish(
        self,
        command_id: str,
        kind: str,
        channel: str | None,
        contact: str | None,
        attempts: int,
        position: Position,
        **outcome: Any,
    ) -> None:
        await self._publish(
            commands.result_record(
                self._topics,
                command_id=command_id,
                kind=kind,
                channel=channel,
                contact=contact,
                attempts=attempts,
                position=position,
                **outcome,
            )
        )

    async def _publish(self, record: Record) -> None:
        """Publish until Kafka acknowledges; during shutdown give up after a few tries."""
        delay, tries = 0.2, 0
        while True:
            try:
                await self._publisher.publish(record, timeout=10.0)
                return
            except PublishError as exc:
                tries += 1
                if self._stop.is_set() and tries >= 3:
                    raise _Aborted from exc
                log.warning("egress.publish_failed", topic=record.topic, error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- offsets, lag, circuit -------------------------------------------------------------

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        offsets = {}
        for tp, tracker in self._trackers.items():
            if only is not None and tp not in only:
                continue
            point = tracker.commit_point()
            if point is not None:
                offsets[tp] = OffsetAndMetadata(point, "")
                tracker.committed = point
        if offsets:
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:  # a later commit covers it; the records are redelivered
                log.warning("egress.commit_failed", error=str(exc))

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            await self._commit()

    async def _lag_loop(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            consumer = self._consumer
            if consumer is None:
                continue
            for tp in consumer.assignment():
                high = consumer.highwater(tp)
                tracker = self._trackers.get(tp)
                done = tracker.committed if tracker and tracker.committed is not None else None
                if high is not None and done is not None:
                    lag = max(0, high - done)
                    self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    def _on_circuit(self, state: CircuitState) -> None:
        self._metrics.circuit_state.set(int(state))
        log.warning("egress.circuit", state=state.name.lower())
        consumer = self._consumer
        if consumer is None:
            return
        if state is CircuitState.OPEN:
            consumer.pause(*consumer.assignment())
        elif state is CircuitState.CLOSED:
            consumer.resume(*consumer.assignment())

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Before giving partitions away: let their commands finish (bounded), then commit."""
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=10.0)
        await self._commit(only=revoked)
        for tp in revoked:
            self._trackers.pop(tp, None)

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned = True
        if self._breaker.state is not CircuitState.CLOSED and self._consumer is not None:
            self._consumer.pause(*assigned)
        log.info(
            "egress.assigned", partitions=sorted(f"{tp.topic}/{tp.partition}" for tp in assigned)
        )


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, egress: Egress) -> None:
        self._egress = egress

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._egress.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._egress.on_assigned(set(assigned))
