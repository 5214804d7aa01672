"""The simulator's hooks for egress tests (a one-shot 429 with ``Retry-After``, the raw request
path, arrival times, body digests) and the protection of its ``/_sim`` admin endpoints."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from typing import Any

import aiohttp
import orjson
import pytest
import yarl
from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge.simulator import SimulatorSettings
from bridge.simulator.keys import Secret
from bridge.simulator.settings import SimulatorConfigError
from tests.simulator.conftest import MakeSim

SimClient = TestClient[web.Request, web.Application]

AUTH = {"Authorization": "Bearer sim-key"}
CHANNEL = "31612345678@whatsapp.eazy.im"
CONTACT = "31611111111@whatsapp.eazy.im"
SEND = f"/v3/channels/{CHANNEL}/messages/{CONTACT}"
TEXT = {"message": {"body": "Have a nice day!", "type": "text"}}
ADMIN_TOKEN = "admin-0123456789abcdef"


async def set_faults(sim: SimClient, headers: dict[str, str] | None = None, **faults: Any) -> None:
    resp = await sim.post("/_sim/faults", json=faults, headers=headers)
    assert resp.status == 200, await resp.text()


async def test_a_one_shot_429_carries_retry_after(sim: SimClient) -> None:
    """failNext with errorStatus 429 answers one 429 (code 1003, "Too many requests" is the
    platform's 1003 here) with the configured Retry-After; the next call succeeds."""
    await set_faults(sim, failNext=1, errorStatus=429, retryAfter=2)
    first = await sim.post(SEND, json=TEXT, headers=AUTH)
    assert first.status == 429
    assert first.headers["Retry-After"] == "2"
    assert (await first.json())["error"]["code"] == 1003
    second = await sim.post(SEND, json=TEXT, headers=AUTH)
    assert second.status == 201
    assert "Retry-After" not in second.headers


async def test_an_error_rate_of_429s_carries_retry_after(sim: SimClient) -> None:
    """errorRate with errorStatus 429 carries Retry-After too (a fraction as a decimal); other
    statuses do not."""
    await set_faults(sim, errorRate=1.0, errorStatus=429, retryAfter=0.5)
    resp = await sim.post(SEND, json=TEXT, headers=AUTH)
    assert (resp.status, resp.headers["Retry-After"]) == (429, "0.5")
    await set_faults(sim, errorRate=1.0, errorStatus=503, retryAfter=3)
    resp = await sim.post(SEND, json=TEXT, headers=AUTH)
    assert resp.status == 503
    assert "Retry-After" not in resp.headers


async def test_a_429_can_carry_any_retry_after_text(sim: SimClient) -> None:
    """retryAfterHeader is sent verbatim instead of retryAfter (issue 25 item 2: a day, an HTTP
    date a year ahead, a malformed value); it must be sendable as a header."""
    for text in ("86400", "Sat, 04 Dec 2027 15:00:00 GMT", "1e9"):
        await set_faults(sim, failNext=1, errorStatus=429, retryAfterHeader=text)
        resp = await sim.post(SEND, json=TEXT, headers=AUTH)
        assert (resp.status, resp.headers["Retry-After"]) == (429, text)
    for bad in ("line\nbreak", "x" * 201, 5):
        resp = await sim.post("/_sim/faults", json={"retryAfterHeader": bad})
        assert resp.status == 400, bad


async def test_faults_can_target_the_channel_list_alone(sim: SimClient) -> None:
    """``endpoints`` names the routes a fault applies to (issue 25 item 3: GET /channels failing
    while messages still go through); without it, only the message and conversation routes."""
    await set_faults(sim, errorRate=1.0, errorStatus=503, endpoints=["read_channels"])
    assert (await sim.get("/v3/channels", headers=AUTH)).status == 503
    assert (await sim.post(SEND, json=TEXT, headers=AUTH)).status == 201
    await set_faults(sim, failNext=1, errorStatus=401, endpoints=["read_channels"])
    resp = await sim.get("/v3/channels", headers=AUTH)
    assert (resp.status, (await resp.json())["error"]["code"]) == (401, 1001)
    assert (await sim.get("/v3/channels", headers=AUTH)).status == 200
    await set_faults(sim, errorRate=1.0, errorStatus=503)
    assert (await sim.get("/v3/channels", headers=AUTH)).status == 200
    for bad in (["no_such_endpoint"], "read_channels", [1]):
        resp = await sim.post("/_sim/faults", json={"endpoints": bad})
        assert resp.status == 400, bad


async def test_the_raw_path_arrival_time_and_body_digest_are_recorded(sim: SimClient) -> None:
    """A percent-encoded JID is recorded both decoded (path) and as sent (rawPath); received
    comes before time; bodySha256 is the digest of the exact bytes."""
    contact = "a%3Bb%3Dc%2Cd%3Ae@whatsapp.eazy.im"
    raw = b'{"message": {"type": "text",   "body": "caf\\u00e9"}}'
    base = str(sim.make_url("/")).rstrip("/")
    url = yarl.URL(f"{base}/v3/channels/{CHANNEL}/messages/{contact}", encoded=True)
    async with aiohttp.ClientSession() as http, http.post(url, data=raw, headers=AUTH) as resp:
        assert resp.status == 201
    [record] = await (await sim.get("/_sim/requests")).json()
    assert record["rawPath"] == f"/v3/channels/{CHANNEL}/messages/{contact}"
    assert record["path"] == f"/v3/channels/{CHANNEL}/messages/a;b=c,d:e@whatsapp.eazy.im"
    assert record["received"] <= record["time"]
    assert record["bodySha256"] == hashlib.sha256(raw).hexdigest()
    assert record["body"] == orjson.loads(raw)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_a_loopback_bind_needs_no_admin_token(host: str) -> None:
    """Bound to loopback the simulator starts as before, /_sim open (local use)."""
    settings = SimulatorSettings.from_env({"SIMULATOR_HOST": host})
    assert settings.admin_token is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "sim.example.com"])
