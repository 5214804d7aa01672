"""The simulator's /_sim admin endpoints, faults, settings and serving loop."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge.simulator import SimulatorSettings, run_simulator
from bridge.simulator.keys import ApiKey, Secret
from bridge.simulator.settings import SimulatorConfigError

SimClient = TestClient[web.Request, web.Application]

AUTH = {"Authorization": "Bearer sim-key"}
CHANNEL = "31612345678@whatsapp.eazy.im"
CONTACT = "31611111111@whatsapp.eazy.im"
SEND = f"/v3/channels/{CHANNEL}/messages/{CONTACT}"
CONVERSATION = f"/v3/channels/{CHANNEL}/conversations/{CONTACT}"
TEXT = {"message": {"body": "Have a nice day!", "type": "text"}}


async def set_faults(sim: SimClient, **faults: Any) -> dict[str, Any]:
    resp = await sim.post("/_sim/faults", json=faults)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_fail_next(sim: SimClient) -> None:
    """failNext fails exactly the next N calls with the configured status and code."""
    await set_faults(sim, failNext=2, errorStatus=500, errorCode=1004)
    statuses = [(await sim.post(SEND, json=TEXT, headers=AUTH)).status for _ in range(3)]
    assert statuses == [500, 500, 201]
    faults = await (await sim.get("/_sim/faults")).json()
    assert faults["failNextRemaining"] == 0


async def test_error_rate_one_fails_every_call_in_the_error_format(sim: SimClient) -> None:
    """errorRate 1.0 fails every send and conversation call, with a traceId; admin is untouched."""
    await set_faults(sim, errorRate=1.0, errorStatus=502)
    for method, path in (("POST", SEND), ("GET", CONVERSATION), ("PATCH", CONVERSATION)):
        resp = await sim.request(method, path, json=TEXT, headers=AUTH)
        assert resp.status == 502
        body = await resp.json()
        assert body["error"] == {"code": 1012, "message": "Bad gateway"}
        assert len(body["traceId"]) == 6
    assert (await sim.get(f"/v3/channels/{CHANNEL}/webhooks", headers=AUTH)).status == 200
    assert (await sim.delete("/_sim/faults")).status == 204
    assert (await sim.post(SEND, json=TEXT, headers=AUTH)).status == 201


async def test_faults_come_after_authentication(sim: SimClient) -> None:
    """An unauthenticated call is 401 even while every call is set to fail."""
    await set_faults(sim, errorRate=1.0)
    assert (await sim.post(SEND, json=TEXT)).status == 401


async def test_rate_429_with_retry_after(sim: SimClient) -> None:
    """rate429 answers 429, code 1003, with a Retry-After header in seconds."""
    await set_faults(sim, rate429=1.0, retryAfter=2)
    resp = await sim.post(SEND, json=TEXT, headers=AUTH)
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "2"
    assert (await resp.json())["error"]["code"] == 1003
    await set_faults(sim, rate429=1.0, retryAfter=0.5)
    resp = await sim.post(SEND, json=TEXT, headers=AUTH)
    assert resp.headers["Retry-After"] == "0.5"


async def test_latency(sim: SimClient) -> None:
    """latencyMs delays each faulted endpoint call by at least that long."""
    await set_faults(sim, latencyMs=100, latencyJitterMs=20)
    started = time.monotonic()
    assert (await sim.post(SEND, json=TEXT, headers=AUTH)).status == 201
    assert time.monotonic() - started >= 0.095


async def test_seeded_error_rate_is_repeatable(sim: SimClient) -> None:
    """The same seed gives the same sequence of failures."""

    async def run() -> list[int]:
        await set_faults(sim, errorRate=0.5, seed=7)
        return [(await sim.post(SEND, json=TEXT, headers=AUTH)).status for _ in range(20)]

    first = await run()
    assert set(first) == {201, 503}
    assert await run() == first


@pytest.mark.parametrize(
    "body",
    [{"errorRate": 2}, {"errorRate": "x"}, {"failNext": 1.5}, {"bogus": 1}, [1], {"latencyMs": -1}],
)
async def test_invalid_faults_are_rejected(sim: SimClient, body: Any) -> None:
    """Fault settings are validated: 400/1005 naming the field."""
    resp = await sim.post("/_sim/faults", json=body)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == 1005


async def test_requests_are_recorded_without_the_key(sim: SimClient) -> None:
    """Every API call is recorded with its answer; the Authorization value never is."""
    await sim.post(SEND, json=TEXT, headers=AUTH)
    await sim.post(SEND, json=TEXT, headers={"Authorization": "Bearer wrong", "X-Trace": "t1"})
    await sim.post(SEND, data=b"{oops", headers=AUTH)
    records = await (await sim.get("/_sim/requests")).json()
    assert [(r["method"], r["path"], r["status"]) for r in records] == [
        ("POST", SEND, 201),
        ("POST", SEND, 401),
        ("POST", SEND, 400),
    ]
    ok, unauthorized, bad = records
    assert ok["authorized"] is True
    assert ok["body"] == TEXT
    assert ok["code"] is None
    assert unauthorized["authorized"] is False
    assert unauthorized["code"] == 1001
    assert unauthorized["headers"]["X-Trace"] == "t1"
    assert len(unauthorized["traceId"]) == 6
    assert bad["rawBody"] == "{oops"
    assert all("authorization" not in {k.lower() for k in r["headers"]} for r in records)
    assert "sim-key" not in str(records)
    assert "wrong" not in str(records)
    assert (await sim.delete("/_sim/requests")).status == 204
    assert await (await sim.get("/_sim/requests")).json() == []


async def test_messages_per_conversation_in_order(sim: SimClient) -> None:
    """/_sim/messages lists each conversation's sent messages in order, filterable."""
    other = "31622222222@whatsapp.eazy.im"
    ids = []
    for i in range(3):
        message = {"message": {"body": f"#{i}", "type": "text"}}
        ids.append((await (await sim.post(SEND, json=message, headers=AUTH)).json())["id"])
    other_path = f"/v3/channels/{CHANNEL}/messages/{other}"
    assert (await sim.post(other_path, json=TEXT, headers=AUTH)).status == 201
    result = await (await sim.get("/_sim/messages", params={"contactJid": CONTACT})).json()
    (conversation,) = result
    assert [m["id"] for m in conversation["messages"]] == ids
    assert [m["message"]["body"] for m in conversation["messages"]] == ["#0", "#1", "#2"]
    assert len(await (await sim.get("/_sim/messages")).json()) == 2


