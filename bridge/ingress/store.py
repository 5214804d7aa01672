"""Delivery policy for ingress: make a record durable, in Kafka or in the spool.

:class:`Durable` is the ``Store`` the webhook app calls. While the spool is empty it publishes
to Kafka and waits for the acknowledgement within ``publish_timeout``; when Kafka does not
acknowledge in time (or is not connected), the record is appended to the spool and fsync'd
instead. While the spool holds records, new ones go to the spool too, behind them, so the drain
keeps each conversation in order. Only when the spool cannot take a record either does this
raise (the webhook answers 503).

Duplicate window: a record whose acknowledgement timed out may still reach Kafka from the
producer's buffer *and* be spooled and drained later: the same event id twice, never a loss.
"""

from __future__ import annotations

import structlog

from bridge.contract.records import Record
from bridge.core.errors import PublishError
from bridge.ingress.spool import Spool
from bridge.kafka.producer import Publisher

log = structlog.get_logger(__name__)


class Durable:
    """Publish, or spool when Kafka cannot take the record in time."""

    def __init__(
        self, publisher: Publisher, spool: Spool | None, *, publish_timeout: float
    ) -> None:
        self._publisher = publisher
        self._spool = spool
        self._timeout = publish_timeout

    @property
    def ready(self) -> bool:
        """Ready once Kafka was reached; then for as long as Kafka or the spool takes records.

        Not ready before the first connection: a fresh pod would only fill its spool.
        """
        if not self._publisher.connected:
            return False
        return self._spool is None or self._spool.empty or self._spool.writable

    async def __call__(self, record: Record) -> str:
        spool = self._spool
        if spool is None or (spool.empty and self._publisher.connected):
            try:
                await self._publisher.publish(record, timeout=self._timeout)
                return "published"
            except PublishError as exc:
                if spool is None:
                    raise
                log.debug("ingress.spooling", reason=str(exc))
        await spool.append(record)
        return "spooled"
