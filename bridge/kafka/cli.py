"""Operator tools on the bridge's topics: ``bridge tail`` and ``bridge produce``.

``tail`` prints records one JSON line each (a value it cannot render as JSON as raw text),
reading without a consumer group (nothing is committed, nobody else's offsets move).
``produce`` puts JSON lines from standard input on a topic, keyed
``<channelJid>/<contactJid>`` as the README asks of command producers.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from bridge.contract.records import Topics
from bridge.core.config import Settings
from bridge.kafka.connect import client_options


def default_topics(topics: Topics) -> list[str]:
    return [
        *topics.all_event_topics(),
        topics.send_message,
        topics.update_conversation,
        topics.results,
        topics.commands_deadletter,
    ]


async def tail(
    settings: Settings, names: list[str], from_beginning: bool, limit: int, seconds: float
) -> int:
    """Print records until interrupted, ``limit`` records, or ``seconds`` pass."""
    topics = names or default_topics(Topics(settings.kafka.topic_prefix))
    consumer = AIOKafkaConsumer(
        *topics,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        **client_options(settings.kafka),
    )
    await consumer.start()
    seen = 0
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds or None):
                async for msg in consumer:
                    sys.stdout.write(render(msg) + "\n")
                    sys.stdout.flush()
                    seen += 1
                    if limit and seen >= limit:
                        break
    finally:
        await consumer.stop()
    return 0


def render(msg: ConsumerRecord[bytes, bytes]) -> str:
    """One record as one JSON line; a value it cannot parse or re-encode (too deep, not JSON)
    is printed as raw text instead, so ``tail`` never stops on a record."""
    line = {
        "topic": msg.topic,
        "partition": msg.partition,
        "offset": msg.offset,
        "key": msg.key.decode("utf-8", "replace") if msg.key else None,
        "value": None,
    }
    try:
        line["value"] = orjson.loads(msg.value or b"")
        return orjson.dumps(line).decode()
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        line["value"] = (msg.value or b"").decode("utf-8", "replace")
        return orjson.dumps(line).decode()


async def produce(settings: Settings, topic: str, lines: list[str]) -> int:
    """Publish each non-empty line (a JSON command) to ``topic``; returns an exit code."""
    topics = Topics(settings.kafka.topic_prefix)
    name = {
        "send-message": topics.send_message,
        "update-conversation": topics.update_conversation,
    }.get(topic, topic)
    producer = AIOKafkaProducer(
        acks="all", enable_idempotence=True, **client_options(settings.kafka)
    )
    await producer.start()
    try:
        for line in filter(None, (raw.strip() for raw in lines)):
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                print(f"bridge produce: not JSON: {exc}", file=sys.stderr)
                return 2
            key = None
            if isinstance(doc, dict) and doc.get("channelJid") and doc.get("contactJid"):
                key = f"{doc['channelJid']}/{doc['contactJid']}".encode()
            meta = await producer.send_and_wait(name, line.encode(), key=key)
            print(f"{name} partition {meta.partition} offset {meta.offset}", file=sys.stderr)
    finally:
        await producer.stop()
    return 0
