"""Command consumption: Kafka command topics to API calls, one result per command, safe commits.

Owns the egress consumer (aiokafka, manual commits). Each record is parsed and validated
(:mod:`bridge.egress.commands`), then run in its conversation's chain: a command starts only
after the
previous command of the same conversation finished, while other conversations run alongside,
up to ``BRIDGE_EGRESS_CONCURRENCY`` at once. What happens to one command (retries, rate limits,
the result) is :mod:`bridge.egress.runner`'s job; a record counts as finished once its result is
published, and offsets are committed only up to the first unfinished record
(:mod:`bridge.egress.offsets`). While the circuit breaker is open the partitions are paused.

At most ``max(32, 4 * concurrency)`` records are in flight at once, and at most
:data:`~bridge.egress.offsets.WINDOW` records of one partition wait to be committed behind its
oldest unfinished one: the partition is paused while that window is full.

Stop and revocation *halt* commands: a command in its API call or publishing its result
finishes, one that waits (a backoff, ``Retry-After``, the rate limiter, the open breaker, a free
slot, its conversation's previous command) gives up at once and stays uncommitted, and a halted
command that has not started never starts, so no command runs after an unfinished predecessor.
On stop, commits go on while the in-flight commands finish, then the consumer leaves. On
revocation, ``on_revoked`` returns only once no command of the revoked partitions can still call
the platform (one still running after :data:`REVOKE_GRACE` seconds is cancelled): the next
owner re-runs the uncommitted ones.

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
import contextlib
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
from bridge.egress.offsets import WINDOW, OffsetTracker
from bridge.egress.policy import CircuitState
from bridge.egress.runner import Aborted, CommandRunner
from bridge.kafka.connect import client_options, start_with_retry
from bridge.kafka.publisher import Publisher
from bridge.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)

#: Seconds a revocation waits for its partitions' calls in progress before cancelling them:
#: well inside the group's rebalance timeout (aiokafka: the 10 s session timeout), or the
#: broker drops this member from the rebalance and the group never settles.
REVOKE_GRACE = 5.0


class CommandConsumer:
    """Consumes command topics and runs each command against the platform."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        publisher: Publisher,
        api: SpotlerClient,
        *,
        window: int = WINDOW,
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
        self._halts: dict[TopicPartition, asyncio.Event] = {}  # set on stop and on revocation
        self._window = window
        self._full: set[TopicPartition] = set()  # paused: their window is full
        self._committing = asyncio.Lock()
        self._chains: dict[str, asyncio.Task[bool]] = {}
        self._tasks: dict[asyncio.Task[bool], TopicPartition] = {}
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
        lag = asyncio.create_task(self._lag_loop())
        commits = asyncio.create_task(self._commit_loop())
        try:
            while not self._stop.is_set():
                await self._room.wait()
                room = max(1, self._max_inflight - len(self._tasks))
                batch = await consumer.getmany(timeout_ms=300, max_records=room)
                for tp, records in batch.items():
                    for record in records:
                        self._dispatch(tp, record)
        finally:
            lag.cancel()
            await self._drain(commits)
            await consumer.stop()
            log.info("egress.stopped")

    async def stop(self) -> None:
        self._stop.set()
        for halt in self._halts.values():
            halt.set()
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

    async def _drain(self, commits: asyncio.Task[None] | None = None) -> None:
        """Let the taken commands finish or give up (commits go on meanwhile), then commit."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if commits is not None:
            commits.cancel()
            await asyncio.gather(commits, return_exceptions=True)
        await self._commit()

    def _halt(self, tp: TopicPartition) -> asyncio.Event:
        halt = self._halts.get(tp)
        if halt is None:
            halt = self._halts[tp] = asyncio.Event()
            if self._stop.is_set():
                halt.set()
        return halt

    # -- dispatch --------------------------------------------------------------------------

    def _dispatch(self, tp: TopicPartition, record: Any) -> None:
        tracker = self._trackers.setdefault(tp, OffsetTracker())
        tracker.add(record.offset)
        if tracker.pending >= self._window and tp not in self._full:
            self._full.add(tp)  # memory behind a stuck command stays bounded
            self._apply_pauses()
            log.warning("egress.window_full", topic=tp.topic, partition=tp.partition)
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
            self._run(tracker, self._halt(tp), position, kind, record.value, command, previous)
        )
        if chain:
            self._chains[chain] = task
            task.add_done_callback(lambda t: self._chain_done(chain, t))
        self._tasks[task] = tp
        task.add_done_callback(self._task_done)
        if len(self._tasks) == 1 and self._runner.breaker.state is not CircuitState.CLOSED:
            self._apply_pauses()  # this command probes the breaker; the rest waits
        self._metrics.commands_in_flight.set(len(self._tasks))
        if len(self._tasks) >= self._max_inflight:
            self._room.clear()

    def _chain_done(self, chain: str, task: asyncio.Task[bool]) -> None:
        if self._chains.get(chain) is task:
            del self._chains[chain]

    def _task_done(self, task: asyncio.Task[bool]) -> None:
        self._tasks.pop(task, None)
        if not self._tasks and self._runner.breaker.state is not CircuitState.CLOSED:
            self._apply_pauses()  # nothing left to probe the breaker: let a record in
        self._metrics.commands_in_flight.set(len(self._tasks))
        if len(self._tasks) < self._max_inflight // 2:
            self._room.set()

    async def _run(
        self,
        tracker: OffsetTracker,
        halt: asyncio.Event,
        position: Position,
        kind: Kind,
        raw: bytes | None,
        command: Command | InvalidCommand,
        previous: asyncio.Task[bool] | None,
    ) -> bool:
        """Run one command after its conversation's previous one; True once it finished."""
        if previous is not None and not previous.done():
            halted = asyncio.ensure_future(halt.wait())
            try:  # strictly after the conversation's previous command
                await asyncio.wait([previous, halted], return_when=asyncio.FIRST_COMPLETED)
            finally:
                halted.cancel()
        if halt.is_set():
            # Stopping or revoked: a command that has not started never starts, so none runs
            # after a predecessor that was interrupted. It is consumed again, in order.
            return False
        started = time.perf_counter()
        try:
            outcome = await self._runner.run(position, kind, raw, command, halt)
        except Aborted:
            return False  # not finished: stays uncommitted and is consumed again
        except Exception as exc:  # a bug must neither stop the consumer nor stall the commits
            log.exception("egress.command_crashed", offset=position.offset)
            try:
                await self._runner.fail(
                    position, kind, raw, f"internal error: {type(exc).__name__}"
                )
            except Aborted:
                return False
            outcome = "failed"
        tracker.finish(position.offset)
        self._metrics.child(self._metrics.commands, kind, outcome).inc()
        self._metrics.child(self._metrics.command_duration, kind).observe(
            time.perf_counter() - started
        )
        return True

    # -- offsets, lag, circuit -------------------------------------------------------------

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        async with self._committing:  # one at a time: a commit never overtakes a later one
            offsets = {}
            trackers = {}
            for tp, tracker in self._trackers.items():
                if only is not None and tp not in only:
                    continue
                point = tracker.commit_point()
                self._metrics.commands_uncommitted.labels(tp.topic, str(tp.partition)).set(
                    tracker.pending
                )
                if point is not None:
                    offsets[tp] = OffsetAndMetadata(point, "")
                    trackers[tp] = (tracker, point)
            if offsets:
                try:
                    await consumer.commit(offsets)
                except KafkaError as exc:  # offered again by the next commit
                    log.warning("egress.commit_failed", error=str(exc))
                else:
                    for tracker, point in trackers.values():
                        tracker.committed = point
        drained = {tp for tp in self._full if self._trackers.get(tp, _EMPTY).pending < self._window}
        if drained:
            self._full -= drained
            self._apply_pauses()

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
            if tp in consumer.assignment():  # not revoked while the broker answered
                self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    def _on_circuit(self, state: CircuitState) -> None:
        self._metrics.circuit_state.set(int(state))
        self._metrics.child(self._metrics.circuit_transitions, state.name.lower()).inc()
        log.warning("egress.circuit", state=state.name.lower())
        if state is not CircuitState.HALF_OPEN:
            self._apply_pauses()

    def _apply_pauses(self) -> None:
        """Paused: every partition while the breaker is not closed and a command is in flight
        (one that will probe), else those whose window is full."""
        consumer = self._consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        if self._runner.breaker.state is CircuitState.CLOSED or not self._tasks:
            paused = self._full & assigned  # nothing in flight: let a record in to probe
        else:
            paused = assigned
        consumer.pause(*paused)
        consumer.resume(*(assigned - paused))

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Before giving partitions away: halt their commands (those in an API call or
        publishing a result may finish within :data:`REVOKE_GRACE`; the rest are cancelled),
        commit what finished, and forget the partitions (trackers, lag series)."""
        for tp in revoked:
            self._halt(tp).set()
        mine = [t for t, tp in self._tasks.items() if tp in revoked and not t.done()]
        if mine:
            _, late = await asyncio.wait(mine, timeout=REVOKE_GRACE)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
                log.warning("egress.revoke_cancelled", commands=len(late))
        await self._commit(only=revoked)
        for tp in revoked:
            self._trackers.pop(tp, None)
            self._halts.pop(tp, None)
            self._full.discard(tp)
            for gauge in (self._metrics.consumer_lag, self._metrics.commands_uncommitted):
                with contextlib.suppress(KeyError):
                    gauge.remove(tp.topic, str(tp.partition))

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned = True
        self._apply_pauses()
        log.info(
            "egress.assigned", partitions=sorted(f"{tp.topic}/{tp.partition}" for tp in assigned)
        )


_EMPTY = OffsetTracker()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, egress: CommandConsumer) -> None:
        self._egress = egress

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._egress.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._egress.on_assigned(set(assigned))