def test_a_non_loopback_bind_without_admin_token_is_refused(host: str) -> None:
    """Any other bind address without SIMULATOR_ADMIN_TOKEN is refused, naming both."""
    with pytest.raises(SimulatorConfigError) as excinfo:
        SimulatorSettings.from_env({"SIMULATOR_HOST": host})
    [problem] = excinfo.value.problems
    assert problem.startswith("SIMULATOR_HOST:")
    assert "SIMULATOR_ADMIN_TOKEN" in problem
    settings = SimulatorSettings.from_env(
        {"SIMULATOR_HOST": host, "SIMULATOR_ADMIN_TOKEN": ADMIN_TOKEN}
    )
    assert settings.admin_token == Secret(ADMIN_TOKEN)
    assert ADMIN_TOKEN not in repr(settings)


def test_a_short_admin_token_is_refused() -> None:
    """An admin token has at least 16 characters, like the bridge's webhook tokens."""
    with pytest.raises(SimulatorConfigError) as excinfo:
        SimulatorSettings.from_env({"SIMULATOR_HOST": "0.0.0.0", "SIMULATOR_ADMIN_TOKEN": "short"})
    assert [p.split(":")[0] for p in excinfo.value.problems] == ["SIMULATOR_ADMIN_TOKEN"]


async def test_bridge_simulator_refuses_a_public_bind_without_admin_token() -> None:
    """`bridge simulator` with SIMULATOR_HOST=0.0.0.0 and no admin token exits 2 before
    listening, naming SIMULATOR_ADMIN_TOKEN."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMULATOR_")}
    env.update(SIMULATOR_HOST="0.0.0.0", SIMULATOR_PORT="0")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "simulator",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 2
    assert b"SIMULATOR_HOST" in err
    assert b"SIMULATOR_ADMIN_TOKEN" in err


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token-0123456789", f"Basic {ADMIN_TOKEN}", "Bearer sim-key", "Bearer "],
)
async def test_with_an_admin_token_sim_requests_need_it(
    make_sim: MakeSim, header: str | None
) -> None:
    """With an admin token set, every /_sim endpoint answers 401/1001 without it (the API key
    is not the admin token), and does nothing: no fault set, no webhook sent, nothing shown."""
    sim = await make_sim(admin_token=Secret(ADMIN_TOKEN))
    headers = {"Authorization": header} if header is not None else {}
    for method, path, body in [
        ("GET", "/_sim/requests", None),
        ("POST", "/_sim/faults", {"errorRate": 1.0}),
        ("POST", "/_sim/events", {"channelJid": CHANNEL, "body": {"type": "custom"}}),
        ("POST", "/_sim/reset", None),
    ]:
        resp = await sim.request(method, path, json=body, headers=headers)
        assert resp.status == 401, (method, path)
        assert (await resp.json())["error"]["code"] == 1001
    # nothing was changed: the API still answers normally
    assert (await sim.post(SEND, json=TEXT, headers=AUTH)).status == 201


async def test_with_an_admin_token_sim_requests_carrying_it_work(make_sim: MakeSim) -> None:
    """The right bearer token opens /_sim; the platform API still takes only its API keys."""
    sim = await make_sim(admin_token=Secret(ADMIN_TOKEN))
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    await set_faults(sim, admin, failNext=1, errorStatus=503)
    assert (await sim.post(SEND, json=TEXT, headers=AUTH)).status == 503
    unauthorized = await sim.post(SEND, json=TEXT, headers=admin)
    assert unauthorized.status == 401  # the admin token is no API key
    records = await (await sim.get("/_sim/requests", headers=admin)).json()
    assert [r["status"] for r in records] == [503, 401]
    assert ADMIN_TOKEN not in str(records)
