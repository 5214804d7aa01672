"""Command consumption: Kafka command topics to API calls, one result per command, safe commits.

Owns the egress consumer (aiokafka, manual commits). Each record is parsed and validated
(:mod:`bridge.egress.commands`), then run in its conversation's chain: a command starts only
after the
previous command of the same conversation finished, while other conversations run alongside,
up to ``BRIDGE_EGRESS_CONCURRENCY`` at once. What happens to one command (retries, rate limits,
the result) is :mod:`bridge.egress.runner`'s job; a record counts as finished once its result is
published, and offsets are committed only up to the first unfinished record
(:mod:`bridge.egress.offsets`). While the circuit breaker is open the partitions are paused.

At most ``max(32, 4 * concurrency)`` records are taken ahead of the ones finished. On stop,
every record taken finishes (a command waiting out a retry backoff is interrupted and left for
the next consumer), the offsets are committed, and only then does the consumer leave.

Crash window: a command whose API call succeeded but whose result or commit was not yet durable
is consumed again after a restart and may be sent twice. Commands completed by this process are
remembered by kind and id, so a redelivery within the process's lifetime is not sent again.

Lag is computed on a timer of its own from the broker's end offsets and the group's committed
offsets, so it stays true while the breaker has paused the partitions. Readiness turns off when
the breaker stays open or half-open longer than ``BRIDGE_CIRCUIT_STUCK_SECONDS`` or results fail
to reach Kafka longer than ``BRIDGE_EGRESS_RESULTS_STALL_SECONDS``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from bridge.api.client import SpotlerClient
from bridge.contract.records import Topics
from bridge.core.config import Settings
from bridge.core.errors import InvalidCommand
from bridge.egress import commands
from bridge.egress.commands import Command, Kind, Position
from bridge.egress.offsets import OffsetTracker
from bridge.egress.policy import CircuitState
from bridge.egress.runner import Aborted, CommandRunner
from bridge.kafka.producer import Publisher, client_options, start_with_retry
from bridge.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)


class CommandConsumer:
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
        self._stop = asyncio.Event()
        self._runner = CommandRunner(
            self._s, self._topics, metrics, publisher, api, self._stop, self._on_circuit
        )
        self._trackers: dict[TopicPartition, OffsetTracker] = {}
        self._chains: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._max_inflight = max(32, self._s.concurrency * 4)
        self._room = asyncio.Event()
        self._room.set()
        self._consumer: AIOKafkaConsumer | None = None
        self.assigned = False

    @property
    def ready(self) -> bool:
        return (
            self.assigned
            and self._publisher.connected
            and not self._stop.is_set()
            and self._runner.healthy
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until :meth:`stop`; then finish in-flight commands and commit."""
        consumer = await self._connect()
        side = [asyncio.create_task(self._commit_loop()), asyncio.create_task(self._lag_loop())]
        try:
            while not self._stop.is_set():
                await self._room.wait()
                room = max(1, self._max_inflight - len(self._tasks))
                batch = await consumer.getmany(timeout_ms=300, max_records=room)
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
        def make() -> AIOKafkaConsumer:
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
            return consumer

        self._consumer = await start_with_retry(make, "egress", kafka=self._kafka)
        log.info("egress.started", group=self._s.group_id)
        return self._consumer

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
            outcome = await self._runner.run(position, kind, raw, command)
        except Aborted:
            return  # not finished: stays uncommitted and is consumed again after a restart
        except Exception as exc:  # a bug must neither stop the consumer nor stall the commits
            log.exception("egress.command_crashed", offset=position.offset)
            try:
                await self._runner.fail(
                    position, kind, raw, f"internal error: {type(exc).__name__}"
                )
            except Aborted:
                return
            outcome = "failed"
        tracker.finish(position.offset)
        self._metrics.child(self._metrics.commands, kind, outcome).inc()
        self._metrics.child(self._metrics.command_duration, kind).observe(
            time.perf_counter() - started
        )

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

    async def _lag_loop(self, interval: float = 5.0) -> None:
        while True:
            self._runner.observe()
            consumer = self._consumer
            if consumer is not None:
                try:
                    await self._measure_lag(consumer)
                except KafkaError as exc:  # the next tick tries again
                    log.warning("egress.lag_failed", error=str(exc))
            await asyncio.sleep(interval)

    async def _measure_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Lag = the broker's end offset minus the group's committed offset (or the log start
        when nothing is committed yet), asked of the broker: true while partitions are paused."""
        assigned = list(consumer.assignment())
        if not assigned:
            return
        ends = await consumer.end_offsets(assigned)
        starts = None
        for tp in assigned:
            committed = await consumer.committed(tp)
            if committed is None:
                if starts is None:
                    starts = await consumer.beginning_offsets(assigned)
                committed = starts[tp]
            lag = max(0, ends[tp] - committed)
            self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    def _on_circuit(self, state: CircuitState) -> None:
        self._metrics.circuit_state.set(int(state))
        self._metrics.child(self._metrics.circuit_transitions, state.name.lower()).inc()
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
        if self._runner.breaker.state is not CircuitState.CLOSED and self._consumer is not None:
            self._consumer.pause(*assigned)
        log.info(
            "egress.assigned", partitions=sorted(f"{tp.topic}/{tp.partition}" for tp in assigned)
        )


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, egress: CommandConsumer) -> None:
        self._egress = egress

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._egress.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._egress.on_assigned(set(assigned))
