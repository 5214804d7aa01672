"""Egress end to end: commands on the real broker, a ``bridge egress`` process, the simulator."""

from __future__ import annotations

import asyncio
import copy
import email.utils
import time
import uuid
from typing import Any

import pytest

from bridge.contract.records import Topics
from tests import samples
from tests.integration.procs import (
    BridgeProcess,
    ProcessFactory,
    Simulator,
    consume,
    eventually,
    produce,
    start_simulator,
    value,
)

pytestmark = pytest.mark.kafka

CHANNEL = "31612345678@whatsapp.eazy.im"
MESSAGES = samples.SEND_BODIES


def contact(n: int) -> str:
    return f"316{n:08d}@whatsapp.eazy.im"


def send(command_id: str, to: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": command_id,
        "channelJid": CHANNEL,
        "contactJid": to,
        **copy.deepcopy(body or MESSAGES["text"]),
    }


async def start_egress(
    procs: ProcessFactory, kafka: str, prefix: str, sim: Simulator, **env: str
) -> BridgeProcess:
    options = {
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": kafka,
        "BRIDGE_TOPIC_PREFIX": prefix,
        "BRIDGE_SPOTLER_API_URL": sim.api_url,
        "BRIDGE_SPOTLER_API_KEY": "sim-key",
        "BRIDGE_EGRESS_GROUP_ID": f"{prefix}-egress",
        "BRIDGE_EGRESS_BACKOFF_BASE": "0.05",
        "BRIDGE_EGRESS_BACKOFF_MAX": "0.5",
        "BRIDGE_EGRESS_RATE_LIMIT": "0",
        "BRIDGE_EGRESS_CHANNEL_RATE_LIMIT": "0",
        **env,
    }
    egress = procs.make("egress", **options)
    await egress.start()
    await egress.wait_ready(timeout=60)
    return egress


async def results(kafka: str, prefix: str, count: int, timeout: float = 60) -> dict[str, Any]:
    records = await consume(
        kafka, [Topics(prefix).results], count=count, timeout=timeout, settle=1.0
    )
    by_id: dict[str, Any] = {}
    for record in records:
        event = value(record)
        assert event["data"]["commandId"] not in by_id, "more than one result for a command"
        by_id[event["data"]["commandId"]] = event
    return by_id


@pytest.fixture
async def sim(procs: ProcessFactory) -> Simulator:
    return await start_simulator(procs)


async def test_every_message_type_is_sent(procs, kafka, prefix, sim) -> None:
    await start_egress(procs, kafka, prefix, sim)
    commands = [
        send(f"cmd-{name}", contact(i), body) for i, (name, body) in enumerate(MESSAGES.items())
    ]
    await produce(kafka, Topics(prefix).send_message, commands)
    got = await results(kafka, prefix, len(commands))
    assert set(got) == {c["id"] for c in commands}
    sent = {(c["channelJid"], c["contactJid"]): c for c in commands}
    conversations = await sim.admin("GET", "messages")
    assert len(conversations) == len(commands)
    for conv in conversations:
        command = sent[(conv["channelJid"], conv["contactJid"])]
        [message] = conv["messages"]
        assert message["message"] == command["message"]
        assert message.get("media") == command.get("media")
        result = got[command["id"]]
        assert result["type"] == "im.eazy.command.succeeded"
        assert result["source"] == "/spotler-bridge/egress"
        data = result["data"]
        assert data["messageId"] == message["id"]
        assert (data["attempts"], data["command"], data["contactJid"]) == (
            1,
            "send-message",
            command["contactJid"],
        )
    requests = await sim.admin("GET", "requests")
    assert all(r["authorized"] for r in requests)


async def test_conversation_updates(procs, kafka, prefix, sim) -> None:
    await start_egress(procs, kafka, prefix, sim)
    topics = Topics(prefix)
    to = contact(1)
    await produce(kafka, topics.send_message, [send("hello", to)])
    await results(kafka, prefix, 1)
    updates = [
        {
            "id": "label",
            "channelJid": CHANNEL,
            "contactJid": to,
            "changes": {"labels": ["1580486175684@label.eazy.im"]},
        },
        {
            "id": "assign",
            "channelJid": CHANNEL,
            "contactJid": to,
            "changes": {"assignee": "john@mycompany.com"},
        },
        {"id": "close", "channelJid": CHANNEL, "contactJid": to, "changes": {"status": "CLOSED"}},
        {
            "id": "missing",
            "channelJid": CHANNEL,
            "contactJid": contact(99),
            "changes": {"status": "CLOSED"},
        },
    ]
    await produce(kafka, topics.update_conversation, updates)
    got = await results(kafka, prefix, 5)
    for ok in ("label", "assign", "close"):
        assert got[ok]["type"] == "im.eazy.command.succeeded", got[ok]
    assert got["close"]["data"]["response"]["status"] == "CLOSED"
    missing = got["missing"]["data"]
    assert got["missing"]["type"] == "im.eazy.command.failed"
    assert (missing["error"]["httpStatus"], missing["error"]["code"], missing["attempts"]) == (
        404,
        1009,
        1,
    )


