"""Egress command runner: one command, from parsed (or invalid) to its one result record.

Decides what happens to a command once it is its turn: invalid ones are dead-lettered with a
failed result; repeats of a command this process completed are skipped; expired ones fail;
the rest are called with retries (backoff, ``Retry-After``, rate limits and the circuit breaker
from :mod:`bridge.egress.policy`), and the outcome is published before the command counts as done.
Ordering, concurrency and offsets are the consumer's business, not this module's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import structlog

from bridge.api.client import SpotlerClient
from bridge.contract.records import Record, Topics
from bridge.core.backoff import Backoff, full_jitter
from bridge.core.config import EgressSettings
from bridge.core.dedup import RecentIds
from bridge.core.errors import ApiError, InvalidCommand, PublishError
from bridge.egress import commands
from bridge.egress.commands import Command, Kind, Position
from bridge.egress.policy import CircuitBreaker, CircuitState, RateLimiter
from bridge.kafka.producer import Publisher
from bridge.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)


class Aborted(Exception):
    """Shutdown interrupted a command before its result was durable: leave it uncommitted."""


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
        self.breaker = CircuitBreaker(
            settings.circuit_failures, settings.circuit_open_seconds, on_circuit
        )
        self._completed = RecentIds(100_000, 24 * 3600.0)
        self._slots = asyncio.Semaphore(settings.concurrency)

    async def run(
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
            await self.breaker.allow()
            await self._limiter.acquire(command.channel)
            try:
                # The bound is on calls in progress: backoff sleeps and result publishing
                # hold no slot, so other conversations use it meanwhile.
                async with self._slots:
                    attempt += 1
                    response = await call(
                        command.channel, command.contact, command.body, request_id=command.id
                    )
            except ApiError as exc:
                if exc.retriable:
                    self.breaker.failure()
                else:
                    self.breaker.neutral()
                if not exc.retriable or attempt >= self._s.max_attempts:
                    return attempt, None, exc
                delay = exc.retry_after
                if delay is None:
                    delay = full_jitter(attempt, self._s.backoff_base, self._s.backoff_max)
                if time.monotonic() + delay > deadline:
                    return attempt, None, exc
                self._metrics.retries.labels(command.kind).inc()
                await self._sleep(delay)
                continue
            self.breaker.success()
            return attempt, response, None

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but give up at once when shutting down (the command is then redelivered)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()
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
        retry = Backoff(0.2, 5.0)
        while True:
            try:
                # no timeout of ours: the producer acknowledges or fails within its delivery bound
                await self._publisher.publish(record)
                return
            except PublishError as exc:
                delay = retry.next()
                if self._stop.is_set() and retry.failures >= 3:
                    raise Aborted from exc
                log.warning("egress.publish_failed", topic=record.topic, error=str(exc))
                await asyncio.sleep(delay)

    async def fail(self, position: Position, kind: Kind, raw: bytes | None, reason: str) -> None:
        """Publish a failed result for a command that could not be run (e.g. a bug)."""
        await self._finish(
            commands.salvage_id(raw, position), kind, None, None, 0, position, reason=reason
        )