async def test_reset_forgets_everything(sim: SimClient) -> None:
    """POST /_sim/reset clears conversations, webhooks, records and faults."""
    await sim.post(
        f"/v3/channels/{CHANNEL}/webhooks",
        json={"events": ["message"], "url": "http://127.0.0.1:9/h"},
        headers=AUTH,
    )
    await sim.post(SEND, json=TEXT, headers=AUTH)
    await set_faults(sim, failNext=5)
    assert (await sim.post("/_sim/reset")).status == 204
    assert await (await sim.get("/_sim/messages")).json() == []
    assert await (await sim.get("/_sim/requests")).json() == []
    assert await (await sim.get("/_sim/deliveries")).json() == []
    assert (await sim.get(CONVERSATION, headers=AUTH)).status == 404
    assert await (await sim.get(f"/v3/channels/{CHANNEL}/webhooks", headers=AUTH)).json() == []
    assert (await (await sim.get("/_sim/faults")).json())["failNext"] == 0


def test_settings_from_env() -> None:
    """SIMULATOR_* variables are read with their defaults; bad values are all named."""
    default = SimulatorSettings.from_env({})
    assert (default.host, default.port) == ("127.0.0.1", 8800)
    assert default.api_keys == (ApiKey(Secret("sim-key"), "owner"),)
    assert default.webhook_url is None
    assert (default.receipt_delay, default.retry_base, default.retry_max) == (0.2, 0.5, 30.0)
    assert default.max_attempts == 0
    settings = SimulatorSettings.from_env(
        {
            "SIMULATOR_PORT": "9000",
            "SIMULATOR_API_KEYS": "a, b",
            "SIMULATOR_WEBHOOK_URL": "http://127.0.0.1:8080/webhooks",
            "SIMULATOR_WEBHOOK_HEADERS": '{"Authorization": "Bearer t"}',
            "SIMULATOR_RECEIPT_DELAY": "0",
            "SIMULATOR_MAX_ATTEMPTS": "5",
        }
    )
    assert settings.port == 9000
    assert settings.api_keys == (ApiKey(Secret("a")), ApiKey(Secret("b")))
    assert {key.scope for key in settings.api_keys} == {"owner"}
    assert settings.webhook_headers == {"Authorization": "Bearer t"}
    assert "Bearer t" not in repr(settings)
    assert (settings.receipt_delay, settings.max_attempts) == (0.0, 5)
    with pytest.raises(SimulatorConfigError) as excinfo:
        SimulatorSettings.from_env(
            {
                "SIMULATOR_PORT": "x",
                "SIMULATOR_WEBHOOK_URL": "ftp://h",
                "SIMULATOR_WEBHOOK_HEADERS": "[1]",
                "SIMULATOR_RETRY_BASE": "-1",
                "SIMULATOR_API_KEYS": "a,,b",
            }
        )
    names = [p.split(":")[0] for p in excinfo.value.problems]
    assert names == [
        "SIMULATOR_PORT",
        "SIMULATOR_API_KEYS",
        "SIMULATOR_WEBHOOK_URL",
        "SIMULATOR_WEBHOOK_HEADERS",
        "SIMULATOR_RETRY_BASE",
    ]


async def test_run_simulator_serves_until_cancelled() -> None:
    """run_simulator listens on the configured port and stops cleanly when cancelled."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    task = asyncio.create_task(run_simulator(SimulatorSettings(port=port)))
    url = f"http://127.0.0.1:{port}{SEND}"
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.post(url, json=TEXT, headers=AUTH) as resp:
                    assert resp.status == 201
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.02)
        else:
            pytest.fail("the simulator did not start")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_faults_can_target_one_conversation(sim: SimClient) -> None:
    """With ``contacts`` set, only that conversation fails; the others are served normally."""
    other = "31622222222@whatsapp.eazy.im"
    faults = await set_faults(sim, errorRate=1.0, errorStatus=503, contacts=[CONTACT])
    assert faults["contacts"] == [CONTACT]
    assert (await sim.post(SEND, json=TEXT, headers=AUTH)).status == 503
    other_send = f"/v3/channels/{CHANNEL}/messages/{other}"
    assert (await sim.post(other_send, json=TEXT, headers=AUTH)).status == 201
