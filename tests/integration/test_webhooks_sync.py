"""``bridge webhooks sync|list`` and ``bridge channels`` against the simulator process.

What a synced channel looks like comes from DESIGN.md ("bridge webhooks sync") and the
reference's "Webhooks" section: exactly one webhook at BRIDGE_PUBLIC_URL, every event,
``Authorization: Bearer <first token>``, others' webhooks untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tests.integration.lifecycle_env import (
    KEY_CHANNEL,
    NEW,
    OLD,
    PUBLIC,
    REFERENCE_EVENTS,
    A,
    B,
    C,
    add_hook,
    api,
    bridge,
    env,
    hooks,
    simulator,
)
from tests.integration.procs import Simulator, free_port


def synced(hook: dict[str, Any], token: str = NEW) -> bool:
    return (
        hook["url"] == PUBLIC
        and set(hook["events"]) == REFERENCE_EVENTS
        and hook["headers"] == {"Authorization": f"Bearer {token}"}
        and hook["enabled"] is True
    )


def no_token_in(out: str) -> None:
    for token in (NEW, OLD, "stale-token-0123456789", "crm-token-0123456789"):
        assert token not in out, f"a token was printed:\n{out}"


async def test_empty_platform_then_a_second_run_changes_nothing(procs) -> None:
    """Every channel of the key gets one webhook; the second run changes nothing and says so."""
    sim = await simulator(procs)
    code, out = await bridge("webhooks", "sync", env=env(sim))
    assert code == 0, out
    no_token_in(out)
    assert out.count("+ create") == 2, out
    first = {ch: await hooks(sim, ch) for ch in (A, B)}
    for channel, found in first.items():
        assert len(found) == 1, (channel, found)
        assert synced(found[0]), found
    assert await hooks(sim, C) == []  # the key cannot use C: not touched

    code, out = await bridge("webhooks", "sync", env=env(sim))
    assert code == 0, out
    assert "nothing to change" in out, out
    assert {ch: await hooks(sim, ch) for ch in (A, B)} == first

    code, out = await bridge("webhooks", "list", env=env(sim))
    assert code == 0, out
    assert out.count(f"bridge {first[A][0]['id']}") == 1, out
    assert "<token 1>" in out
    no_token_in(out)


async def test_drifted_platform_is_planned_then_repaired(procs) -> None:
    """Wrong URL, missing events, an old token: a dry run shows it all and changes nothing;
    sync repairs the same webhooks in place; a webhook for another URL is left alone."""
    sim = await simulator(procs)
    moved = await add_hook(
        sim, A, url="https://old.example.com/webhooks", events=["message"],
        headers={"Authorization": f"Bearer {OLD}"},
    )  # fmt: skip
    crm = await add_hook(
        sim, A, url="https://crm.example.com/hook", events=["message", "receipt"],
        headers={"Authorization": "Bearer crm-token-0123456789"},
    )  # fmt: skip
    stale = await add_hook(
        sim, B, url=PUBLIC, events=["message", "receipt"],
        headers={"Authorization": "Bearer stale-token-0123456789", "X-Team": "support"},
    )  # fmt: skip
    settings = env(sim, BRIDGE_WEBHOOK_TOKENS=f"{NEW},{OLD}")

    code, out = await bridge("webhooks", "sync", "--dry-run", env=settings)
    assert code == 0, out
    no_token_in(out)
    assert "url https://old.example.com/webhooks → " + PUBLIC in out, out
    assert "Bearer <token 2>} → {Authorization: Bearer <token 1>}" in out, out
    assert "Bearer <other token>" in out, out
    assert "+echo" in out, out
    assert "dry run: nothing was changed" in out
    assert await hooks(sim, A) == [moved, crm]
    assert await hooks(sim, B) == [stale]

    code, out = await bridge("webhooks", "sync", env=settings)
    assert code == 0, out
    on_a = {h["id"]: h for h in await hooks(sim, A)}
    assert set(on_a) == {moved["id"], crm["id"]}
    assert synced(on_a[moved["id"]])
    assert on_a[crm["id"]] == crm
    (on_b,) = await hooks(sim, B)
    assert on_b["id"] == stale["id"]
    assert on_b["headers"] == {"X-Team": "support", "Authorization": f"Bearer {NEW}"}
    assert set(on_b["events"]) == REFERENCE_EVENTS


async def test_extra_webhooks_at_the_same_url_need_prune(procs) -> None:
    """Two webhooks of the bridge on one channel: sync names the channel and fails (the platform
    refuses a second webhook for the same URL and events); --prune leaves exactly one."""
    sim = await simulator(procs)
    auth = {"Authorization": f"Bearer {NEW}"}
    first = await add_hook(sim, A, url=PUBLIC, events=["message"], headers=auth)
    await add_hook(sim, A, url=PUBLIC, events=["receipt"], headers=auth)
    settings = env(sim, BRIDGE_CHANNELS=A)

    code, out = await bridge("webhooks", "sync", env=settings)
    assert code == 1, out
    assert "! extra" in out
    assert f"failed for 1 channel(s): {A}" in out, out

    code, out = await bridge("webhooks", "sync", "--prune", env=settings)
    assert code == 0, out
    assert "- delete" in out
    (kept,) = await hooks(sim, A)
    assert kept["id"] == first["id"]
    assert synced(kept)
    code, out = await bridge("webhooks", "sync", "--prune", env=settings)
    assert code == 0, out
    assert "nothing to change" in out


async def test_one_channel_failing_names_it_and_the_others_are_synced(procs) -> None:
    """A channel the key may not use fails (1002) and is named; the others are synced, and
    the next run without it succeeds."""
    sim = await simulator(procs)
    code, out = await bridge("webhooks", "sync", env=env(sim, BRIDGE_CHANNELS=f"{C},{A}"))
    assert code == 1, out
    assert f"failed for 1 channel(s): {C}" in out, out
    assert "code 1002" in out, out
    (hook,) = await hooks(sim, A)
    assert synced(hook)
    code, out = await bridge("webhooks", "sync", env=env(sim, BRIDGE_CHANNELS=f"{A},{B}"))
    assert code == 0, out


async def test_missing_settings_exit_2_naming_them(procs) -> None:
    sim = await simulator(procs)
    code, out = await bridge("webhooks", "sync", env=env(sim, BRIDGE_PUBLIC_URL=""))
    assert code == 2
    assert "BRIDGE_PUBLIC_URL" in out
    code, out = await bridge("webhooks", "sync", env=env(sim, BRIDGE_WEBHOOK_TOKENS=""))
    assert code == 2
    assert "BRIDGE_WEBHOOK_TOKENS" in out


async def test_channels_table_and_json(procs) -> None:
    """``bridge channels`` shows the key's scope and objects and the channels it can use."""
    sim = await simulator(procs)
    code, out = await bridge("channels", "--json", env=env(sim))
    assert code == 0, out
    doc = orjson.loads(out)
    assert doc["key"]["scope"] == "ASSISTANT"
    assert doc["key"]["objects"] == [A, B]
    assert [c["jid"] for c in doc["channels"]] == [A, B]
    code, out = await bridge("channels", env=env(sim, BRIDGE_SPOTLER_API_KEY=KEY_CHANNEL))
    assert code == 0, out
    assert "scope CHANNEL" in out
    assert A in out
    assert B not in out
    code, out = await bridge("channels", env=env(sim, BRIDGE_SPOTLER_API_KEY="wrong-key-000"))
    assert code == 1
    assert "1001" in out