async def test_invalid_commands_are_dead_lettered(procs, kafka, prefix, sim) -> None:
    await start_egress(procs, kafka, prefix, sim)
    topics = Topics(prefix)
    bad = [
        b"not json",
        b"[1, 2]",
        {"channelJid": CHANNEL, "contactJid": contact(1), **MESSAGES["text"]},  # no id
        send("bad-jid", "not-a-jid"),
        send("other-network", "d2b9f484-08ac-45a7-bbe0-f2f7d844bcb6@apple.eazy.im"),
        send("no-body", contact(1), {"message": {"type": "text"}}),
        send("unknown-type", contact(1), {"message": {"type": "hologram"}}),
        send("image-without-mime", contact(1), {"message": {"type": "image"}}),
        send("id-with-newline\n", contact(1)),
        send("extra-field", contact(1), {"message": {"type": "text", "body": "x"}, "priority": 1}),
    ]
    await produce(kafka, topics.send_message, bad)
    await produce(
        kafka,
        topics.update_conversation,
        [
            {
                "id": "bad-status",
                "channelJid": CHANNEL,
                "contactJid": contact(1),
                "changes": {"status": "DONE"},
            },
            {
                "id": "bad-field",
                "channelJid": CHANNEL,
                "contactJid": contact(1),
                "changes": {"colour": 1},
            },
        ],
    )
    got = await results(kafka, prefix, len(bad) + 2)
    assert len(got) == len(bad) + 2
    for result in got.values():
        assert result["type"] == "im.eazy.command.failed"
        assert result["data"]["reason"].startswith("invalid: ")
        assert result["data"]["attempts"] == 0
    assert "message.body" in got["no-body"]["data"]["reason"]
    letters = await consume(kafka, [topics.commands_deadletter], count=len(bad) + 2, settle=1.0)
    assert len(letters) == len(bad) + 2
    assert {value(r)["data"]["body"] for r in letters} >= {"not json", "[1, 2]"}
    assert await sim.admin("GET", "requests") == []  # nothing invalid was ever sent


def _printable(text: str) -> bool:
    return all(c.isprintable() for c in text)


async def test_every_command_with_an_id_string_gets_one_result_under_its_id(
    procs, kafka, prefix, sim
) -> None:
    """Issue 25 item 1: a command whose id holds a control character (or is too long) ends in
    one failed result whose ``data.commandId`` is the id as given and whose reason says what is
    wrong; its result id, key, headers and the log lines hold no control character. Ids with
    ``/`` or non-ASCII are valid and sent. Without a string id: the dead letter, named by place."""
    egress = await start_egress(procs, kafka, prefix, sim)
    topics = Topics(prefix)
    invalid = {
        "bad\u0007id": "invalid: id contains control characters",
        "tab\tand\nnewline": "invalid: id contains control characters",
        "bidi\u202eoverride": "invalid: id contains control characters",
        "x" * 201: "invalid: id longer than 200 characters",
    }
    valid = ["order/51616/shipped", "bestelling-ü-🚀-注文"]
    commands = [send(cid, contact(i)) for i, cid in enumerate([*invalid, *valid])]
    no_id = {"id": 7, "channelJid": CHANNEL, "contactJid": contact(9), **MESSAGES["text"]}
    await produce(kafka, topics.send_message, [*commands, no_id])
    records = await consume(kafka, [topics.results], count=len(commands) + 1, settle=1.0)
    assert len(records) == len(commands) + 1
    got = {value(r)["data"]["commandId"]: (r, value(r)) for r in records}
    assert set(got) >= {*invalid, *valid}
    for cid, reason in invalid.items():
        _, event = got[cid]
        assert (event["type"], event["data"]["reason"]) == ("im.eazy.command.failed", reason)
    for cid in valid:
        assert got[cid][1]["type"] == "im.eazy.command.succeeded", got[cid][1]
    [placed] = set(got) - {*invalid, *valid}  # the command without a string id: named by place
    assert placed.startswith(f"{topics.send_message}/")
    for record, event in got.values():
        assert _printable(event["id"]), event["id"]
        assert "\u202e" not in event["id"], event["id"]
        assert record.key is None or _printable(record.key.decode()), record.key
        assert all(_printable(k) and _printable(v.decode()) for k, v in record.headers)
    letters = await consume(kafka, [topics.commands_deadletter], count=len(invalid) + 1, settle=1)
    assert len(letters) == len(invalid) + 1
    await egress.stop()
    lines = egress.log_path.read_text().splitlines()
    assert lines
    assert all(_printable(line) for line in lines)
    assert sum(1 for line in lines if '"outcome":"deadletter"' in line) == len(invalid) + 1


