"""Ingress durability: make a record durable, in Kafka or in the spool, before the 200.

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

    def __init__(self, publisher: Publisher, spool: Spool, *, publish_timeout: float) -> None:
        self._publisher = publisher
        self._spool = spool
        self._timeout = publish_timeout

    @property
    def ready(self) -> bool:
        """Ready once Kafka was reached at least once, while the spool can take records.

        Not ready before the first connection: a fresh pod would only fill its spool. Once
        connected, a Kafka outage alone does not make ingress unready (the spool takes the
        records); a spool that cannot take records (full, or its disk failing) does.
        """
        if not self._publisher.connected:
            return False
        return self._spool.empty or self._spool.writable

    async def __call__(self, record: Record) -> str:
        spool = self._spool
        if spool.empty and self._publisher.connected:
            try:
                await self._publisher.publish(record, timeout=self._timeout)
                return "published"
            except PublishError as exc:
                log.debug("ingress.spooling", reason=str(exc))
        await spool.append(record)
        return "spooled"
