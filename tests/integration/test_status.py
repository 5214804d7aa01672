"""Delivery status per command (issue 22, docs/status.md) on the real broker with the simulator.

A ``bridge serve`` process (ingress and egress with its status worker) and the simulator, whose
receipts come back to the ingress as webhooks. Expectations come from DESIGN.md's topic table
(``P.commands.status``: compacted, keyed by command, sent then delivered / read / failed, never
backwards) and issue 22; the simulator's receipt statuses are its own (``delivered``, ``read``).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from bridge.contract.records import Topics
from tests.contract_check import check_value
from tests.integration.procs import (
    TOKEN,
    BridgeProcess,
    ProcessFactory,
    Simulator,
    consume,
    eventually,
    post,
    produce,
    start_simulator,
    value,
)
from tests.integration.test_egress import CHANNEL, contact, send
from tests.integration.test_topics import bridge as bridge_command

pytestmark = pytest.mark.kafka

ORDER = {"sent": 0, "failed": 1, "delivered": 2, "read": 3}  # issue 22: never backwards


async def start_loop(
    procs: ProcessFactory,
    kafka: str,
    prefix: str,
    bridge_env: dict[str, str] | None = None,
    **sim_env: str,
) -> tuple[BridgeProcess, Simulator]:
    """``bridge serve`` and a simulator that sends its webhooks (receipts) to it."""
    bridge = procs.make(
        "serve",
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS=kafka,
        BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_SPOTLER_API_KEY="sim-key",
        BRIDGE_EGRESS_GROUP_ID=f"{prefix}-egress",
        BRIDGE_STATUS_GROUP_ID=f"{prefix}-status",
        BRIDGE_WEBHOOK_TOKENS=TOKEN,
        BRIDGE_CHANNELS=CHANNEL,
        BRIDGE_EGRESS_RATE_LIMIT="0",
        BRIDGE_EGRESS_CHANNEL_RATE_LIMIT="0",
        **(bridge_env or {}),
    )
    sim = await start_simulator(
        procs,
        SIMULATOR_WEBHOOK_URL=f"{bridge.url}/webhooks",
        SIMULATOR_WEBHOOK_HEADERS=orjson.dumps({"Authorization": f"Bearer {TOKEN}"}).decode(),
        **sim_env,
    )
    bridge.env["BRIDGE_SPOTLER_API_URL"] = sim.api_url
    await bridge.start()
    await bridge.wait_ready(timeout=60)
    return bridge, sim


async def statuses(
    kafka: str, prefix: str, count: int, timeout: float = 60, settle: float = 0.0
) -> list[Any]:
    """Status records in the order of their partition (per key that is their order)."""
    records = await consume(
        kafka, [Topics(prefix).status], count=count, timeout=timeout, settle=settle
    )
    records.sort(key=lambda r: (r.partition, r.offset))
    return records


def by_command(records: list[Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        event = value(record)
        assert record.key == f"send-message/{event['data']['commandId']}".encode()
        found.setdefault(event["data"]["commandId"], []).append(event)
    return found


def monotone(events: list[dict[str, Any]]) -> bool:
    ranks = [ORDER[e["data"]["state"]] for e in events]
    return ranks == sorted(ranks)


async def test_a_send_becomes_sent_delivered_read(procs, kafka, prefix) -> None:
    """The plain path: one command; its status records are sent, delivered, read in this order,
    keyed by command, naming the message id of its result; the receipts name the command
    (they come 1.5 s after the send here: ingress names a receipt whose send it already read)."""
    bridge, _ = await start_loop(procs, kafka, prefix, SIMULATOR_RECEIPT_DELAY="1.5")
    topics = Topics(prefix)
    await produce(kafka, topics.send_message, [send("st-1", contact(1))])
    records = await statuses(kafka, prefix, 3)
    [(command_id, events)] = by_command(records).items()
    assert command_id == "st-1"
    assert [e["data"]["state"] for e in events] == ["sent", "delivered", "read"]
    assert all(e["type"] == "im.eazy.command.status" for e in events)
    [result] = await consume(kafka, [topics.results], count=1)
    message_id = value(result)["data"]["messageId"]
    assert {e["data"]["messageId"] for e in events} == {message_id}
    last = events[-1]["data"]
    assert [h["state"] for h in last["history"]] == ["sent", "delivered", "read"]
    assert [h["status"] for h in last["history"][1:]] == ["delivered", "read"]
    assert last["channelJid"] == CHANNEL
    assert last["contactJid"] == contact(1)
    receipts = [value(r) for r in await consume(kafka, [topics.event("receipt")], count=2)]
    assert [r["commandid"] for r in receipts] == ["st-1"] * 2
    assert [r["data"]["commandId"] for r in receipts] == ["st-1"] * 2
    code, out = await bridge_command("status", "st-1", env=bridge.env)
    assert code == 0, out
    lines = out.splitlines()
    assert "state read" in lines[0]
    assert message_id in lines[0]
    assert [line.split()[1] for line in lines[1:]] == ["sent", "delivered", "read"]
    code, out = await bridge_command("status", "no-such-command", env=bridge.env)
    assert code == 1, out


async def test_a_refused_send_is_failed(procs, kafka, prefix) -> None:
    """A send the platform refuses for good (1005) is ``failed`` on the status topic."""
    _, sim = await start_loop(procs, kafka, prefix)
    await sim.faults(failNext=1, errorStatus=400, errorCode=1005)
    await produce(kafka, Topics(prefix).send_message, [send("st-bad", contact(2))])
    [record] = await statuses(kafka, prefix, 1)
    data = value(record)["data"]
    assert (data["commandId"], data["state"], data["messageId"]) == ("st-bad", "failed", None)


async def test_bad_receipts_pass_through_and_never_stall_the_join(procs, kafka, prefix) -> None:
    """Receipts without a message id, with a number, a huge or a control-character id, an
    unknown status, or an id the bridge never sent: each is published unchanged on the receipt
    topic and counted, and a real send after them still goes sent -> delivered -> read."""
    bridge, _ = await start_loop(procs, kafka, prefix, SIMULATOR_RECEIPT_DELAY="1.5")

    def receipt(message: Any) -> bytes:
        body = {"type": "receipt", "version": 2, "timestamp": 1700000000,
                "from": {"jid": contact(9)}, "to": CHANNEL, "message": message}  # fmt: skip
        return orjson.dumps(body)

    bad = [
        {"status": "delivered"},
        {"id": 12345, "status": "delivered"},
        {"id": "x" * 5000, "status": "delivered"},
        {"id": "ab\ncd", "status": "read"},
        {"id": uuid.uuid4().hex, "status": "delivered"},  # not sent through the bridge
        {"id": uuid.uuid4().hex, "status": "on-the-moon"},
        {"id": uuid.uuid4().hex, "status": ["read"]},
    ]
    for message in bad:
        status, _ = await post(f"{bridge.url}/webhooks", receipt(message))
        assert status == 200
    await produce(kafka, Topics(prefix).send_message, [send("st-after", contact(3))])
    events = by_command(await statuses(kafka, prefix, 3))["st-after"]
    assert [e["data"]["state"] for e in events] == ["sent", "delivered", "read"]
    receipts = await consume(kafka, [Topics(prefix).event("receipt")], count=len(bad) + 2)
    unnamed = [value(r) for r in receipts if "commandid" not in value(r)]
    assert len(unnamed) == len(bad)

    async def counted() -> bool:
        text = await bridge.metrics()
        return (
            'spotler_bridge_status_receipts_total{outcome="unusable"} 4.0' in text
            and 'spotler_bridge_status_receipts_total{outcome="matched"} 2.0' in text
        )

    await eventually(counted, timeout=20)
    assert bridge.logs().count('"status.unusable_receipt"') == 1  # logged once, counted always


async def test_status_survives_a_restart_without_going_back(procs, kafka, prefix) -> None:
    """SIGKILL of the bridge after a command was read: a new process rebuilds the state from
    the window and the later receipts continue it; no record goes backwards."""
    bridge, _ = await start_loop(procs, kafka, prefix, SIMULATOR_RECEIPT_DELAY="2")
    await produce(kafka, Topics(prefix).send_message, [send("st-k", contact(4))])
    await statuses(kafka, prefix, 1)
    await bridge.kill()
    bridge.env["BRIDGE_OPS_PORT"] = str(bridge.ops_port)
    await bridge.start()
    await bridge.wait_ready(timeout=60)
    records = await statuses(kafka, prefix, 3, timeout=60)
    events = by_command(records)["st-k"]
    assert events[-1]["data"]["state"] == "read"
    assert monotone(events)


def final(truth: list[str]) -> str:
    """The simulator's truth for a message, as the state it must end in (DESIGN.md: latest =
    current state; the simulator's ``read`` comes only after ``delivered``)."""
    return truth[-1]