@pytest.mark.parametrize(
    ("faults", "attempts"),
    [
        ({"failNext": 2, "errorStatus": 503, "errorCode": 1003}, 3),
        ({"failNext": 1, "errorStatus": 502, "errorCode": 1012}, 2),
        ({"failNext": 2, "errorStatus": 500, "errorCode": 1004}, 3),
    ],
)
async def test_retriable_errors_are_retried(procs, kafka, prefix, sim, faults, attempts) -> None:
    await sim.faults(**faults)
    await start_egress(procs, kafka, prefix, sim)
    await produce(kafka, Topics(prefix).send_message, [send("retry-me", contact(1))])
    got = await results(kafka, prefix, 1)
    assert got["retry-me"]["type"] == "im.eazy.command.succeeded"
    assert got["retry-me"]["data"]["attempts"] == attempts
    conv = await sim.admin("GET", "messages")
    assert len(conv[0]["messages"]) == 1


async def test_429_honours_retry_after(procs, kafka, prefix, sim) -> None:
    egress = await start_egress(procs, kafka, prefix, sim)
    await sim.faults(rate429=1.0, retryAfter=2)
    started = time.monotonic()
    await produce(kafka, Topics(prefix).send_message, [send("throttled", contact(1))])

    async def throttled() -> bool:
        return [r["status"] for r in await sim.admin("GET", "requests")] == [429]

    await eventually(throttled, what="the first call answered 429")
    await sim.faults()  # the platform recovers; the retry must still wait for Retry-After
    got = await results(kafka, prefix, 1)
    assert got["throttled"]["type"] == "im.eazy.command.succeeded"
    assert got["throttled"]["data"]["attempts"] == 2
    requests = await sim.admin("GET", "requests")
    times = [r["time"] for r in requests]
    assert [r["status"] for r in requests] == [429, 201]
    assert times[1] - times[0] >= 1.9
    assert time.monotonic() - started >= 2
    assert (
        'spotler_bridge_command_retries_total{command="send-message"} 1.0' in await egress.metrics()
    )


@pytest.mark.parametrize(
    ("header", "capped"),
    [("86400", 1), ("a year ahead", 1), ("1e9", 0)],  # 1e9: malformed, counts as absent
)
async def test_a_huge_retry_after_is_capped(procs, kafka, prefix, sim, header, capped) -> None:
    """Issue 25 item 2: a 429 asking for a day (or, as an HTTP date, a year) pauses the channel
    for BRIDGE_RETRY_AFTER_MAX (2 s here), counts the capped value and logs the value received
    once; a malformed value is absent (the 1 s floor, nothing capped)."""
    if header == "a year ahead":
        header = email.utils.formatdate(time.time() + 365 * 86400, usegmt=True)
    egress = await start_egress(procs, kafka, prefix, sim, BRIDGE_RETRY_AFTER_MAX="2")
    await sim.faults(failNext=1, errorStatus=429, retryAfterHeader=header)
    await produce(kafka, Topics(prefix).send_message, [send("capped", contact(1))])
    got = await results(kafka, prefix, 1, timeout=30)
    assert got["capped"]["type"] == "im.eazy.command.succeeded"
    assert got["capped"]["data"]["attempts"] == 2
    requests = await sim.admin("GET", "requests")
    assert [r["status"] for r in requests] == [429, 201]
    assert requests[1]["time"] - requests[0]["time"] >= (1.9 if capped else 0.9)
    metrics = await egress.metrics()
    assert f"spotler_bridge_retry_after_capped_total {float(capped)}" in metrics
    logged = [line for line in egress.logs().splitlines() if "egress.retry_after" in line]
    assert len(logged) == 1, logged
    assert header in logged[0]


