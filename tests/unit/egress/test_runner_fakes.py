"""CommandRunner without a broker: a fake API client and the in-memory publisher.

Expectations from DESIGN.md, "Egress": retry network errors, 429, 5xx and codes 1003, 1004, 1012,
bounded in attempts; never retry the other codes; expired commands fail with reason
``expired``; invalid ones go to the dead-letter topic with a failed result; every command ends
in exactly one result (``im.eazy.command.succeeded`` / ``im.eazy.command.failed``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import orjson
import pytest
from prometheus_client import CollectorRegistry

from bridge.api.client import SpotlerClient
from bridge.contract.records import Topics
from bridge.core.config import EgressSettings
from bridge.core.errors import ApiError, InvalidCommand, PublishError
from bridge.egress.commands import Command, Position
from bridge.egress.runner import Aborted, CommandRunner
from bridge.telemetry.metrics import Metrics
from tests.fakes import FakeApi, InMemoryPublisher

CHANNEL = "31612345678@whatsapp.eazy.im"
CONTACT = "31611111111@whatsapp.eazy.im"
TOPICS = Topics("t")


def settings(**overrides: Any) -> EgressSettings:
    values: dict[str, Any] = {
        "backoff_base": 0.001,
        "backoff_max": 0.002,
        "rate_limit": 0.0,
        "channel_rate_limit": 0.0,
        "circuit_failures": 1000,
    }
    values.update(overrides)
    return EgressSettings(**values)


class Harness:
    def __init__(self, api: FakeApi, **overrides: Any) -> None:
        self.api = api
        self.publisher = InMemoryPublisher()
        self.stop = asyncio.Event()
        self.metrics = Metrics(CollectorRegistry())
        self.runner = CommandRunner(
            settings(**overrides),
            TOPICS,
            self.metrics,
            self.publisher,
            cast(SpotlerClient, api),
            self.stop,
            lambda state: None,
        )

    def results(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in self.publisher.records if r.topic == TOPICS.results]


def position(offset: int = 7, timestamp_ms: int | None = None) -> Position:
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    return Position(TOPICS.send_message, 0, offset, b"k", ts)


def command(command_id: str = "c1", kind: Any = "send-message") -> Command:
    body: dict[str, Any] = {"message": {"type": "text", "body": "hi"}}
    if kind == "update-conversation":
        body = {"status": "CLOSED"}
    return Command(command_id, kind, CHANNEL, CONTACT, body)


async def test_success_is_one_call_and_one_succeeded_result() -> None:
    """A 201 is one call with the command id as request id, and a succeeded result."""
    h = Harness(FakeApi({"id": "abc"}))
    assert await h.runner.run(position(), "send-message", None, command()) == "succeeded"
    assert h.api.calls == [("send", CHANNEL, CONTACT, command().body, "c1")]
    [result] = h.results()
    assert result["type"] == "im.eazy.command.succeeded"
    data = result["data"]
    assert (data["commandId"], data["attempts"], data["messageId"]) == ("c1", 1, "abc")
    assert (data["channelJid"], data["contactJid"]) == (CHANNEL, CONTACT)


@pytest.mark.parametrize(
    "error",
    [
        ApiError(503, 1003, "unavailable"),
        ApiError(500, None, "no code"),
        ApiError(502, 1012, "bad gateway"),
        ApiError(200, 1004, "internal"),
        ApiError(0, None, "reset", network=True),
        ApiError(429, 1003, "slow down", retry_after=0.01),
    ],
)
async def test_retriable_errors_are_retried_until_success(error: ApiError) -> None:
    """Network errors, 429, 5xx and codes 1003/1004/1012 are tried again."""
    h = Harness(FakeApi(error, error))
    assert await h.runner.run(position(), "send-message", None, command()) == "succeeded"
    assert len(h.api.calls) == 3
    assert h.results()[0]["data"]["attempts"] == 3


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, 1005), (403, 1002), (401, 1001), (404, 1009), (400, 1013), (400, 1015), (500, 1005)],
)
async def test_permanent_errors_fail_after_one_call(status: int, code: int) -> None:
    """The codes DESIGN.md says never to retry fail at once, with the platform's error."""
    h = Harness(FakeApi(ApiError(status, code, "no", trace_id="7e6459")))
    assert await h.runner.run(position(), "send-message", None, command()) == "failed"
    assert len(h.api.calls) == 1
    [result] = h.results()
    assert result["type"] == "im.eazy.command.failed"
    assert result["data"]["error"] == {
        "httpStatus": status,
        "code": code,
        "message": "no",
        "traceId": "7e6459",
    }
    assert result["data"]["attempts"] == 1


@pytest.mark.parametrize("max_attempts", [1, 2, 3])
async def test_attempts_are_bounded_by_max_attempts(max_attempts: int) -> None:
    """A platform that keeps failing is called exactly max_attempts times."""
    h = Harness(FakeApi(default=lambda: ApiError(503, 1003, "down")), max_attempts=max_attempts)
    assert await h.runner.run(position(), "send-message", None, command()) == "failed"
    assert len(h.api.calls) == max_attempts
    assert h.results()[0]["data"]["attempts"] == max_attempts


