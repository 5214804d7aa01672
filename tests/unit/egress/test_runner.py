"""The egress runner against a real local HTTP server (no broker): faults issues 9 and 15 named."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from bridge.core.errors import ApiError, PublishError
from bridge.egress.policy import CircuitState
from tests.unit.egress.harness import CHANNEL, CONTACT, Egress, FakePlatform, send


@pytest.fixture
async def platform() -> AsyncIterator[FakePlatform]:
    server = FakePlatform()
    await server.start()
    yield server
    await server.close()


async def until(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polls a plain attribute under a deadline
            await asyncio.sleep(0.02)


async def test_a_crashing_probe_releases_the_breaker(platform: FakePlatform) -> None:
    """Issue 15 item 2: an exception in the half-open probe fails that command only; the next
    command probes again and closes the breaker."""
    egress = Egress(platform, circuit_failures=1, circuit_open_seconds=0.1, max_attempts=1)
    answers = iter(
        [
            lambda r: web.json_response({"error": {"code": 1003}}, status=503),
            lambda r: (_ for _ in ()).throw(RuntimeError("boom")),  # never reached
        ]
    )
    platform.answer = lambda r: next(answers)(r)
    assert await egress.run(send("first")) == "failed"
    assert egress.runner.breaker.state is CircuitState.OPEN

    real_call = egress.api.send_message

    async def crash(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("a bug in the probe")

    egress.api.send_message = crash  # type: ignore[method-assign]  # a bug cannot be made real
    assert await egress.run(send("probe")) == "failed"
    egress.api.send_message = real_call  # type: ignore[method-assign]
    platform.answer = lambda r: web.json_response({"id": "m-2"}, status=201)
    async with asyncio.timeout(5):
        assert await egress.run(send("after")) == "succeeded"
    assert int(egress.runner.breaker.state) == CircuitState.CLOSED
    by_id = {r["data"]["commandId"]: r for r in egress.results()}
    assert by_id["probe"]["data"]["reason"] == "internal error: RuntimeError"
    assert by_id["probe"]["data"]["channelJid"] == CHANNEL
    await egress.close()


async def test_a_breaker_stuck_open_turns_readiness_off(platform: FakePlatform) -> None:
    """Issue 15 item 2: open past BRIDGE_CIRCUIT_STUCK_SECONDS: not healthy, gauge shows it;
    healthy again once it closes."""
    egress = Egress(
        platform, circuit_failures=1, circuit_open_seconds=1.5, max_attempts=1,
        circuit_stuck_seconds=1.0,
    )  # fmt: skip
    platform.answer = lambda r: web.json_response({"error": {"code": 1004}}, status=500)
    await egress.run(send("a"))
    assert egress.runner.healthy
    await until(lambda: not egress.runner.healthy)
    egress.runner.observe()
    assert egress.metrics.circuit_not_closed._value.get() > 1.0
    platform.answer = lambda r: web.json_response({"id": "m"}, status=201)
    assert await egress.run(send("b")) == "succeeded"
    egress.runner.observe()
    assert egress.runner.healthy
    assert egress.metrics.circuit_not_closed._value.get() == 0
    await egress.close()


async def test_results_that_cannot_be_published_turn_readiness_off(platform: FakePlatform) -> None:
    """Issue 16: a result failing to reach Kafka past the bound: not healthy, on a gauge;
    back when Kafka takes it, and the command still ends in one result."""
    egress = Egress(platform, results_stall_seconds=1.0)
    egress.publisher.fail_with = PublishError("no leader")
    task = asyncio.create_task(egress.run(send("stalled")))
    await until(lambda: not egress.runner.healthy)
    egress.runner.observe()
    assert egress.metrics.results_unpublished._value.get() > 1.0
    egress.publisher.fail_with = None
    assert await asyncio.wait_for(task, 10) == "succeeded"
    egress.runner.observe()
    assert egress.runner.healthy
    assert egress.metrics.results_unpublished._value.get() == 0
    assert [r["data"]["commandId"] for r in egress.results()] == ["stalled"]
    await egress.close()


async def test_same_id_different_kind_is_not_a_repeat(platform: FakePlatform) -> None:
    """Issue 9 item 5: send-message 42 and update-conversation 42 are two commands: two calls,
    two results; a real repeat is not sent but its result is published again, byte for byte."""
    platform.answer = lambda r: web.json_response({"id": "m-42", "status": "OPEN"}, status=201)
    egress = Egress(platform)
    assert await egress.run(send("42")) == "succeeded"
    update = orjson.dumps(
        {"id": "42", "channelJid": CHANNEL, "contactJid": "31622222222@whatsapp.eazy.im",
         "changes": {"status": "CLOSED"}}
    )  # fmt: skip
    assert await egress.run(update, "update-conversation") == "succeeded"
    assert len(platform.calls) == 2
    assert await egress.run(send("42")) == "duplicate"
    assert len(platform.calls) == 2  # not sent again
    results = [r for r in egress.publisher.records if r.topic.endswith("results")]
    assert len(results) == 3
    assert results[0].event_id != results[1].event_id
    assert results[2].value == results[0].value  # the same result again, same id
    assert egress.metrics.commands is not None
    await egress.close()


@pytest.mark.parametrize(
    ("status", "code", "retriable"),
    [
        (500, 1005, False),  # the platform code decides first
        (503, 1009, False),
        (408, None, True),
        (500, None, True),
        (503, None, True),
        (502, 1012, True),
        (400, 1003, True),
        (429, None, True),
        (400, None, False),
        (301, None, False),
        (503, 4242, True),  # an undocumented code: the status decides
    ],
)
def test_classification_code_first_then_status(
    status: int, code: int | None, retriable: bool
) -> None:
    """Issue 9 item 8 (DESIGN, "Egress"): code first, then status; 408 and 5xx retry."""
    assert ApiError(status, code, "x").retriable is retriable


async def test_a_500_carrying_1005_is_not_retried(platform: FakePlatform) -> None:
    """Issue 9 item 8 end to end through the client: one call, failed with 1005."""
    platform.answer = lambda r: web.json_response(
        {"error": {"code": 1005, "message": "bad"}}, status=500
    )
    egress = Egress(platform, max_attempts=5)
    assert await egress.run(send("v")) == "failed"
    assert len(platform.calls) == 1
    await egress.close()


async def test_redirects_are_not_followed(platform: FakePlatform) -> None:
    """Issue 9 item 6: a 301 is a permanent failure naming Location; no GET follows."""

    def answer(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            raise web.HTTPMovedPermanently(location="/v3/elsewhere")
        return web.json_response({"id": "ghost"})

    platform.answer = answer
    egress = Egress(platform, max_attempts=5)
    assert await egress.run(send("moved")) == "failed"
    assert [c["method"] for c in platform.calls] == ["POST"]
    (result,) = egress.results()
    assert result["type"] == "im.eazy.command.failed"
    assert result["data"]["error"]["httpStatus"] == 301
    assert "/v3/elsewhere" in result["data"]["error"]["message"]
    await egress.close()


async def test_percent_encoded_path_characters_stay_encoded(platform: FakePlatform) -> None:
    """Issue 9 item 10: ``; = , :`` in a JID go out percent-encoded, not re-decoded."""
    channel, contact = "chan@webchat.eazy.im", "a;b=c,d:e@webchat.eazy.im"
    egress = Egress(platform)
    raw = send("enc", channelJid=channel, contactJid=contact)
    assert await egress.run(raw) == "succeeded"
    (call,) = platform.calls
    expected = "/v3/channels/chan@webchat.eazy.im/messages/a%3Bb%3Dc%2Cd%3Ae@webchat.eazy.im"
    assert call["raw_path"] == expected
    await egress.close()


async def test_request_id_with_control_characters_is_dead_lettered(
    platform: FakePlatform,
) -> None:
    """Issue 9 item 7: an id with a control character is invalid input: a dead letter and a
    failed result with a readable reason, never an internal error or an API call."""
    egress = Egress(platform)
    assert await egress.run(send("bad\nid")) == "deadletter"
    assert await egress.run(send("bell\x07")) == "deadletter"
    assert platform.calls == []
    reasons = [r["data"]["reason"] for r in egress.results()]
    assert all("control characters" in r for r in reasons), reasons
    assert len(egress.deadletters()) == 2
    await egress.close()


async def test_cloudevent_wrapped_invalid_command_keeps_data_id(platform: FakePlatform) -> None:
    """Issue 9 item 7: the result of an invalid CloudEvent-wrapped command names data.id."""
    egress = Egress(platform)
    wrapped = {
        "specversion": "1.0", "id": "envelope-1", "source": "/x", "type": "t",
        "data": {"id": "data-1", "channelJid": CHANNEL, "contactJid": CONTACT,
                 "message": {"type": "text"}},
    }  # fmt: skip
    assert await egress.run(orjson.dumps(wrapped)) == "deadletter"
    (result,) = egress.results()
    assert result["data"]["commandId"] == "data-1"
    assert "message.body: required" in result["data"]["reason"]
    await egress.close()
