"""Group commit in the Kafka publisher (issue 13), against a real broker.

Concurrent publishes share one batch per partition; what must not change with it (DESIGN.md,
"Delivery" and "Ordering"): each caller's answer is its own record's acknowledgement, records
of one key keep the order of the publish calls, a caller that stops waiting leaves the record
with the producer (a duplicate later, never a gap), and a record Kafka refuses fails its own
batch only.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.contract.records import Record
from bridge.core.config import KafkaSettings
from bridge.core.errors import PublishTimeout, RecordRejected
from bridge.kafka.producer import KafkaPublisher
from bridge.telemetry.metrics import Metrics
from tests.integration.procs import consume
from tests.integration.test_publisher import connected, stop

pytestmark = pytest.mark.kafka


async def make_topic(kafka: str, name: str, partitions: int, **configs: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
    finally:
        await admin.close()


def rec(topic: str, key: str, value: bytes) -> Record:
    return Record(topic=topic, key=key.encode(), value=value, event_id="e", label="message")


async def test_concurrent_publishes_share_batches_and_keep_each_keys_order(kafka, prefix) -> None:
    topic = f"{prefix}.scratch"  # raw test values: not a topic of the contract
    await make_topic(kafka, topic, 3)
    metrics = Metrics()
    publisher = KafkaPublisher(KafkaSettings(bootstrap_servers=kafka), metrics)
    task = await connected(publisher)
    keys = [f"conversation-{k}" for k in range(12)]
    count = 3000
    try:
        await publisher.publish(rec(topic, "warm-up", b"-1"), timeout=20)  # metadata known
        calls = [
            asyncio.create_task(
                publisher.publish(rec(topic, keys[i % 12], str(i).encode()), timeout=30)
            )
            for i in range(count)
        ]
        await asyncio.gather(*calls)
    finally:
        await stop(task, publisher)
    batches = metrics.registry.get_sample_value("spotler_bridge_kafka_batches_total")
    assert batches is not None
    assert batches <= (count + 1) / 10, f"{batches} batches for {count + 1} records"
    records = await consume(kafka, [topic], count=count + 1, timeout=30, settle=1)
    assert len(records) == count + 1
    for key in keys:
        seen = [int(r.value) for r in records if r.key == key.encode()]
        assert seen == sorted(seen), f"{key} out of order"
        assert len(seen) == count // 12


async def test_a_caller_that_stops_waiting_leaves_its_record_with_the_producer(
    kafka, prefix
) -> None:
    topic = f"{prefix}.scratch"  # raw test values: not a topic of the contract
    await make_topic(kafka, topic, 1)
    publisher = KafkaPublisher(KafkaSettings(bootstrap_servers=kafka), Metrics())
    task = await connected(publisher)
    try:
        await publisher.publish(rec(topic, "k", b"first"), timeout=20)
        impatient = asyncio.create_task(publisher.publish(rec(topic, "k", b"gave-up"), timeout=0))
        patient = asyncio.create_task(publisher.publish(rec(topic, "k", b"waited"), timeout=20))
        with pytest.raises(PublishTimeout):
            await impatient
        await patient  # the same batch, answered for the one still waiting
    finally:
        await stop(task, publisher)
    records = await consume(kafka, [topic], count=3, timeout=20, settle=1)
    assert [r.value for r in records] == [b"first", b"gave-up", b"waited"]


async def test_a_refused_record_fails_only_its_own_batch(kafka, prefix) -> None:
    """A record over the topic's limit is larger than a batch, so it gets a batch of its own:
    the records appended before it to the same partition, in the same turn, are acknowledged."""
    topic = f"{prefix}.events.small"
    await make_topic(kafka, topic, 1, **{"max.message.bytes": "4096"})
    publisher = KafkaPublisher(KafkaSettings(bootstrap_servers=kafka), Metrics())
    task = await connected(publisher)
    try:
        await publisher.publish(rec(topic, "k", b"warm-up"), timeout=20)
        before = [
            asyncio.create_task(publisher.publish(rec(topic, "k", b"%d" % i), timeout=20))
            for i in range(20)
        ]
        big = asyncio.create_task(publisher.publish(rec(topic, "k", b"x" * 300_000), timeout=20))
        await asyncio.gather(*before)
        with pytest.raises(RecordRejected):
            await big
    finally:
        await stop(task, publisher)
    records = await consume(kafka, [topic], count=21, timeout=20, settle=1)
    assert [r.value for r in records] == [b"warm-up"] + [b"%d" % i for i in range(20)]
