"""The Kafka publisher against a real broker: a record Kafka refuses, and the session after it.

A topic whose ``max.message.bytes`` is small makes the broker refuse one record for real
(MESSAGE_TOO_LARGE). DESIGN.md, "Operations": a record Kafka refuses costs that one item, and
the producer is recreated when its session breaks, so the partition keeps taking records.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.contract.records import Record
from bridge.core.config import KafkaSettings
from bridge.core.errors import PublishError, RecordRejected
from bridge.kafka.producer import KafkaPublisher
from bridge.telemetry.metrics import Metrics
from tests.integration.procs import consume

pytestmark = pytest.mark.kafka


async def small_topic(kafka: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, 1, 1, topic_configs={"max.message.bytes": "4096"})]
        )
    finally:
        await admin.close()


def record(topic: str, value: bytes) -> Record:
    return Record(topic=topic, key=b"conversation", value=value, event_id="e", label="message")


async def connected(publisher: KafkaPublisher) -> asyncio.Task[None]:
    task = asyncio.create_task(publisher.run_connect())
    async with asyncio.timeout(30):
        while not publisher.connected:  # noqa: ASYNC110 - a flag, polled with a deadline
            await asyncio.sleep(0.05)
    return task


async def stop(task: asyncio.Task[None], publisher: KafkaPublisher) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await publisher.close()


async def publish_soon(publisher: KafkaPublisher, rec: Record, within: float) -> None:
    """Publish ``rec``, trying again while the producer is between sessions."""
    async with asyncio.timeout(within):
        while True:
            try:
                await publisher.publish(rec, timeout=20)
                return
            except RecordRejected:
                raise
            except PublishError:
                await asyncio.sleep(0.1)


async def test_refused_record_is_rejected_for_good(kafka, prefix) -> None:
    topic = f"{prefix}.scratch"  # raw test values: not a topic of the contract
    await small_topic(kafka, topic)
    publisher = KafkaPublisher(KafkaSettings(bootstrap_servers=kafka), Metrics())
    task = await connected(publisher)
    try:
        with pytest.raises(RecordRejected, match="MessageSizeTooLarge"):
            await publisher.publish(record(topic, b"x" * 20_000), timeout=20)
    finally:
        await stop(task, publisher)


async def test_partition_keeps_working_after_a_refused_record(kafka, prefix) -> None:
    """The refused batch leaves a sequence gap in the idempotent session; a new session
    (new producer id) takes the next records instead of OutOfOrderSequenceNumber forever."""
    topic = f"{prefix}.scratch"  # raw test values: not a topic of the contract
    await small_topic(kafka, topic)
    metrics = Metrics()
    publisher = KafkaPublisher(KafkaSettings(bootstrap_servers=kafka), metrics)
    task = await connected(publisher)
    try:
        await publisher.publish(record(topic, b"before"), timeout=20)
        with pytest.raises(PublishError):
            await publisher.publish(record(topic, b"x" * 20_000), timeout=20)
        await publish_soon(publisher, record(topic, b"after-0"), within=20)
        for n in range(1, 20):  # the same partition, no more failures
            await publisher.publish(record(topic, f"after-{n}".encode()), timeout=20)
        recreations = metrics.registry.get_sample_value(
            "spotler_bridge_kafka_producer_recreations_total"
        )
        assert recreations == 1
    finally:
        await stop(task, publisher)
    values = [r.value for r in await consume(kafka, [topic], count=21, timeout=20, settle=1)]
    assert values == [b"before"] + [f"after-{n}".encode() for n in range(20)]


async def test_a_new_session_is_announced(kafka, prefix) -> None:
    """Issue 16: the spool drain learns at once that a replaced session works again (it resends
    then instead of sleeping out its backoff); a working session is not announced again."""
    topic = f"{prefix}.scratch"  # raw test values: not a topic of the contract
    await small_topic(kafka, topic)
    publisher = KafkaPublisher(KafkaSettings(bootstrap_servers=kafka), Metrics())
    task = await connected(publisher)
    try:
        first = publisher.session
        assert first > 0
        assert not await publisher.until_new_session(first, 0.5)  # still the same session
        with pytest.raises(PublishError):  # a refused batch ends the session
            await publisher.publish(record(topic, b"x" * 20_000), timeout=20)
        started = time.monotonic()
        assert await publisher.until_new_session(first, 20)
        assert publisher.session not in (0, first)
        assert time.monotonic() - started < 10  # RECONNECT_MAX (2 s) plus a start, with margin
        await publisher.publish(record(topic, b"after"), timeout=20)
    finally:
        await stop(task, publisher)
