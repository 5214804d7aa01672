"""Ingress durability: make a record durable, in Kafka or in the spool, before the 200.

:class:`Durable` is the ``Store`` the webhook app calls. While the spool is empty it publishes
to Kafka and waits for the acknowledgement within ``publish_timeout``; when Kafka does not
acknowledge in time (or is not connected), the record is appended to the spool and fsync'd
instead. While the spool holds records, new ones go to the spool too, behind them, so the drain
keeps each conversation in order. Only when the spool cannot take a record either does this
raise (the webhook answers 503).

Only a retriable :class:`~bridge.core.errors.PublishError` sends a record to the spool (a
record over the spool's frame limit, which the configuration's bound on the body keeps from
happening, is set aside like one Kafka refuses). A record
Kafka refuses for good (:class:`~bridge.core.errors.RecordRejected`: too large, invalid, not
authorized) is replaced by a small dead letter (:mod:`bridge.ingress.setaside`), published (or
spooled) in its place; the answer is 200 with status ``deadletter``.

Duplicate window: a record whose acknowledgement timed out may still reach Kafka from the
producer's buffer *and* be spooled and drained later: the same event id twice, never a loss.
"""

from __future__ import annotations

import structlog

from bridge.contract.records import Record
from bridge.core.errors import PublishError, RecordRejected
from bridge.ingress.setaside import set_aside
from bridge.ingress.spool import FrameTooLarge, Spool
from bridge.kafka.publisher import Publisher
from bridge.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)


class Durable:
    """Publish, or spool when Kafka cannot take the record in time."""

    def __init__(
        self,
        publisher: Publisher,
        spool: Spool,
        *,
        publish_timeout: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._publisher = publisher
        self._spool = spool
        self._timeout = publish_timeout
        self._metrics = metrics

    @property
    def ready(self) -> bool:
        """Ready once Kafka was reached at least once, while the spool can take records.

        Not ready before the first connection: a fresh pod would only fill its spool. Once
        connected, a Kafka outage alone does not make ingress unready (the spool takes the
        records); a spool that cannot take records (full, or its disk failing) does, and so
        does a spool that has not drained for ``BRIDGE_SPOOL_STALL_SECONDS`` (stalled).
        """
        if not self._publisher.connected or self._spool.stalled:
            return False
        return self._spool.empty or self._spool.writable

    async def __call__(self, record: Record) -> str:
        spool = self._spool
        if spool.empty and self._publisher.connected:
            try:
                await self._publisher.publish(record, timeout=self._timeout)
                return "published"
            except RecordRejected as exc:
                return await self._set_aside(record, exc)
            except PublishError as exc:
                log.debug("ingress.spooling", reason=str(exc))
        try:
            await spool.append(record)
        except FrameTooLarge as exc:  # the spool could not read it back: its dead letter
            return await self._set_aside(record, exc)
        return "spooled"

    async def _set_aside(self, record: Record, exc: RecordRejected | FrameTooLarge) -> str:
        """Publish the dead letter of a refused record (spool it if Kafka is slow). If Kafka
        refuses the dead letter too, raise: the delivery gets 503 and the platform retries."""
        letter = set_aside(record, str(exc))
        log.warning("ingress.record_refused", event_id=record.event_id, size=len(record.value),
                    reason=str(exc), deadletter=letter.event_id)  # fmt: skip
        try:
            await self._publisher.publish(letter, timeout=self._timeout)
        except RecordRejected:
            raise
        except PublishError:
            await self._spool.append(letter)
        if self._metrics is not None:
            self._metrics.child(self._metrics.records_set_aside, "deadletter").inc()
        return "deadletter"
