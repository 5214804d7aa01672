"""Ingress end to end: a real ``bridge ingress`` process, a real HTTP client, the real broker."""

from __future__ import annotations

import asyncio
import base64
import socket
import time

import aiohttp
import orjson
import pytest

from bridge.contract.records import EVENT_TYPES, Topics
from tests import samples
from tests.conftest import parse_cloudevent
from tests.integration.procs import ProcessFactory, consume, free_port, post, value

pytestmark = pytest.mark.kafka


async def start_ingress(procs: ProcessFactory, kafka: str, prefix: str, **env: str):
    bridge = procs.make(
        "ingress",
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS=kafka,
        BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_WEBHOOK_TOKENS="tok-0123456789abcdef,tok2-0123456789abcdef",
        **env,
    )
    await bridge.start()
    await bridge.wait_ready()
    return bridge


async def test_message_round_trip(procs, kafka, prefix, event_schema) -> None:
    """The confirmed message body becomes one record with every field right."""
    bridge = await start_ingress(procs, kafka, prefix)
    raw = orjson.dumps(samples.CONFIRMED_MESSAGE)
    before = time.time()
    status, answer = await post(bridge.url + "/webhooks", raw)
    assert status == 200, answer
    assert answer["status"] == "published"

    [record] = await consume(kafka, [f"{prefix}.events.message"], count=1, settle=1.0)
    channel = samples.CONFIRMED_MESSAGE["to"]
    contact = samples.CONFIRMED_MESSAGE["from"]["jid"]
    assert record.key == f"{channel}/{contact}".encode()
    assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
    event = value(record)
    event_schema.validate(event)
    assert event["id"] == answer["id"] == samples.message_event_id(samples.CONFIRMED_MESSAGE)
    assert event["source"] == f"/channels/{channel}"
    assert event["type"] == "im.eazy.webhook.message"
    assert event["subject"] == contact
    assert event["time"] == "2022-09-19T20:35:18.000Z"
    data = event["data"]
    assert data["payload"] == samples.CONFIRMED_MESSAGE
    assert raw in record.value
    assert data["message"]["body"] == "Thank you "
    assert data["direction"] == "inbound"
    received = (
        time.mktime(time.strptime(data["receivedAt"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    )
    assert before - 2 <= received <= time.time() + 2
    ce = parse_cloudevent(record.headers, record.key, record.value)
    assert ce.get_id() == event["id"]
    assert ce.get_source() == event["source"]


async def test_every_event_type_reaches_its_topic(procs, kafka, prefix, event_schema) -> None:
    bridge = await start_ingress(procs, kafka, prefix)
    bodies = list(samples.other_events().values())
    bodies += [samples.message_body(kind) for kind in samples.MESSAGE_PARTS]
    bodies.append({"type": "brand_new_event", "to": samples.CHANNEL})
    for body in bodies:
        status, _ = await post(bridge.url + "/webhooks", orjson.dumps(body))
        assert status == 200
    topics = Topics(prefix)
    records = await consume(kafka, topics.all_event_topics(), count=len(bodies), settle=1.0)
    assert len(records) == len(bodies)
    by_topic: dict[str, int] = {}
    for record in records:
        by_topic[record.topic] = by_topic.get(record.topic, 0) + 1
        event_schema.validate(value(record))
    expected = {f"{prefix}.events.{t}": 1 for t in EVENT_TYPES if t != "message"}
    expected[f"{prefix}.events.message"] = len(samples.MESSAGE_PARTS)
    expected[f"{prefix}.events.unknown"] = 1
    assert by_topic == expected


async def test_rejections_publish_nothing(procs, kafka, prefix) -> None:
    """401 and 413 publish nothing; the one good delivery is the only record."""
    bridge = await start_ingress(procs, kafka, prefix, BRIDGE_MAX_BODY_BYTES="2048")
    url = bridge.url + "/webhooks"
    good = orjson.dumps(samples.message_body("text"))
    assert (await post(url, good, token=None))[0] == 401
    assert (await post(url, good, token="nope"))[0] == 401
    big = orjson.dumps({"type": "message", "pad": "x" * 4096})
    assert (await post(url, big))[0] == 413
    assert (await post(url, good, token="tok2-0123456789abcdef"))[0] == 200
    records = await consume(kafka, Topics(prefix).all_event_topics(), count=1, settle=2.0)
    assert [r.topic for r in records] == [f"{prefix}.events.message"]
    metrics = await bridge.metrics()
    assert 'spotler_bridge_webhook_rejections_total{reason="unauthorized"} 2.0' in metrics
    assert 'spotler_bridge_webhook_rejections_total{reason="too_large"} 1.0' in metrics


async def test_duplicate_is_published_once(procs, kafka, prefix) -> None:
    bridge = await start_ingress(procs, kafka, prefix)
    raw = orjson.dumps(samples.message_body("location"))
    answers = [await post(bridge.url + "/webhooks", raw) for _ in range(3)]
    assert [(s, a["status"]) for s, a in answers] == [
        (200, "published"),
        (200, "duplicate"),
        (200, "duplicate"),
    ]
    records = await consume(kafka, [f"{prefix}.events.message"], count=1, settle=2.0)
    assert len(records) == 1
    metrics = await bridge.metrics()
    assert 'spotler_bridge_webhooks_total{event="message",outcome="duplicate"} 2.0' in metrics


async def test_dead_letters_keep_the_raw_bytes(procs, kafka, prefix, deadletter_schema) -> None:
    bridge = await start_ingress(procs, kafka, prefix)
    bodies = [b"plain text", b"\xff\xfe\x00binary", b"[1,2,3]", b'{"no": "type"}']
    for raw in bodies:
        assert (await post(bridge.url + "/webhooks", raw))[0] == 200
    records = await consume(kafka, [f"{prefix}.events.deadletter"], count=len(bodies), settle=1.0)
    assert len(records) == len(bodies)
    recovered = set()
    for record in records:
        event = value(record)
        deadletter_schema.validate(event)
        assert record.key is None
        data = event["data"]
        body = (
            base64.b64decode(data["body"])
            if data["bodyEncoding"] == "base64"
            else data["body"].encode()
        )
        recovered.add(body)
        assert data["reason"]
    assert recovered == set(bodies)


async def test_spool_takes_deliveries_when_kafka_is_unreachable(procs, kafka, prefix) -> None:
    """No broker at the address: deliveries are spooled (200), and 503 once the spool is full."""
    dead = f"127.0.0.1:{free_port()}"
    bridge = procs.make(
        "ingress",
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS=dead,
        BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_WEBHOOK_TOKENS="tok-0123456789abcdef",
        BRIDGE_PUBLISH_TIMEOUT="0.5",
        BRIDGE_SPOOL_MAX_BYTES=str(1024 * 1024),
        BRIDGE_MAX_BODY_BYTES=str(128 * 1024),  # its largest record fits the 1 MiB spool
    )
    await bridge.start()
    await bridge.wait_ready(path="/healthz")
    async with aiohttp.ClientSession() as http, http.get(bridge.ops_url + "/readyz") as resp:
        assert resp.status == 503  # never reached Kafka: not ready, yet nothing offered is lost
    status, answer = await post(
        bridge.url + "/webhooks", orjson.dumps(samples.message_body("text"))
    )
    assert (status, answer["status"]) == (200, "spooled")
    statuses = []
    for _ in range(40):  # 40 x 64 KiB > 1 MiB
        body = samples.message_body("text")
        body["message"]["body"] = "x" * 64 * 1024
        statuses.append((await post(bridge.url + "/webhooks", orjson.dumps(body)))[0])
    assert statuses.count(200) >= 5  # each record holds the 64 KiB body twice
    assert statuses[-1] == 503
    metrics = await bridge.metrics()
    assert 'spotler_bridge_webhooks_total{event="message",outcome="unavailable"}' in metrics
    assert "spotler_bridge_spool_records " in metrics
    assert await bridge.stop() == 0


async def test_spooled_records_reach_kafka_after_restart(procs, kafka, prefix) -> None:
    """What was spooled while Kafka was unreachable is drained by the next process."""
    dead = f"127.0.0.1:{free_port()}"
    first = procs.make(
        "ingress",
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS=dead,
        BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_WEBHOOK_TOKENS="tok-0123456789abcdef",
        BRIDGE_PUBLISH_TIMEOUT="0.3",
        BRIDGE_SHUTDOWN_TIMEOUT="4",
    )
    await first.start()
    await first.wait_ready(path="/healthz")
    bodies = [samples.message_body("text") for _ in range(25)]
    for body in bodies:
        assert (await post(first.url + "/webhooks", orjson.dumps(body)))[1]["status"] == "spooled"
    assert await first.stop() == 0
    second = procs.make(
        "ingress",
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS=kafka,
        BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_WEBHOOK_TOKENS="tok-0123456789abcdef",
        BRIDGE_SPOOL_DIR=first.env["BRIDGE_SPOOL_DIR"],
    )
    await second.start()
    await second.wait_ready()
    records = await consume(kafka, [f"{prefix}.events.message"], count=25, settle=1.0)
    # one conversation: drained in the order the deliveries were acknowledged
    assert [value(r)["data"]["message"]["id"] for r in records] == [
        b["message"]["id"] for b in bodies
    ]
    assert len(records) == 25


async def test_slow_headers_are_cut(procs, kafka, prefix) -> None:
    """A client that never finishes its request headers is disconnected by the server."""
    bridge = await start_ingress(procs, kafka, prefix, BRIDGE_HTTP_READ_TIMEOUT="1")
    loop = asyncio.get_running_loop()
    sock = socket.create_connection(("127.0.0.1", bridge.http_port))
    sock.setblocking(False)
    await loop.sock_sendall(sock, b"POST /webhooks HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    data = await asyncio.wait_for(loop.sock_recv(sock, 1024), timeout=20)
    sock.close()
    assert data == b""  # closed without an answer
    assert time.monotonic() - started < 15


async def test_sigterm_exits_cleanly_and_readiness_flips(procs, kafka, prefix) -> None:
    bridge = await start_ingress(procs, kafka, prefix)
    assert (await post(bridge.url + "/webhooks", orjson.dumps(samples.message_body("text"))))[
        0
    ] == 200
    assert await bridge.stop() == 0
    assert "shutdown.requested" in bridge.logs()
    assert "kafka.producer_closed" in bridge.logs()


async def test_info_log_shows_failures_and_a_summary_not_each_success(procs, kafka, prefix) -> None:
    """At info (the default) a plain success writes no line of its own; a refused delivery
    does; the summary lines, the last at shutdown, add up to every request sent (issue 24)."""
    bridge = await start_ingress(procs, kafka, prefix)
    url = bridge.url + "/webhooks"
    bodies = [orjson.dumps(samples.message_body("text", message_id=f"s{n}")) for n in range(20)]
    for body in bodies:
        assert (await post(url, body))[0] == 200
    again = bodies[0]  # the same bytes: the same event id
    assert [(await post(url, again))[1]["status"] for _ in range(2)] == ["duplicate"] * 2
    for _ in range(3):
        assert (await post(url, again, token="wrong-token"))[0] == 401
    assert await bridge.stop() == 0

    lines = [orjson.loads(line) for line in bridge.log_path.read_bytes().splitlines()]
    deliveries = [line for line in lines if line.get("event") == "webhook"]
    assert [(d["level"], d["outcome"]) for d in deliveries] == [("info", "rejected")] * 3
    summaries = [line for line in lines if line.get("event") == "webhook.summary"]
    assert sum(s["deliveries"] for s in summaries) == 25
    totals: dict[str, int] = {}
    for summary in summaries:
        assert summary["level"] == "info"
        for outcome, by_type in summary["outcomes"].items():
            totals[outcome] = totals.get(outcome, 0) + sum(by_type.values())
    assert totals == {"published": 20, "duplicate": 2, "rejected": 3}
