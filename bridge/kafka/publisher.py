"""The publisher interface: what ingress and egress put records through, and the factory.

:class:`Publisher` is all most callers need; the spool drain also watches producer sessions
(:class:`SessionPublisher`) and the composition root runs one (:class:`ManagedPublisher`).
:func:`make_publisher` returns the aiokafka publisher (:mod:`bridge.kafka.producer`, the default)
or the librdkafka one (:mod:`bridge.kafka.rdkafka`, ``BRIDGE_KAFKA_CLIENT=librdkafka``). The
broker-free fake publisher for tests is in ``tests/fakes.py``.
"""

from __future__ import annotations

from typing import Protocol

from bridge.contract.records import Record
from bridge.core.config import KafkaSettings
from bridge.core.errors import ConfigError
from bridge.telemetry.metrics import Metrics


class Publisher(Protocol):
    """Where ingress and egress put records. ``publish`` returns once Kafka acknowledged."""

    @property
    def connected(self) -> bool:
        """True from the first successful start until close.

        A broker lost later does not clear it: a publish then fails or times out
        (:class:`~bridge.core.errors.PublishError`) while Kafka is away.
        """
        ...

    async def publish(self, record: Record, *, timeout: float | None = None) -> None: ...


class SessionPublisher(Publisher, Protocol):
    """A :class:`Publisher` that says when a new producer session starts, so that a retry loop
    (the spool drain) resends at once instead of sleeping out a backoff grown while Kafka was
    away."""

    @property
    def session(self) -> int:
        """The working session's number (a new one at each start); 0 while there is none."""
        ...

    async def until_new_session(self, seen: int, timeout: float) -> bool:
        """Wait until a working session other than ``seen`` exists (True), at most ``timeout``
        seconds (False)."""
        ...


class ManagedPublisher(SessionPublisher, Protocol):
    """A :class:`SessionPublisher` the process runs: :meth:`run_connect` keeps a working
    session until cancelled, :meth:`close` flushes and disconnects."""

    async def run_connect(self) -> None: ...

    async def close(self, flush_timeout: float = 10.0) -> None: ...


def make_publisher(
    kafka: KafkaSettings, metrics: Metrics, *, max_request_size: int
) -> ManagedPublisher:
    """The publisher ``BRIDGE_KAFKA_CLIENT`` names: aiokafka's (the default) or librdkafka's."""
    if kafka.client == "librdkafka":
        try:
            from bridge.kafka.rdkafka import RdKafkaPublisher
        except ImportError:
            raise ConfigError(
                [
                    "BRIDGE_KAFKA_CLIENT=librdkafka: confluent-kafka is not installed "
                    "(pip install 'spotler-bridge[rdkafka]')"
                ]
            ) from None
        return RdKafkaPublisher(kafka, metrics, max_request_size=max_request_size)
    from bridge.kafka.producer import KafkaPublisher

    return KafkaPublisher(kafka, metrics, max_request_size=max_request_size)