async def test_retry_deadline_stops_retrying() -> None:
    """A retry that would start past the retry deadline is not made (Retry-After, not jittered
    backoff, sets the wait, so the test is deterministic)."""
    h = Harness(FakeApi(ApiError(429, 1003, "slow", retry_after=5.0)), retry_deadline=0.1)
    assert await h.runner.run(position(), "send-message", None, command()) == "failed"
    assert len(h.api.calls) == 1


async def test_a_retry_after_beyond_the_deadline_is_not_shortened() -> None:
    """A 429's Retry-After is honoured as given (DESIGN.md, "Egress"): 5 s does not fit a 3 s
    retry deadline, so the command fails after one call instead of retrying after a shorter
    pause."""
    h = Harness(FakeApi(ApiError(429, 1003, "slow", retry_after=5.0)), retry_deadline=3.0)
    assert await h.runner.run(position(), "send-message", None, command()) == "failed"
    assert len(h.api.calls) == 1


async def test_retry_after_is_waited() -> None:
    """A 429's Retry-After is the pause before the next attempt."""
    h = Harness(FakeApi(ApiError(429, 1003, "slow", retry_after=0.2)))
    started = time.monotonic()
    await h.runner.run(position(), "send-message", None, command())
    assert time.monotonic() - started >= 0.2
    assert len(h.api.calls) == 2


async def test_update_conversation_calls_the_update_endpoint() -> None:
    """An update-conversation command is a PATCH of its changes."""
    h = Harness(FakeApi({"status": "CLOSED"}))
    cmd = command(kind="update-conversation")
    assert await h.runner.run(position(), "update-conversation", None, cmd) == "succeeded"
    assert h.api.calls == [("update", CHANNEL, CONTACT, {"status": "CLOSED"}, "c1")]
    data = h.results()[0]["data"]
    assert data["response"] == {"status": "CLOSED"}
    assert "messageId" not in data


async def test_a_repeat_of_a_completed_command_is_not_sent_again() -> None:
    """A command id completed before is not called again."""
    h = Harness(FakeApi())
    await h.runner.run(position(1), "send-message", None, command())
    assert await h.runner.run(position(2), "send-message", None, command()) == "duplicate"
    assert len(h.api.calls) == 1


async def test_expired_commands_fail_without_a_call() -> None:
    """A command older than max_age fails with reason expired and is never sent."""
    h = Harness(FakeApi(), max_age=60.0)
    old = int((time.time() - 120) * 1000)
    assert await h.runner.run(position(timestamp_ms=old), "send-message", None, command()) == (
        "expired"
    )
    assert h.api.calls == []
    [result] = h.results()
    assert (result["data"]["reason"], result["data"]["attempts"]) == ("expired", 0)
    young = int((time.time() - 30) * 1000)
    await h.runner.run(position(timestamp_ms=young), "send-message", None, command("c2"))
    assert len(h.api.calls) == 1


async def test_invalid_commands_are_dead_lettered_with_a_failed_result() -> None:
    """Invalid: the raw bytes to the dead-letter topic, and a failed result naming why."""
    h = Harness(FakeApi())
    raw = b'{"id": "bad-1", "message": 5}'
    outcome = await h.runner.run(position(), "send-message", raw, InvalidCommand("message: no"))
    assert outcome == "deadletter"
    assert h.api.calls == []
    [letter] = [r for r in h.publisher.records if r.topic == TOPICS.commands_deadletter]
    assert orjson.loads(letter.value)["data"]["body"] == raw.decode()
    [result] = h.results()
    assert result["type"] == "im.eazy.command.failed"
    assert (result["data"]["commandId"], result["data"]["reason"]) == (
        "bad-1",
        "invalid: message: no",
    )


async def test_results_are_published_through_kafka_failures() -> None:
    """A result Kafka refuses is published again until it is taken: never lost."""
    h = Harness(FakeApi())
    h.publisher.failures.extend([PublishError("down"), PublishError("down")])
    await h.runner.run(position(), "send-message", None, command())
    assert h.publisher.calls == 4  # two refusals, the send-log entry (docs/status.md), the result
    assert len(h.results()) == 1
    assert [r.topic for r in h.publisher.records] == [TOPICS.sent, TOPICS.results]


async def test_shutdown_during_backoff_aborts_the_command() -> None:
    """Stopping while a retry waits leaves the command unfinished (it is redelivered)."""
    h = Harness(
        FakeApi(default=lambda: ApiError(503, 1003, "down")), backoff_base=30.0, backoff_max=60.0
    )
    task = asyncio.create_task(h.runner.run(position(), "send-message", None, command()))
    await asyncio.wait_for(h.api.called.wait(), 5)
    h.stop.set()
    with pytest.raises(Aborted):
        await asyncio.wait_for(task, 5)
    assert h.results() == []
