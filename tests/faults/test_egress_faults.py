"""Fault scenarios for egress: a flaky platform, and the consumer killed mid-stream."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge.contract.records import Topics
from tests.faults.conftest import wait_for
from tests.integration.procs import (
    BridgeProcess,
    ProcessFactory,
    Simulator,
    consume,
    produce,
    start_simulator,
    value,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CHANNEL = "31612345678@whatsapp.eazy.im"


def commands(count: int, conversations: int, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{tag}-{i}",
            "channelJid": CHANNEL,
            "contactJid": f"316{i % conversations:08d}@whatsapp.eazy.im",
            "message": {"type": "text", "body": f"{tag}-{i}"},
        }
        for i in range(count)
    ]


def make_egress(
    procs: ProcessFactory, kafka: str, prefix: str, sim: Simulator, **env: str
) -> BridgeProcess:
    return procs.make(
        "egress",
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS=kafka,
        BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_SPOTLER_API_URL=sim.api_url,
        BRIDGE_SPOTLER_API_KEY="sim-key",
        BRIDGE_EGRESS_GROUP_ID=f"{prefix}-egress",
        BRIDGE_EGRESS_BACKOFF_BASE="0.05",
        BRIDGE_EGRESS_BACKOFF_MAX="0.5",
        BRIDGE_EGRESS_MAX_ATTEMPTS="40",
        BRIDGE_EGRESS_RATE_LIMIT="0",
        BRIDGE_EGRESS_CHANNEL_RATE_LIMIT="0",
        BRIDGE_LOG_LEVEL="warning",
        **env,
    )


async def all_results(kafka: str, prefix: str, ids: set[str], timeout: float = 120) -> list[Any]:
    """Every result on the topic once each of ``ids`` has one (repeats included), or fail."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        records = await consume(kafka, [Topics(prefix).results], count=10**9, timeout=3)
        results = [value(r) for r in records]
        if {r["data"]["commandId"] for r in results} >= ids:
            return results
        if asyncio.get_running_loop().time() > deadline:
            missing = ids - {r["data"]["commandId"] for r in results}
            pytest.fail(f"{len(missing)} commands without a result, e.g. {sorted(missing)[:5]}")


async def sent_bodies(sim: Simulator) -> dict[str, list[str]]:
    """Per contact, the message bodies the platform accepted, in the order it accepted them."""
    return {
        c["contactJid"]: [m["message"]["body"] for m in c["messages"]]
        for c in await sim.admin("GET", "messages")
    }


async def test_flaky_platform(procs, kafka, prefix, report) -> None:
    """Scenario 4: 30% of calls fail (503/429) with random latency; one result each, in order."""
    sim = await start_simulator(procs)
    await sim.faults(
        rate429=0.1,
        retryAfter=0.2,
        errorRate=0.22,
        errorStatus=503,
        latencyMs=2,
        latencyJitterMs=30,
        seed=7,
    )
    egress = make_egress(procs, kafka, prefix, sim, BRIDGE_EGRESS_CONCURRENCY="16")
    await egress.start()
    await egress.wait_ready(timeout=60)
    stream = commands(400, 20, "flaky")
    for start in range(0, 400, 100):  # a stream, not one batch
        await produce(kafka, Topics(prefix).send_message, stream[start : start + 100])
        await asyncio.sleep(0.5)  # paces the producer (a stream), not a synchronisation
    results = await all_results(kafka, prefix, {c["id"] for c in stream})
    ids = [r["data"]["commandId"] for r in results]
    assert sorted(ids) == sorted(c["id"] for c in stream)  # exactly one result per command
    assert all(r["type"] == "im.eazy.command.succeeded" for r in results)
    bodies = await sent_bodies(sim)
    for contact, got in bodies.items():
        assert got == [c["id"] for c in stream if c["contactJid"] == contact]  # order kept
    requests = await sim.admin("GET", "requests")
    failed = sum(1 for r in requests if r["status"] >= 400)
    report["4-flaky-platform"] = {
        "commands": len(stream),
        "results": len(results),
        "api_calls": len(requests),
        "api_failures": failed,
        "failure_ratio": round(failed / len(requests), 2),
        "retries": sum(r["data"]["attempts"] - 1 for r in results),
    }
    assert failed / len(requests) > 0.15
    assert await egress.stop() == 0


async def test_egress_killed_mid_stream(procs, kafka, prefix, report) -> None:
    """Scenario 5: SIGKILL egress twice mid-stream: every command ends with a result."""
    sim = await start_simulator(procs)
    await sim.faults(latencyMs=50)
    egress = make_egress(procs, kafka, prefix, sim, BRIDGE_EGRESS_CONCURRENCY="4")
    stream = commands(400, 12, "kill")
    await produce(kafka, Topics(prefix).send_message, stream)
    for _ in range(2):
        calls_before = len(await sim.admin("GET", "requests"))
        await egress.start()
        await egress.wait_ready(timeout=60)

        async def sending(target: int = calls_before + 50) -> bool:  # this run called 50 times
            return len(await sim.admin("GET", "requests")) >= target

        await wait_for(sending, timeout=60)
        await egress.kill()
    done_before_last_start = len(
        await consume(kafka, [Topics(prefix).results], count=10**9, timeout=3)
    )
    assert 0 < done_before_last_start < len(stream)  # the kills really were mid-stream
    await egress.start()
    await egress.wait_ready(timeout=60)
    results = await all_results(kafka, prefix, {c["id"] for c in stream})
    per_command: dict[str, int] = {}
    for r in results:
        per_command[r["data"]["commandId"]] = per_command.get(r["data"]["commandId"], 0) + 1
    assert set(per_command) == {c["id"] for c in stream}  # none lost
    bodies = await sent_bodies(sim)
    sent_twice = sum(len(b) - len(set(b)) for b in bodies.values())
    for contact, got in bodies.items():
        first_seen = list(dict.fromkeys(got))
        assert first_seen == [c["id"] for c in stream if c["contactJid"] == contact]
    report["5-egress-sigkill"] = {
        "commands": len(stream),
        "kills": 2,
        "results": len(results),
        "commands_with_more_than_one_result": sum(1 for n in per_command.values() if n > 1),
        "commands_sent_twice_to_platform": sent_twice,
    }
    code = await egress.stop()
    assert code == 0, egress.logs()[-3000:]
