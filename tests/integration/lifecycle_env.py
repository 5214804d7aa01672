"""Shared set-up for the lifecycle commands' tests: a simulator with scoped keys, and helpers
that run ``bridge <command>`` as a process and read a channel's webhooks over the real API."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import aiohttp
import orjson

from tests.integration.procs import ProcessFactory, Simulator, start_simulator

A = "31612345678@whatsapp.eazy.im"
B = "31687654321@whatsapp.eazy.im"
C = "31600000000@whatsapp.eazy.im"
#: A key for A and B only (scope assistant), and an owner key for every channel.
KEY_AB = "key-ab-0123456789"
KEY_OWNER = "key-owner-0123456789"
KEY_CHANNEL = "key-channel-0123456789"
KEYS = [
    {"key": KEY_AB, "scope": "assistant", "channels": [A, B]},
    {"key": KEY_OWNER, "scope": "owner"},
    {"key": KEY_CHANNEL, "scope": "channel", "channels": [A]},
]
NEW = "new-token-0123456789"
OLD = "old-token-0123456789"
PUBLIC = "https://bridge.example.com/webhooks"
#: spotler/api-v3-reference.txt, "Webhooks" -> "Events": every event the platform defines.
REFERENCE_EVENTS = {
    "custom", "echo", "handover", "label", "message",
    "note", "postback", "receipt", "template_pack", "typing",
}  # fmt: skip


async def simulator(procs: ProcessFactory) -> Simulator:
    return await start_simulator(
        procs,
        SIMULATOR_API_KEYS=orjson.dumps(KEYS).decode(),
        SIMULATOR_CHANNELS=f"{A},{B},{C}",
    )


def env(sim: Simulator, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "SIMULATOR_"))}
    return {
        **base,
        "BRIDGE_SPOTLER_API_URL": sim.api_url,
        "BRIDGE_SPOTLER_API_KEY": KEY_AB,
        "BRIDGE_PUBLIC_URL": PUBLIC,
        "BRIDGE_WEBHOOK_TOKENS": NEW,
        "BRIDGE_LOG_LEVEL": "warning",
        **extra,
    }


async def bridge(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """Run ``bridge args...``; its exit code and output (stdout and stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def api(sim: Simulator, method: str, path: str, body: Any = None) -> Any:
    """A call to the simulator's API with the owner key (what an operator would see)."""
    headers = {"Authorization": f"Bearer {KEY_OWNER}"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, sim.api_url + path, json=body, headers=headers) as resp,
    ):
        assert resp.status < 300, await resp.text()
        raw = await resp.read()
        return orjson.loads(raw) if raw else None


async def hooks(sim: Simulator, channel: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await api(sim, "GET", f"/channels/{channel}/webhooks")
    return found


async def add_hook(sim: Simulator, channel: str, **body: Any) -> dict[str, Any]:
    created: dict[str, Any] = await api(sim, "POST", f"/channels/{channel}/webhooks", body)
    return created
