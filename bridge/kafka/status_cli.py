"""``bridge status COMMAND_ID``: one command's delivery history, read from ``P.commands.status``.

Owns the operator's view of the status topic (docs/status.md): the command's key
(``<kind>/<id>``) names one partition (Kafka's default partitioner, as the producer chose it);
that partition is read from its start to its current end and the command's records are printed,
the latest last: its state, message id and history. Exit 0 when found, 1 when not.
"""

from __future__ import annotations

import asyncio
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from bridge.contract.records import Topics
from bridge.contract.status import status_key
from bridge.core.config import Settings
from bridge.kafka.connect import client_options


async def show(
    settings: Settings, command_id: str, kind: str, *, as_json: bool, out: TextIO
) -> int:
    topic = Topics(settings.kafka.topic_prefix).status
    key = status_key(kind, command_id)
    consumer = AIOKafkaConsumer(
        group_id=None, enable_auto_commit=False, **client_options(settings.kafka)
    )
    try:
        await consumer.start()
        found = await _read(consumer, topic, key)
    except (KafkaError, OSError, TimeoutError) as exc:
        print(f"error   kafka  {type(exc).__name__}: {exc}", file=out)
        return 1
    finally:
        await consumer.stop()
    if not found:
        print(f"no status for {key.decode()} on {topic}", file=out)
        return 1
    latest = found[-1]
    if as_json:
        out.write(orjson.dumps(latest).decode() + "\n")
        return 0
    print(
        f"{key.decode()}  state {latest.get('state')}  message {latest.get('messageId')}  "
        f"{latest.get('channelJid')} -> {latest.get('contactJid')}  ({len(found)} records)",
        file=out,
    )
    for entry in latest.get("history") or []:
        status = entry.get("status")
        print(
            f"  {entry.get('at')}  {entry.get('state')!s:<9}  {str(status)[:40]:<12}  "
            f"{entry.get('source')}  {entry.get('eventId') or ''}".rstrip(),
            file=out,
        )
    return 0


async def _read(consumer: AIOKafkaConsumer, topic: str, key: bytes) -> list[dict[str, Any]]:
    async with asyncio.timeout(30):
        if topic not in await consumer.topics():
            return []
        numbers = sorted(consumer.partitions_for_topic(topic) or [])
        if not numbers:  # metadata for a topic no one subscribed to: ask for it
            consumer.subscribe([topic])
            await consumer.getmany(timeout_ms=500)
            numbers = sorted(consumer.partitions_for_topic(topic) or [])
            consumer.unsubscribe()
        tp = TopicPartition(topic, DefaultPartitioner()(key, numbers, numbers))
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        await consumer.seek_to_beginning(tp)
        found = []
        while await consumer.position(tp) < end:
            for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                if record.key == key and record.value is not None:
                    try:
                        found.append(orjson.loads(record.value)["data"])
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        continue
        return found