async def test_late_reversed_repeated_and_foreign_receipts(procs, kafka, prefix) -> None:
    """40 sends over 8 conversations; the simulator fails some, reads some, reverses, repeats
    and adds receipts for ids it never returned. Every command ends in the simulator's truth,
    every command's records are monotone, the foreign receipts are counted unmatched."""
    bridge, sim = await start_loop(procs, kafka, prefix, bridge_env={"BRIDGE_STATUS_GRACE": "3"})
    await sim.admin("POST", "receipts", {
        "delay": 0.2, "jitter": 0.5, "failRate": 0.2, "readRate": 0.6, "shuffleRate": 0.4,
        "duplicateRate": 0.3, "foreignRate": 0.25, "seed": 22,
    })  # fmt: skip
    commands = [send(f"mix-{n}", contact(n % 8)) for n in range(40)]
    await produce(kafka, Topics(prefix).send_message, commands)
    results = {
        value(r)["data"]["commandId"]: value(r)["data"]["messageId"]
        for r in await consume(kafka, [Topics(prefix).results], count=40)
    }
    plan = await sim.admin("GET", "receipts")
    want = {command: final(plan["truth"][mid]) for command, mid in results.items()}

    async def settled() -> bool:
        found = by_command(await statuses(kafka, prefix, 1, timeout=10, settle=1.0))
        return {c: e[-1]["data"]["state"] for c, e in found.items()} == want

    await eventually(settled, timeout=60)
    found = by_command(await statuses(kafka, prefix, 1, timeout=10, settle=1.0))
    assert all(monotone(events) for events in found.values())
    foreign = len(plan["foreign"])
    assert foreign > 0

    async def counted() -> bool:
        text = await bridge.metrics()
        return f'spotler_bridge_status_receipts_total{{outcome="unmatched"}} {foreign}.0' in text

    await eventually(counted, timeout=30)


