"""``bridge tail``: print records from the bridge's topics, one JSON line each (operator tool).

Reads without a consumer group (nothing is committed, nobody else's offsets move). Values that
are JSON are printed as JSON; anything else as text.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import orjson
from aiokafka import AIOKafkaConsumer

from bridge.config import Settings
from bridge.events import Topics
from bridge.publisher import client_options


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
                    try:
                        value = orjson.loads(msg.value)
                    except orjson.JSONDecodeError:
                        value = msg.value.decode("utf-8", "replace")
                    line = {
                        "topic": msg.topic,
                        "partition": msg.partition,
                        "offset": msg.offset,
                        "key": msg.key.decode("utf-8", "replace") if msg.key else None,
                        "value": value,
                    }
                    sys.stdout.write(orjson.dumps(line).decode() + "\n")
                    sys.stdout.flush()
                    seen += 1
                    if limit and seen >= limit:
                        break
    finally:
        await consumer.stop()
    return 0