@contextlib.asynccontextmanager
async def failing_updates(sim: Simulator) -> AsyncIterator[str]:
    """A real HTTP server in front of the simulator's API that answers every webhook update
    (PATCH) with 503 in the reference's error format and passes everything else through; the
    API URL to give the bridge. (The simulator's own faults apply to message and conversation
    calls only.)"""

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method == "PATCH" and "/webhooks/" in request.path:
            body = {"error": {"code": 1012, "message": "Service unavailable"}, "traceId": "0"}
            return web.json_response(body, status=503)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                request.method,
                sim.url + request.path_qs,
                data=await request.read(),
                headers=headers,
            ) as resp,
        ):
            return web.Response(
                status=resp.status, body=await resp.read(), content_type=resp.content_type
            )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield sim.api_url.replace(sim.url, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


async def test_prune_keeps_the_working_webhook_when_the_update_fails(procs) -> None:
    """Issue 26, item 10: the webhook sync keeps (ours, with the first token) is disabled; the
    only working one is an extra (enabled, the second token, the other events). --prune must
    update the kept one first and delete after: when the update fails, the working webhook is
    still there, and the run says what it did not do and exits 1. Without the fault, the same
    run leaves exactly one synced webhook."""
    sim = await simulator(procs)
    keeper = await add_hook(
        sim, A, url=PUBLIC, events=["message"], headers={"Authorization": f"Bearer {NEW}"}
    )
    await api(sim, "PATCH", f"/channels/{A}/webhooks/{keeper['id']}", {"enabled": False})
    working = await add_hook(
        sim, A, url=PUBLIC, events=sorted(REFERENCE_EVENTS - {"message"}),
        headers={"Authorization": f"Bearer {OLD}"},
    )  # fmt: skip
    settings = env(sim, BRIDGE_CHANNELS=A, BRIDGE_WEBHOOK_TOKENS=f"{NEW},{OLD}")
    before = await hooks(sim, A)

    async with failing_updates(sim) as api_url:
        faulty = {**settings, "BRIDGE_SPOTLER_API_URL": api_url}
        code, out = await bridge("webhooks", "sync", "--prune", env=faulty)
    assert code == 1, out
    assert f"failed for 1 channel(s): {A}" in out, out
    assert "not done" in out, out
    no_token_in(out)
    assert await hooks(sim, A) == before  # the working webhook is still there, unchanged

    code, out = await bridge("webhooks", "sync", "--prune", env=settings)
    assert code == 0, out
    (kept,) = await hooks(sim, A)
    assert kept["id"] == keeper["id"]
    assert synced(kept)
    assert f"- delete  {working['id']}" in out, out