async def test_receipts_before_their_send_are_matched(procs, kafka, prefix) -> None:
    """Receipts that reach the bridge before egress's send-log entry (written here by the test,
    as egress would write it) wait and are matched once the entry comes, within the grace."""
    bridge, _ = await start_loop(procs, kafka, prefix)
    message_id = uuid.uuid4().hex
    for status in ("read", "delivered"):
        body = {"type": "receipt", "version": 2, "timestamp": 1700000000,
                "from": {"jid": contact(5)}, "to": CHANNEL,
                "message": {"id": message_id, "status": status}}  # fmt: skip
        assert (await post(f"{bridge.url}/webhooks", orjson.dumps(body)))[0] == 200
    receipts = await consume(kafka, [Topics(prefix).event("receipt")], count=2)
    assert len(receipts) == 2
    entry: dict[str, Any] = {
        "specversion": "1.0", "id": f"sent/send-message/early-1/{message_id}",
        "source": "/spotler-bridge/egress", "type": "im.eazy.command.sent",
        "time": "2026-01-01T00:00:00.000Z", "datacontenttype": "application/json",
        "data": {"commandId": "early-1", "command": "send-message", "channelJid": CHANNEL,
                 "contactJid": contact(5), "state": "sent", "messageId": message_id,
                 "sentAt": "2026-01-01T00:00:00.000Z", "commandReceivedAt": None},
    }  # fmt: skip
    entry["time"] = entry["data"]["sentAt"] = _now_iso()
    check_value(Topics(prefix).sent, orjson.dumps(entry))  # as egress would write it: the contract
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    try:  # keyed by conversation, like the receipts (docs/status.md)
        key = f"{CHANNEL}/{contact(5)}".encode()
        await producer.send_and_wait(Topics(prefix).sent, orjson.dumps(entry), key=key)
    finally:
        await producer.stop()
    events = by_command(await statuses(kafka, prefix, 3))["early-1"]
    assert events[-1]["data"]["state"] == "read"
    assert next(h["status"] for h in events[-1]["data"]["history"]) == "sent"
    assert monotone(events)


def _now_iso() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