@pytest.mark.parametrize(
    ("faults", "status", "code"),
    [
        ({"failNext": 1, "errorStatus": 400, "errorCode": 1005}, 400, 1005),
        ({"failNext": 1, "errorStatus": 404, "errorCode": 1009}, 404, 1009),
        ({"failNext": 1, "errorStatus": 400, "errorCode": 1015}, 400, 1015),
    ],
)
async def test_permanent_errors_fail_at_once(
    procs, kafka, prefix, sim, faults, status, code
) -> None:
    await sim.faults(**faults)
    await start_egress(procs, kafka, prefix, sim)
    await produce(kafka, Topics(prefix).send_message, [send("doomed", contact(1))])
    result = (await results(kafka, prefix, 1))["doomed"]
    assert result["type"] == "im.eazy.command.failed"
    error = result["data"]["error"]
    assert (error["httpStatus"], error["code"], result["data"]["attempts"]) == (status, code, 1)
    assert error["traceId"]
    assert len(await sim.admin("GET", "requests")) == 1


async def test_a_channel_scoped_key_cannot_update_a_conversation(procs, kafka, prefix) -> None:
    """ "Update a conversation" is labelled assistant in the reference; a channel-scoped key gets
    1002 (Access denied) at once: one API call, no retry, and the result says 1002."""
    keys = f'[{{"key": "scoped", "scope": "channel", "channels": ["{CHANNEL}"]}}]'
    sim = await start_simulator(procs, SIMULATOR_API_KEYS=keys)
    await start_egress(procs, kafka, prefix, sim, BRIDGE_SPOTLER_API_KEY="scoped")
    update = {
        "id": "close-it",
        "channelJid": CHANNEL,
        "contactJid": contact(1),
        "changes": {"status": "CLOSED"},
    }
    await produce(kafka, Topics(prefix).update_conversation, [update])
    result = (await results(kafka, prefix, 1))["close-it"]
    assert result["type"] == "im.eazy.command.failed"
    assert result["data"]["error"]["code"] == 1002
    assert result["data"]["attempts"] == 1
    requests = await sim.admin("GET", "requests")
    assert [(r["method"], r["code"]) for r in requests] == [("PATCH", 1002)]


async def test_wrong_api_key_is_401_without_retry(procs, kafka, prefix, sim) -> None:
    await start_egress(procs, kafka, prefix, sim, BRIDGE_SPOTLER_API_KEY="wrong")
    await produce(kafka, Topics(prefix).send_message, [send("unauthorized", contact(1))])
    result = (await results(kafka, prefix, 1))["unauthorized"]
    assert result["data"]["error"]["httpStatus"] == 401
    assert result["data"]["error"]["code"] == 1001
    assert result["data"]["attempts"] == 1


async def test_order_within_a_conversation_while_others_proceed(procs, kafka, prefix, sim) -> None:
    """A slow conversation keeps its order and does not hold up the others."""
    slow = contact(1)
    await sim.faults(latencyMs=1500, contacts=[slow])
    await start_egress(procs, kafka, prefix, sim, BRIDGE_EGRESS_CONCURRENCY="8")
    commands = [send(f"slow-{i}", slow) for i in range(3)]
    commands += [send(f"fast-{c}-{i}", contact(c)) for i in range(5) for c in range(2, 6)]
    await produce(kafka, Topics(prefix).send_message, commands)
    got = await results(kafka, prefix, len(commands))
    assert all(r["type"] == "im.eazy.command.succeeded" for r in got.values())
    times = {cid: r["time"] for cid, r in got.items()}
    # every fast conversation finished before the slow one got past its first command
    assert max(t for c, t in times.items() if c.startswith("fast")) < times["slow-1"]
    for conv in await sim.admin("GET", "messages"):
        ids = [m["id"] for m in conv["messages"]]
        expected = [
            got[c["id"]]["data"]["messageId"]
            for c in commands
            if c["contactJid"] == conv["contactJid"]
        ]
        assert ids == expected  # the platform received them in the order they were produced


