"""Fault scenarios for egress order under stop and rebalance (issue 26, items 3 and 4).

Real broker, simulator and bridge processes. The simulator's request log is the witness: it
records every call the platform received, failed or not, with its time and Host header.

- SIGTERM while a conversation's first command waits out its backoff, then a restart: the
  platform never receives a command of a conversation before every earlier one of it was
  accepted (no command after an unfinished predecessor), and each conversation's accepted
  messages are in order.
- A second egress instance joins the group while the first one's commands wait in backoff and
  at the open breaker: after its rebalance the first instance calls the platform only for the
  partitions it still owns.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime
from typing import Any

import orjson
import pytest

from bridge.contract.records import Topics
from tests.faults.conftest import wait_for
from tests.faults.test_egress_faults import all_results, sent_bodies
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


def make_egress(
    procs: ProcessFactory, kafka: str, prefix: str, sim: Simulator, **env: str
) -> BridgeProcess:
    settings = {
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": kafka,
        "BRIDGE_TOPIC_PREFIX": prefix,
        "BRIDGE_SPOTLER_API_URL": sim.api_url,
        "BRIDGE_SPOTLER_API_KEY": "sim-key",
        "BRIDGE_EGRESS_GROUP_ID": f"{prefix}-egress",
        "BRIDGE_EGRESS_MAX_ATTEMPTS": "100",
        "BRIDGE_EGRESS_RATE_LIMIT": "0",
        "BRIDGE_EGRESS_CHANNEL_RATE_LIMIT": "0",
        "BRIDGE_LOG_LEVEL": "warning",
    }
    return procs.make("egress", **{**settings, **env})


def contact(n: int) -> str:
    return f"316{n:08d}@whatsapp.eazy.im"


def command(command_id: str, n: int) -> dict[str, Any]:
    return {
        "id": command_id,
        "channelJid": CHANNEL,
        "contactJid": contact(n),
        "message": {"type": "text", "body": command_id},
    }


def called_id(request: dict[str, Any]) -> str | None:
    body = request.get("body")
    if isinstance(body, dict) and isinstance(body.get("message"), dict):
        found = body["message"].get("body")
        return found if isinstance(found, str) else None
    return None


def contact_of(request: dict[str, Any]) -> str:
    return str(request["path"]).rsplit("/", 1)[-1]


def no_call_after_an_unfinished_predecessor(
    requests: list[dict[str, Any]], stream: list[dict[str, Any]]
) -> list[str]:
    """The calls that reached the platform while an earlier command of the same conversation
    had not been accepted yet (each a readable line)."""
    order = {c["id"]: i for i, c in enumerate(stream)}
    per_contact: dict[str, list[str]] = {}
    for c in stream:
        per_contact.setdefault(c["contactJid"], []).append(c["id"])
    accepted: set[str] = set()
    wrong = []
    for r in sorted(requests, key=lambda r: r["received"]):
        cid = called_id(r)
        if cid is None or cid not in order:
            continue
        earlier = [p for p in per_contact[contact_of(r)] if order[p] < order[cid]]
        missing = [p for p in earlier if p not in accepted]
        if missing:
            wrong.append(f"{cid} called (status {r['status']}) before {missing} was accepted")
        if r["status"] < 300:
            accepted.add(cid)
    return wrong


async def test_sigterm_during_a_backoff_then_restart_keeps_each_conversation_in_order(
    procs: ProcessFactory, kafka: str, prefix: str, report: dict[str, Any]
) -> None:
    sim = await start_simulator(procs)
    stuck = contact(0)
    await sim.faults(errorRate=1.0, errorStatus=503, contacts=[stuck])
    stream = [command(f"stuck-{i}", 0) for i in range(3)]
    stream += [command(f"free-{i}", 1 + i % 4) for i in range(12)]
    env = {
        "BRIDGE_EGRESS_BACKOFF_BASE": "5",
        "BRIDGE_EGRESS_BACKOFF_MAX": "5",
        "BRIDGE_CIRCUIT_FAILURES": "100",
    }
    egress = make_egress(procs, kafka, prefix, sim, **env)
    await produce(kafka, Topics(prefix).send_message, stream)
    await egress.start()
    await egress.wait_ready(timeout=60)

    async def stuck_called_and_others_done() -> bool:
        requests = await sim.admin("GET", "requests")
        bodies = await sent_bodies(sim)
        done = sum(len(b) for c, b in bodies.items() if c != stuck)
        return any(contact_of(r) == stuck for r in requests) and done == 12

    await wait_for(stuck_called_and_others_done, timeout=60)
    started = asyncio.get_running_loop().time()
    assert await egress.stop() == 0, egress.logs()[-3000:]
    stop_seconds = asyncio.get_running_loop().time() - started
    before = await sim.admin("GET", "requests")
    assert {called_id(r) for r in before if contact_of(r) == stuck} == {"stuck-0"}

    await sim.admin("DELETE", "faults")
    await egress.start()
    await egress.wait_ready(timeout=60)
    results = await all_results(kafka, prefix, {c["id"] for c in stream})
    requests = await sim.admin("GET", "requests")
    assert no_call_after_an_unfinished_predecessor(requests, stream) == []
    bodies = await sent_bodies(sim)
    for who, got in bodies.items():
        assert list(dict.fromkeys(got)) == [c["id"] for c in stream if c["contactJid"] == who]
    assert {r["data"]["commandId"] for r in results} == {c["id"] for c in stream}
    report["26-egress-sigterm-in-backoff"] = {
        "commands": len(stream),
        "stop_seconds": round(stop_seconds, 2),
        "calls_for_the_stuck_conversation_before_stop": sum(
            1 for r in before if contact_of(r) == stuck
        ),
        "results": len(results),
    }
    assert await egress.stop() == 0


async def test_sigterm_while_commands_wait_at_the_open_breaker_exits_at_once(
    procs: ProcessFactory, kafka: str, prefix: str, report: dict[str, Any]
) -> None:
    """Issue 26 (7): with the breaker open for 20 s and the shutdown bound 25 s, commands
    waiting at the breaker do not hold the stop: exit 0 at once (before the fix the stop took
    the whole 25 s), and after a restart each conversation's commands reach the platform in
    order."""
    sim = await start_simulator(procs)
    stuck = contact(0)
    await sim.faults(errorRate=1.0, errorStatus=503, contacts=[stuck])
    env = {
        "BRIDGE_EGRESS_BACKOFF_BASE": "0.05",
        "BRIDGE_EGRESS_BACKOFF_MAX": "0.05",
        "BRIDGE_CIRCUIT_FAILURES": "1",
        "BRIDGE_CIRCUIT_OPEN_SECONDS": "20",
        "BRIDGE_SHUTDOWN_TIMEOUT": "25",
    }
    egress = make_egress(procs, kafka, prefix, sim, **env)
    await egress.start()
    await egress.wait_ready(timeout=60)
    stream = [command(f"stuck-{i}", 0) for i in range(3)]
    stream += [command(f"waits-{i}", 1 + i % 4) for i in range(8)]
    await produce(kafka, Topics(prefix).send_message, stream)

    async def breaker_open() -> bool:
        return "spotler_bridge_circuit_state 2.0" in await egress.metrics()

    await wait_for(breaker_open, timeout=60)
    started = asyncio.get_running_loop().time()
    code = await egress.stop()
    stop_seconds = asyncio.get_running_loop().time() - started
    assert code == 0, egress.logs()[-3000:]
    assert stop_seconds < 10

    await sim.admin("DELETE", "faults")
    await egress.start()
    await egress.wait_ready(timeout=60)
    results = await all_results(kafka, prefix, {c["id"] for c in stream}, timeout=90)
    requests = await sim.admin("GET", "requests")
    assert no_call_after_an_unfinished_predecessor(requests, stream) == []
    bodies = await sent_bodies(sim)
    for who, got in bodies.items():
        assert list(dict.fromkeys(got)) == [c["id"] for c in stream if c["contactJid"] == who]
    report["26-egress-sigterm-at-open-breaker"] = {
        "commands": len(stream),
        "stop_seconds": round(stop_seconds, 2),
        "results": len(results),
    }
    assert await egress.stop() == 0


def log_lines(text: str, event: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        if f'"{event}"' not in line:
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if doc.get("event") == event:
            found.append(doc)
    return found


def epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


async def test_a_rebalance_stops_the_old_owner_calling_for_revoked_partitions(
    procs: ProcessFactory, kafka: str, prefix: str, report: dict[str, Any]
) -> None:
    sim = await start_simulator(procs)
    await sim.faults(errorRate=1.0, errorStatus=503)  # every call fails: backoff and breaker
    env = {
        "BRIDGE_EGRESS_BACKOFF_BASE": "1",
        "BRIDGE_EGRESS_BACKOFF_MAX": "3",
        "BRIDGE_EGRESS_MAX_ATTEMPTS": "100",
        "BRIDGE_CIRCUIT_FAILURES": "6",
        "BRIDGE_CIRCUIT_OPEN_SECONDS": "2",
    }
    first = make_egress(procs, kafka, prefix, sim, **env)
    first.env["BRIDGE_LOG_LEVEL"] = "info"  # its egress.assigned lines
    await first.start()
    await first.wait_ready(timeout=60)
    stream = [command(f"rb-{i}", i % 12) for i in range(24)]
    await produce(kafka, Topics(prefix).send_message, stream)

    async def every_conversation_tried() -> bool:
        requests = await sim.admin("GET", "requests")
        return len({contact_of(r) for r in requests}) == 12

    await wait_for(every_conversation_tried, timeout=60)
    # The second instance reaches the same simulator by another name: the Host header tells
    # the two apart in the request log.
    second = make_egress(procs, kafka, prefix, sim, **env)
    second.env["BRIDGE_SPOTLER_API_URL"] = sim.api_url.replace("127.0.0.1", "localhost")
    await second.start()
    await second.wait_ready(timeout=60)

    async def partitions_shared() -> bool:  # the first instance gave some partitions away
        assigned = log_lines(first.logs(), "egress.assigned")
        return len(assigned) >= 2 and len(assigned[-1]["partitions"]) < 6

    await wait_for(partitions_shared, timeout=90)
    reassigned = log_lines(first.logs(), "egress.assigned")[-1]
    kept = set(reassigned["partitions"])
    # From the moment its revocation returned, the first instance may call only for what it
    # kept (nothing at all until it has its new assignment).
    revoked = [
        line
        for line in log_lines(first.logs(), "egress.revoked")
        if epoch(line["timestamp"]) <= epoch(reassigned["timestamp"])
    ]
    since = epoch(revoked[-1]["timestamp"]) if revoked else epoch(reassigned["timestamp"])

    async def calls_well_after_the_rebalance() -> bool:  # backoffs and probes come round again
        requests = await sim.admin("GET", "requests")
        return any(r["time"] > since + 8 for r in requests)

    await wait_for(calls_well_after_the_rebalance, timeout=60)
    await sim.admin("DELETE", "faults")
    results = await all_results(kafka, prefix, {c["id"] for c in stream})
    where = {
        r["data"]["commandId"]: f"{r['data']['source']['topic']}/{r['data']['source']['partition']}"
        for r in results
    }
    requests = await sim.admin("GET", "requests")
    host_of_first = f"127.0.0.1:{sim.port}"
    late = [
        (called_id(r), where.get(called_id(r) or ""), round(r["time"] - since, 1))
        for r in requests
        if r["headers"].get("Host") == host_of_first and r["time"] > since
    ]
    foreign = [call for call in late if call[1] not in kept]
    assert foreign == [], f"the first instance called for partitions it no longer owns: {foreign}"
    by_second = sum(1 for r in requests if r["headers"].get("Host", "").startswith("localhost"))
    assert by_second > 0  # the partitions really moved
    assert {r["data"]["commandId"] for r in results} == {c["id"] for c in stream}
    bodies = await sent_bodies(sim)
    for who, got in bodies.items():
        assert list(dict.fromkeys(got)) == [c["id"] for c in stream if c["contactJid"] == who]
    report["26-egress-rebalance-in-backoff"] = {
        "commands": len(stream),
        "kept_by_first": sorted(kept),
        "calls_by_first_after_rebalance": len(late),
        "calls_by_second": by_second,
    }
    assert await first.stop() == 0
    assert await second.stop() == 0


async def test_a_dead_letter_kafka_refuses_does_not_pin_the_partition(
    procs: ProcessFactory, kafka: str, prefix: str, report: dict[str, Any]
) -> None:
    """Issue 26 (6): a ~900 kB command of control bytes is invalid; as JSON text its dead
    letter is ~5.4 MB, which Kafka refuses for good. A bounded dead letter takes its place,
    the command gets its failed result, and the commit point moves past it: after a restart
    none of the later commands is sent again."""
    sim = await start_simulator(procs)
    egress = make_egress(procs, kafka, prefix, sim, BRIDGE_TOPIC_PARTITIONS="1")
    await egress.start()  # creates the command topics, one partition: one commit point
    await egress.wait_ready(timeout=60)
    poison = b"\x01" * 900_000
    later = [command(f"after-{i}", i) for i in range(5)]
    topics = Topics(prefix)
    await produce(kafka, topics.send_message, [poison, *later])
    results: list[Any] = []

    async def every_command_has_a_result() -> bool:
        nonlocal results
        records = await consume(kafka, [topics.results], count=10**9, timeout=3)
        results = [value(r) for r in records]
        return len(results) >= 1 + len(later)

    await wait_for(every_command_has_a_result, timeout=90)
    assert {r["data"]["commandId"] for r in results} >= {c["id"] for c in later}
    [invalid] = [r for r in results if r["data"]["commandId"] not in {c["id"] for c in later}]
    assert invalid["type"] == "im.eazy.command.failed"
    assert invalid["data"]["reason"].startswith("invalid: ")
    letters = [
        value(r) for r in await consume(kafka, [topics.commands_deadletter], count=1, timeout=30)
    ]
    assert len(letters) == 1
    data = letters[0]["data"]
    assert data["size"] == len(poison)
    assert data["sha256"] == hashlib.sha256(poison).hexdigest()
    assert "refused by Kafka" in data["refused"]
    assert await egress.stop() == 0

    await egress.start()
    await egress.wait_ready(timeout=60)
    await produce(kafka, topics.send_message, [command("after-restart", 9)])
    await all_results(kafka, prefix, {"after-restart"}, timeout=60)
    bodies = await sent_bodies(sim)
    sent = [b for got in bodies.values() for b in got]
    assert sorted(sent) == sorted([c["id"] for c in later] + ["after-restart"])  # each once
    report["26-egress-refused-deadletter"] = {
        "poison_bytes": len(poison),
        "deadletter_bytes": len(orjson.dumps(letters[0])),
        "results_before_restart": len(results),
        "platform_calls": len(sent),
    }
    assert await egress.stop() == 0
