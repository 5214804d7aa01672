"""The token rotation procedure of docs/deploy.md, with deliveries flowing the whole time.

Steps (DESIGN.md, issue 12): BRIDGE_WEBHOOK_TOKENS=new,old on ingress, roll; `bridge webhooks
sync`; remove the old token, roll again. The simulator's emitter delivers customer messages
throughout; none may be refused (401), and every one reaches Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

import pytest

from tests.integration.lifecycle_env import NEW, OLD, A, bridge, env, hooks, simulator
from tests.integration.procs import (
    BridgeProcess,
    ProcessFactory,
    consume,
    eventually,
    free_port,
    value,
)

pytestmark = pytest.mark.kafka


async def roll(
    procs: ProcessFactory,
    old: BridgeProcess | None,
    port: int,
    kafka: str,
    prefix: str,
    tokens: str,
) -> BridgeProcess:
    """Replace the ingress process with one that accepts ``tokens`` (same port)."""
    if old is not None:
        assert await old.stop() == 0, old.logs()
    proc = procs.make(
        "ingress",
        BRIDGE_HTTP_PORT=str(port),
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS=kafka,
        BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_WEBHOOK_TOKENS=tokens,
    )
    await proc.start()
    await proc.wait_ready()
    return proc


async def test_rotation_refuses_no_delivery(kafka, prefix, procs) -> None:
    sim = await simulator(procs)
    port = free_port()
    public = f"http://127.0.0.1:{port}/webhooks"
    ingress = await roll(procs, None, port, kafka, prefix, OLD)

    def sync_env(tokens: str) -> dict[str, str]:
        return env(sim, BRIDGE_PUBLIC_URL=public, BRIDGE_WEBHOOK_TOKENS=tokens, BRIDGE_CHANNELS=A)

    code, out = await bridge("webhooks", "sync", env=sync_env(OLD))
    assert code == 0, out

    sent: list[str] = []

    async def customers() -> None:
        for n in itertools.count():
            body = {
                "channelJid": A,
                "contactJid": "31611111111@whatsapp.eazy.im",
                "message": {"id": f"rot-{n}", "type": "text", "body": f"hello {n}"},
            }
            await sim.admin("POST", "inbound", body)
            sent.append(f"rot-{n}")
            await asyncio.sleep(0.05)  # pacing of the traffic, not synchronisation

    flowing = asyncio.create_task(customers())
    try:
        await eventually(lambda: _at_least(sent, 5), what="deliveries flowing")
        ingress = await roll(procs, ingress, port, kafka, prefix, f"{NEW},{OLD}")
        code, out = await bridge("webhooks", "sync", env=sync_env(f"{NEW},{OLD}"))
        assert code == 0, out
        (hook,) = await hooks(sim, A)
        assert hook["headers"] == {"Authorization": f"Bearer {NEW}"}
        mark = len(sent)
        await eventually(lambda: _at_least(sent, mark + 5), what="deliveries after sync")
        ingress = await roll(procs, ingress, port, kafka, prefix, NEW)
        mark = len(sent)
        await eventually(lambda: _at_least(sent, mark + 5), what="deliveries after the last roll")
    finally:
        flowing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flowing

    async def all_delivered() -> bool:
        deliveries: list[dict[str, Any]] = await sim.admin("GET", "deliveries")
        done = {d["body"]["message"]["id"] for d in deliveries if d["status"] == 200}
        return set(sent) <= done

    await eventually(all_delivered, timeout=60, what="every message delivered with 200")
    deliveries = await sim.admin("GET", "deliveries")
    refused = [d for d in deliveries if d["status"] == 401]
    assert refused == [], refused[:3]
    records = await consume(kafka, [f"{prefix}.events.message"], count=len(sent), timeout=60)
    ids = {value(r)["data"]["payload"]["message"]["id"] for r in records}
    assert set(sent) <= ids


async def _at_least(items: list[str], n: int) -> bool:
    return len(items) >= n