async def test_restart_resumes_without_losing_commands(procs, kafka, prefix, sim) -> None:
    """Stop egress mid-stream and start it again: every command gets exactly one result."""
    await sim.faults(latencyMs=100)
    egress = await start_egress(procs, kafka, prefix, sim, BRIDGE_EGRESS_CONCURRENCY="2")
    commands = [send(f"c-{i}", contact(i % 7)) for i in range(120)]  # 32 taken ahead at most
    await produce(kafka, Topics(prefix).send_message, commands)

    async def some_sent() -> bool:
        return len(await sim.admin("GET", "requests")) >= 5

    await eventually(some_sent, what="egress sending")
    assert await egress.stop() == 0  # finishes what it took, commits
    first = await results(kafka, prefix, 1, timeout=5)
    assert 0 < len(first) < len(commands)
    await start_egress(procs, kafka, prefix, sim)
    got = await results(kafka, prefix, len(commands))
    assert set(got) == {c["id"] for c in commands}
    sent = sum(len(c["messages"]) for c in await sim.admin("GET", "messages"))
    assert sent == len(commands)  # a clean stop commits what it finished: nothing sent twice


async def test_circuit_breaker_opens_and_recovers(procs, kafka, prefix, sim) -> None:
    await sim.faults(errorRate=1.0, errorStatus=503)
    egress = await start_egress(
        procs,
        kafka,
        prefix,
        sim,
        BRIDGE_CIRCUIT_FAILURES="3",
        BRIDGE_CIRCUIT_OPEN_SECONDS="1",
        BRIDGE_EGRESS_MAX_ATTEMPTS="50",
        BRIDGE_EGRESS_BACKOFF_MAX="0.1",
    )
    await produce(
        kafka, Topics(prefix).send_message, [send(f"cb-{i}", contact(i)) for i in range(5)]
    )

    async def circuit_open() -> bool:
        return "spotler_bridge_circuit_state 2.0" in await egress.metrics()

    await eventually(circuit_open, timeout=10, what="circuit open")
    calls_when_open = len(await sim.admin("GET", "requests"))
    await asyncio.sleep(2.5)  # a measurement window (two open periods), not a synchronisation
    # while open, only single probes reach the platform, not a retry storm
    assert len(await sim.admin("GET", "requests")) - calls_when_open <= 4
    await sim.faults()
    got = await results(kafka, prefix, 5)
    assert all(r["type"] == "im.eazy.command.succeeded" for r in got.values())
    assert "spotler_bridge_circuit_state 0.0" in await egress.metrics()


async def test_expired_and_cloudevent_commands(procs, kafka, prefix, sim) -> None:
    await start_egress(procs, kafka, prefix, sim, BRIDGE_EGRESS_MAX_AGE="60")
    topics = Topics(prefix)
    old = int((time.time() - 3600) * 1000)
    await produce(kafka, topics.send_message, [send("too-old", contact(1))], timestamp_ms=old)
    wrapped = {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "/orders",
        "type": "order.shipped",
        "data": {"channelJid": CHANNEL, "contactJid": contact(2), **MESSAGES["text"]},
    }
    await produce(kafka, topics.send_message, [wrapped])
    got = await results(kafka, prefix, 2)
    assert got["too-old"]["data"]["reason"] == "expired"
    assert got["ce-1"]["type"] == "im.eazy.command.succeeded"
    assert [c["contactJid"] for c in await sim.admin("GET", "messages")] == [contact(2)]


async def test_results_match_receipts_from_ingress(procs, kafka, prefix) -> None:
    """The messageId in a result is the id the receipt webhooks carry (the full loop)."""
    ingress_port_env = {"BRIDGE_WEBHOOK_TOKENS": "loop-token-0123456789"}
    bridge = procs.make(
        "serve",
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS=kafka,
        BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_SPOTLER_API_KEY="sim-key",
        BRIDGE_EGRESS_GROUP_ID=f"{prefix}-{uuid.uuid4().hex[:6]}",
        **ingress_port_env,
    )
    sim = await start_simulator(
        procs,
        SIMULATOR_WEBHOOK_URL=f"{bridge.url}/webhooks",
        SIMULATOR_WEBHOOK_HEADERS='{"Authorization": "Bearer loop-token-0123456789"}',
    )
    bridge.env["BRIDGE_SPOTLER_API_URL"] = sim.api_url
    await bridge.start()
    await bridge.wait_ready(timeout=60)
    await produce(kafka, Topics(prefix).send_message, [send("loop-1", contact(1))])
    result = (await results(kafka, prefix, 1))["loop-1"]
    message_id = result["data"]["messageId"]
    receipts = await consume(kafka, [f"{prefix}.events.receipt"], count=2, timeout=30)
    statuses = sorted(value(r)["data"]["receipt"]["status"] for r in receipts)
    assert statuses == ["delivered", "read"]
    assert {value(r)["data"]["receipt"]["messageId"] for r in receipts} == {message_id}
    assert {r.key for r in receipts} == {f"{CHANNEL}/{contact(1)}".encode()}
