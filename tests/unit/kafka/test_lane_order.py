"""A partition's lane after a failed hand-over (issue 26, item 5).

``send_batch`` failing (no slot within the request timeout, the producer closing) cannot be
made to happen on demand against a real broker, so the producer here is a fake whose first
``send_batch`` fails; everything above it (lanes, batches, sessions) is the real publisher.
The property is the one DESIGN.md ("Ordering") promises: records of one key land in the order
they were published, also when the caller (the spool drain) resends what failed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaTimeoutError

from bridge.contract.records import Record
from bridge.core.config import KafkaSettings
from bridge.core.errors import PublishError
from bridge.kafka.producer import KafkaPublisher, _Session
from bridge.telemetry.metrics import Metrics

PER_BATCH = 10


class FakeBuilder:
    def __init__(self) -> None:
        self.values: list[bytes] = []

    def append(self, *, timestamp: Any, key: bytes, value: bytes, headers: Any) -> object | None:
        if len(self.values) == PER_BATCH:
            return None  # full
        self.values.append(value)
        return object()

    def close(self) -> None:
        pass


class FakeCluster:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return {0}


class FakeClient:
    cluster = FakeCluster()


class OnceFailingProducer:
    """Hands batches over at once and acknowledges them, except the first one it is given."""

    def __init__(self) -> None:
        self.client = FakeClient()
        self.written: list[bytes] = []
        self.failures = 1

    def create_batch(self) -> FakeBuilder:
        return FakeBuilder()

    async def send_batch(self, batch: FakeBuilder, topic: str, *, partition: int) -> Any:
        await asyncio.sleep(0)
        if self.failures:
            self.failures -= 1
            raise KafkaTimeoutError("no slot for the batch in time")
        self.written.extend(batch.values)
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def rec(i: int) -> Record:
    return Record(topic="t.events.message", key=b"k", value=b"%d" % i, event_id="e", label="m")


async def publish_all(publisher: KafkaPublisher, records: list[Record]) -> list[Record]:
    """Publish concurrently (as the drain does); the records that failed, in order."""
    tasks = [asyncio.create_task(publisher.publish(r)) for r in records]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        assert result is None or isinstance(result, PublishError), result
    return [r for r, result in zip(records, results, strict=True) if result is not None]


async def test_a_failed_hand_over_fails_the_lanes_later_batches_so_a_resend_keeps_order() -> None:
    publisher = KafkaPublisher(KafkaSettings(bootstrap_servers="unused:9092"), Metrics())
    producer = OnceFailingProducer()
    first: Any = _Session(producer, 1)
    publisher._announce(first)
    records = [rec(i) for i in range(4 * PER_BATCH)]

    failed = await publish_all(publisher, records)

    assert failed == records, "the batches after the failed one must fail too, none sent"
    assert producer.written == []
    assert first.ended is not None, "a failed hand-over ends the session"
    assert publisher.session == 0

    publisher._announce(_Session(producer, 2))  # the next session
    assert await publish_all(publisher, failed) == []
    assert producer.written == [r.value for r in records]
