"""Egress command runner: one command, from parsed (or invalid) to its one result record.

Decides what happens to a command once it is its turn: invalid ones are dead-lettered with a
failed result; a repeat of a command this process completed (same kind and id) is not sent
again, its result is published again, byte for byte (same result id); expired ones fail;
the rest are called with retries (backoff, ``Retry-After``, rate limits and the circuit breaker
from :mod:`bridge.egress.policy`), and the outcome is published before the command counts as done.
An unexpected exception while running one command becomes that command's failed result and
releases the breaker's probe if it held it. A record Kafka refuses for good is final: a bounded
dead letter or a minimal result takes its place (else it is dropped and counted). Every wait
ends at once when the command is halted (stop, or its partition revoked). Ordering,
concurrency and offsets are the consumer's business, not this module's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import structlog

from bridge.api.client import SpotlerClient
from bridge.contract.records import Record, Topics
from bridge.core.backoff import Backoff, full_jitter
from bridge.core.config import EgressSettings
from bridge.core.errors import ApiError, InvalidCommand, PublishError, RecordRejected
from bridge.egress import commands, sendlog
from bridge.egress.commands import Command, Kind, Position
from bridge.egress.policy import CircuitBreaker, CircuitState, RateLimiter
from bridge.egress.retry_after import RetryAfterCap
from bridge.kafka.publisher import Publisher
from bridge.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)


class Aborted(Exception):
    """Shutdown or a revocation interrupted a command before its result was durable: leave it
    uncommitted (the next owner of its partition runs it)."""


class CompletedResults:
    """Results of completed commands by (kind, id): bounded in count, bytes and time."""

    def __init__(self, size: int = 100_000, max_bytes: int = 64 * 1024**2, ttl: float = 86400):
        self._size, self._max_bytes, self._ttl = size, max_bytes, ttl
        self._bytes = 0
        self._items: OrderedDict[tuple[str, str], tuple[float, Record]] = OrderedDict()

    def get(self, kind: str, command_id: str) -> Record | None:
        found = self._items.get((kind, command_id))
        if found is None:
            return None
        if time.monotonic() - found[0] > self._ttl:
            self._drop((kind, command_id))
            return None
        return found[1]

    def add(self, kind: str, command_id: str, record: Record) -> None:
        self._drop((kind, command_id))
        self._items[(kind, command_id)] = (time.monotonic(), record)
        self._bytes += len(record.value)
        while self._items and (len(self._items) > self._size or self._bytes > self._max_bytes):
            self._drop(next(iter(self._items)))

    def _drop(self, key: tuple[str, str]) -> None:
        found = self._items.pop(key, None)
        if found is not None:
            self._bytes -= len(found[1].value)


class CommandRunner:
    """Runs commands against the platform and publishes their results."""

    def __init__(
        self,
        settings: EgressSettings,
        topics: Topics,
        metrics: Metrics,
        publisher: Publisher,
        api: SpotlerClient,
        stop: asyncio.Event,
        on_circuit: Callable[[CircuitState], None],
    ) -> None:
        self._s = settings
        self._topics = topics
        self._metrics = metrics
        self._publisher = publisher
        self._api = api
        self._stop = stop
        self._limiter = RateLimiter(settings.rate_limit, settings.channel_rate_limit)
        self._retry_after = RetryAfterCap(settings.retry_after_max, metrics)
        self.breaker = CircuitBreaker(
            settings.circuit_failures, settings.circuit_open_seconds, on_circuit
        )
        self._completed = CompletedResults()
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._failing: dict[int, float] = {}  # publishes of results not yet acknowledged
        self._tokens = itertools.count()

    @property
    def healthy(self) -> bool:
        """False while the breaker is stuck or results cannot be published (past the bounds)."""
        return (
            self.breaker.not_closed_for() <= self._s.circuit_stuck_seconds
            and self.results_unpublished_for() <= self._s.results_stall_seconds
        )

    def observe(self) -> None:
        """Update the gauges that only a timer can keep true."""
        self._metrics.circuit_not_closed.set(self.breaker.not_closed_for())
        self._metrics.results_unpublished.set(self.results_unpublished_for())

    def results_unpublished_for(self) -> float:
        """Seconds the oldest result still being retried has been failing to reach Kafka."""
        return time.monotonic() - min(self._failing.values()) if self._failing else 0.0

    async def run(
        self,
        position: Position,
        kind: Kind,
        raw: bytes | None,
        command: Command | InvalidCommand,
        halt: asyncio.Event | None = None,
    ) -> str:
        """Run one command to its result. ``halt`` (set on stop or when the command's partition
        is revoked; the stop event when not given) ends every wait at once with
        :class:`Aborted`: the command is then not finished and must not be committed."""
        halt = self._stop if halt is None else halt
        if isinstance(command, InvalidCommand):
            command_id = commands.salvage_id(raw, position)
            await self._publish(
                commands.deadletter_record(self._topics, raw, position, command.reason),
                halt,
                lambda _, refused: commands.deadletter_record(
                    self._topics, raw, position, command.reason, refused=refused
                ),
            )
            await self._finish(
                command_id, kind, None, None, 0, position, reason=f"invalid: {command.reason}"
            )
            log.info(
                "command",
                outcome="deadletter",
                command_id=commands.safe_id(command_id),
                reason=command.reason,
            )
            return "deadletter"
        previous = self._completed.get(kind, command.id)
        if previous is not None:
            await self._publish(previous, halt)  # the same result again: same id, same bytes
            log.info("command", outcome="duplicate", command_id=command.id, kind=kind)
            return "duplicate"
        age = time.time() - position.timestamp_ms / 1000.0
        if position.timestamp_ms > 0 and age > self._s.max_age:
            await self._finish(
                command.id, kind, command.channel, command.contact, 0, position, reason="expired"
            )
            log.info("command", outcome="expired", command_id=command.id, age_s=round(age))
            return "expired"
        try:
            attempts, response, error = await self._call(command, halt)
        except (Aborted, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug: this command fails, the direction goes on
            log.exception("egress.command_crashed", command_id=command.id)
            await self._finish(
                command.id,
                kind,
                command.channel,
                command.contact,
                1,
                position,
                reason=f"internal error: {type(exc).__name__}",
            )
            return "failed"
        record = self._result(
            command.id,
            kind,
            command.channel,
            command.contact,
            attempts,
            position,
            response=response,
            error=error,
        )
        failed = None if error is None else f"platform error {error.status} {error.code}"
        await self._log_send(
            command.id, kind, command.channel, command.contact, position, response, failed
        )
        record = await self._publish(record, halt, commands.minimal_result)
        self._completed.add(kind, command.id, record)
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

    async def _call(
        self, command: Command, halt: asyncio.Event
    ) -> tuple[int, dict[str, Any] | None, ApiError | None]:
        deadline = time.monotonic() + self._s.retry_deadline
        attempt = 0
        call = (
            self._api.send_message
            if command.kind == "send-message"
            else self._api.update_conversation
        )
        while True:
            probe = False
            try:
                # Each wait ends at once on halt; a halted command never calls late.
                probe = await self.breaker.allow(halt)
                await self._limiter.acquire(command.channel, halt)
                # The bound is on calls in progress: backoff sleeps and result publishing
                # hold no slot, so other conversations use it meanwhile.
                async with self._slots:
                    if halt.is_set():
                        raise Aborted
                    attempt += 1
                    response = await call(
                        command.channel, command.contact, command.body, request_id=command.id
                    )
            except ApiError as exc:
                if exc.retriable:
                    self.breaker.failure()
                else:
                    self.breaker.neutral()
                retry_after = self._retry_after.honoured(command.channel, exc)
                if exc.status == 429:  # the platform's rate limit: every call to it waits
                    pause = self._limiter.pause(command.channel, retry_after)
                if not exc.retriable or attempt >= self._s.max_attempts:
                    return attempt, None, exc
                if exc.status == 429:
                    delay = pause
                elif retry_after is not None:
                    delay = retry_after
                else:
                    delay = full_jitter(attempt, self._s.backoff_base, self._s.backoff_max)
                if time.monotonic() + delay > deadline:
                    return attempt, None, exc
                self._metrics.retries.labels(command.kind).inc()
                await self._sleep(delay, halt)
                continue
            except BaseException:
                self.breaker.release(probe)  # never leave the breaker waiting for this probe
                raise
            self.breaker.success()
            return attempt, response, None

    async def _sleep(self, seconds: float, halt: asyncio.Event) -> None:
        """Sleep, but give up at once when halted (the command is then redelivered)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await halt.wait()
                raise Aborted

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
        reason = str(outcome.get("reason") or "failed")
        await self._log_send(command_id, kind, channel, contact, position, None, reason)
        await self._publish(
            self._result(command_id, kind, channel, contact, attempts, position, **outcome),
            replace=commands.minimal_result,
        )

    async def _log_send(
        self,
        command_id: str,
        kind: str,
        channel: str | None,
        contact: str | None,
        position: Position,
        response: dict[str, Any] | None,
        failed: str | None,
    ) -> None:
        """The send-log entry (docs/status.md), durable before the result that follows it."""
        entry = sendlog.entry_record(
            self._topics,
            command_id=command_id,
            kind=kind,
            channel=channel,
            contact=contact,
            position=position,
            response=response,
            failed=failed,
        )
        if entry is not None:
            await self._publish(entry)

    def _result(
        self,
        command_id: str,
        kind: str,
        channel: str | None,
        contact: str | None,
        attempts: int,
        position: Position,
        **outcome: Any,
    ) -> Record:
        return commands.result_record(
            self._topics,
            command_id=command_id,
            kind=kind,
            channel=channel,
            contact=contact,
            attempts=attempts,
            position=position,
            **outcome,
        )

    async def _publish(
        self,
        record: Record,
        halt: asyncio.Event | None = None,
        replace: Callable[[Record, str], Record] | None = None,
    ) -> Record:
        """Publish until Kafka acknowledges; when halted give up after a few tries.

        A record Kafka refuses for good is final, never retried: ``replace`` builds the small
        record published in its place (a bounded dead letter, a minimal result); when that is
        refused too, or there is none, the record is dropped (logged and counted). Returns
        the record that was published."""
        halt = self._stop if halt is None else halt
        retry = Backoff(0.2, 5.0)
        token = next(self._tokens)
        try:
            while True:
                try:
                    # no timeout of ours: the producer acknowledges or fails within its bound
                    await self._publisher.publish(record)
                    return record
                except RecordRejected as exc:
                    log.error(
                        "egress.record_refused",
                        topic=record.topic,
                        event_id=record.event_id,
                        size=len(record.value),
                        error=str(exc),
                    )
                    if replace is None:
                        self._metrics.child(self._metrics.records_set_aside, "dropped").inc()
                        return record
                    outcome = "deadletter" if record.label == "deadletter" else "minimal_result"
                    self._metrics.child(self._metrics.records_set_aside, outcome).inc()
                    record, replace = replace(record, str(exc)), None
                except PublishError as exc:
                    self._failing.setdefault(token, time.monotonic())
                    delay = retry.next()
                    if halt.is_set() and retry.failures >= 3:
                        raise Aborted from exc
                    log.warning("egress.publish_failed", topic=record.topic, error=str(exc))
                    await asyncio.sleep(delay)
        finally:
            self._failing.pop(token, None)

    async def fail(self, position: Position, kind: Kind, raw: bytes | None, reason: str) -> None:
        """Publish a failed result for a command that could not be run (e.g. a bug)."""
        await self._finish(
            commands.salvage_id(raw, position), kind, None, None, 0, position, reason=reason
        )
