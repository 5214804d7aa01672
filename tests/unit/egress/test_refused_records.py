"""Records Kafka refuses for good are final (issue 26, item 6): never retried forever.

A 1 MB command of control bytes is invalid JSON; its dead letter holds the body as JSON text
where every control byte becomes a six-byte escape, over any request size. Kafka refuses that
record for good (:class:`RecordRejected`); the dead letter that replaces it is bounded (head,
sha256, size: as ingress's set-aside does), a refused result is replaced by a minimal one, and
when even that is refused the command still finishes (its record dropped, counted), so the
partition's commit point moves on.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any, cast

import orjson
from prometheus_client import CollectorRegistry

from bridge.api.client import SpotlerClient
from bridge.contract.records import Record, Topics
from bridge.core.config import EgressSettings
from bridge.core.errors import InvalidCommand, RecordRejected
from bridge.egress import commands
from bridge.egress.commands import Command, Position
from bridge.egress.runner import CommandRunner
from bridge.telemetry.metrics import Metrics
from tests.fakes import FakeApi, InMemoryPublisher

TOPICS = Topics("t")
CHANNEL = "31612345678@whatsapp.eazy.im"
CONTACT = "31611111111@whatsapp.eazy.im"
LIMIT = 1024 * 1024  # the producer's default max.request.size


class RefusingPublisher(InMemoryPublisher):
    """Kafka's answer to a record over the request size, or to a topic it may not write."""

    def __init__(self, refuse_topics: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.refuse_topics = refuse_topics
        self.refused: list[Record] = []

    async def publish(self, record: Record, *, timeout: float | None = None) -> None:
        if len(record.value) > LIMIT or record.topic in self.refuse_topics:
            self.refused.append(record)
            self.calls += 1
            raise RecordRejected("MessageSizeTooLargeError: too large for max.request.size")
        await super().publish(record, timeout=timeout)


def runner(
    publisher: InMemoryPublisher, api: FakeApi | None = None
) -> tuple[CommandRunner, Metrics]:
    metrics = Metrics(CollectorRegistry())
    settings = EgressSettings(rate_limit=0.0, channel_rate_limit=0.0, circuit_failures=1000)
    run = CommandRunner(
        settings,
        TOPICS,
        metrics,
        publisher,
        cast(SpotlerClient, api or FakeApi()),
        asyncio.Event(),
        lambda state: None,
    )
    return run, metrics


def position(offset: int = 3) -> Position:
    return Position(TOPICS.send_message, 0, offset, b"k", int(time.time() * 1000))


def values(publisher: InMemoryPublisher, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in publisher.records if r.topic == topic]


def set_aside(metrics: Metrics, outcome: str) -> float:
    found = metrics.registry.get_sample_value(
        "spotler_bridge_records_set_aside_total", {"outcome": outcome}
    )
    return found or 0.0


async def test_a_dead_letter_kafka_refuses_is_replaced_by_a_bounded_one() -> None:
    raw = bytes(range(1, 32)) * (LIMIT // 31)  # ~1 MB of control bytes: ~6 MB as JSON text
    publisher = RefusingPublisher()
    run, metrics = runner(publisher)
    try:
        commands.parse(raw, "send-message")
    except InvalidCommand as exc:
        invalid = exc
    async with asyncio.timeout(10):
        outcome = await run.run(position(), "send-message", raw, invalid)
    assert outcome == "deadletter"
    assert len(publisher.refused) == 1  # refused once, never sent again
    [letter] = values(publisher, TOPICS.commands_deadletter)
    data = letter["data"]
    assert data["size"] == len(raw)
    assert data["sha256"] == hashlib.sha256(raw).hexdigest()
    assert data["truncated"] is True
    assert data["reason"].startswith("not valid JSON")
    assert "refused by Kafka" in data["refused"]
    assert len(orjson.dumps(letter)) < 64 * 1024
    [result] = values(publisher, TOPICS.results)
    assert result["type"] == "im.eazy.command.failed"
    assert set_aside(metrics, "deadletter") == 1


async def test_a_refused_result_is_replaced_by_a_minimal_one() -> None:
    """A succeeded command whose result is too large keeps its status and messageId."""
    huge = {"id": "m-7", "echo": "x" * (2 * LIMIT)}
    publisher = RefusingPublisher()
    run, metrics = runner(publisher, FakeApi(huge))
    command = Command("c1", "send-message", CHANNEL, CONTACT, {"message": {"type": "text"}})
    async with asyncio.timeout(10):
        outcome = await run.run(position(), "send-message", None, command)
    assert outcome == "succeeded"
    [result] = values(publisher, TOPICS.results)
    assert result["id"] == "result/send-message/c1"
    assert result["type"] == "im.eazy.command.succeeded"
    assert result["data"]["messageId"] == "m-7"
    assert result["data"]["commandId"] == "c1"
    assert "response" not in result["data"]
    assert "refused by Kafka" in result["data"]["refused"]
    assert set_aside(metrics, "minimal_result") == 1


async def test_when_the_replacement_is_refused_too_the_command_still_finishes() -> None:
    """A results topic Kafka never takes (not authorized): dropped and counted, not retried."""
    publisher = RefusingPublisher(refuse_topics=(TOPICS.results,))
    run, metrics = runner(publisher)
    command = Command("c1", "send-message", CHANNEL, CONTACT, {"message": {"type": "text"}})
    async with asyncio.timeout(10):
        outcome = await run.run(position(), "send-message", None, command)
    assert outcome == "succeeded"
    assert len(publisher.refused) == 2  # the result, then the minimal one
    assert set_aside(metrics, "minimal_result") == 1
    assert set_aside(metrics, "dropped") == 1
