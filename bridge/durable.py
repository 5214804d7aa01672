"""Delivery policy for ingress: make a record durable, in Kafka or (later) in the spool.

:class:`Durable` is the ``Store`` the webhook app calls. It publishes to Kafka and waits for the
acknowledgement within ``publish_timeout``; when Kafka cannot take the record in time it raises
a retriable :class:`~bridge.errors.PublishError` and the webhook answers 503.
"""

from __future__ import annotations

from bridge.events import Record
from bridge.publisher import Publisher


class Durable:
    """Publish-or-fail: the record is durable once Kafka acknowledged it."""

    def __init__(self, publisher: Publisher, *, publish_timeout: float) -> None:
        self._publisher = publisher
        self._timeout = publish_timeout

    @property
    def ready(self) -> bool:
        """Whether a record handed over now has a chance to become durable."""
        return self._publisher.connected

    async def __call__(self, record: Record) -> str:
        await self._publisher.publish(record, timeout=self._timeout)
        return "published"
