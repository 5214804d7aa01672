"""Egress against the simulator's records: what reached the platform, when, and as which bytes.

A ``bridge egress`` process on the real broker calls the simulator process; expectations come
from DESIGN.md ("Egress") and the reference's "Messages" tables and examples, transcribed here.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson
import pytest

from bridge.contract.records import Topics
from tests.integration.procs import (
    BridgeProcess,
    ProcessFactory,
    Simulator,
    eventually,
    produce,
    start_simulator,
)
from tests.integration.test_egress import CHANNEL, contact, results, send, start_egress

pytestmark = pytest.mark.kafka

OTHER = "31687654321@whatsapp.eazy.im"


@pytest.fixture
async def sim(procs: ProcessFactory) -> Simulator:
    return await start_simulator(procs)


def calls_to(requests: list[dict[str, Any]], channel: str) -> list[dict[str, Any]]:
    return [r for r in requests if r["path"].startswith(f"/v3/channels/{channel}/")]


async def test_a_429_pauses_its_channel_until_retry_after(procs, kafka, prefix, sim) -> None:
    """20 conversations on one channel; one call gets a single 429 with ``Retry-After: 2``:
    no call to that channel arrives in the next 2 s (the channel's bucket is paused, not only
    the command that got the 429), while another channel is called meanwhile; then every
    command succeeds. (A channel limit of 1/s spaces the calls, so none is in flight when the
    429 comes back, and without the pause the next call would come a second later.)"""
    on_channel = [contact(i) for i in range(20)]  # the fault hits the channel's first call
    await sim.faults(failNext=1, errorStatus=429, retryAfter=2, contacts=on_channel)
    await start_egress(procs, kafka, prefix, sim, BRIDGE_EGRESS_CHANNEL_RATE_LIMIT="1")
    commands = [send(f"a-{i}", to) for i, to in enumerate(on_channel)]
    commands += [{**send(f"b-{i}", contact(100 + i)), "channelJid": OTHER} for i in range(5)]
    await produce(kafka, Topics(prefix).send_message, commands)
    got = await results(kafka, prefix, len(commands), timeout=90)
    assert all(r["type"] == "im.eazy.command.succeeded" for r in got.values())
    assert sorted(r["data"]["attempts"] for r in got.values()) == [1] * 24 + [2]
    requests = await sim.admin("GET", "requests")
    [limited] = [r for r in requests if r["status"] == 429]
    assert limited == calls_to(requests, CHANNEL)[0]
    window_end = limited["time"] + 2.0  # the bridge got the 429 after the simulator answered it
    later = [r for r in calls_to(requests, CHANNEL) if r["received"] > limited["received"]]
    assert later, "no call to the channel after the 429"
    early = [round(r["received"] - limited["time"], 3) for r in later if r["received"] < window_end]
    assert early == [], f"calls to the paused channel {early} s after the 429"
    other = calls_to(requests, OTHER)
    assert any(limited["time"] < r["received"] < window_end for r in other), "other channel paused"
    assert len(calls_to(requests, CHANNEL)) == 21  # 20 sends and one retry


async def test_percent_encoded_jids_stay_encoded_on_the_wire(procs, kafka, prefix, sim) -> None:
    """JIDs holding ``;``, ``=``, ``,`` and ``:`` reach the platform percent-encoded in the raw
    request path of both calls (yarl must not decode them back), and decode to the JIDs."""
    channel, to = "shop:main@web.eazy.im", "a;b=c,d:e@web.eazy.im"
    encoded_channel, encoded_to = "shop%3Amain@web.eazy.im", "a%3Bb%3Dc%2Cd%3Ae@web.eazy.im"
    await start_egress(procs, kafka, prefix, sim)
    topics = Topics(prefix)
    await produce(kafka, topics.send_message, [{**send("enc-1", to), "channelJid": channel}])
    assert (await results(kafka, prefix, 1))["enc-1"]["type"] == "im.eazy.command.succeeded"
    update = {
        "id": "enc-2",
        "channelJid": channel,
        "contactJid": to,
        "changes": {"status": "CLOSED"},
    }
    await produce(kafka, topics.update_conversation, [update])
    got = await results(kafka, prefix, 2)
    assert got["enc-2"]["type"] == "im.eazy.command.succeeded", got["enc-2"]
    requests = await sim.admin("GET", "requests")
    assert [(r["method"], r["rawPath"]) for r in requests] == [
        ("POST", f"/v3/channels/{encoded_channel}/messages/{encoded_to}"),
        ("PATCH", f"/v3/channels/{encoded_channel}/conversations/{encoded_to}"),
    ]
    assert {r["path"] for r in requests} == {
        f"/v3/channels/{channel}/messages/{to}",
        f"/v3/channels/{channel}/conversations/{to}",
    }


# The reference's "Messages" tables, one body per table with every element it lists (values of
# the types the table gives), then the "Send messages" example and the four "WhatsApp examples"
# verbatim. Keys stay in the reference's order, so any reordering shows as different bytes.
REFERENCE_MESSAGES: dict[str, str] = {
    "Audio": '{"mimeType": "audio/ogg", "type": "audio"}',
    "Contact": '{"contacts": [{"name": {"formatted_name": "Jan Jansen"}}], "type": "contact"}',
    "Document": '{"fileName": "ticket.pdf", "mimeType": "application/pdf", "title": "Your '
    'ticket", "type": "document"}',
    "Gif": '{"caption": "Caption text message", "mimeType": "video/mp4", "type": "gif"}',
    "Image": '{"caption": "Caption text message", "mimeType": "image/jpeg", "type": "image"}',
    "Location": '{"latitude": 52.370216, "longitude": 4.895168, "name": "Amsterdam", "type": '
    '"location", "url": "https://www.amsterdam.nl"}',
    "Voice message": '{"mimeType": "audio/ogg; codecs=opus", "type": "ptt"}',
    "Sticker": '{"mimeType": "image/webp", "type": "sticker"}',
    # "template array": the structure is not in the reference; this is the simulator's reading
    # (rules.ASSUMPTIONS["template-structure"]) of its own APPROVED example template.
    "Template": '{"template": {"name": "delivery_notification", "language": "en", "parameters":'
    ' ["Jan", "51616"]}, "type": "template"}',
    "Text": '{"body": "Have a nice day! \\u00e9\\u00e8 \\ud83d\\ude00", "type": "text"}',
    "Video": '{"caption": "Caption text message", "mimeType": "video/mp4", "type": "video"}',
    "Send messages": '{"body": "Have a nice day!", "type": "text"}',
    "Button message": """{"interactive": {"components": {"body": {"text": "How can we help
    you?", "type": "text"}, "buttons": [{"reply": {"payload": "button_id_1", "title":
    "Option 1"}, "type": "reply"}, {"reply": {"payload": "button_id_2", "title":
    "Option 2"}, "type": "reply"}]}, "type": "button"}, "type": "interactive"}""",
    "List message": """{"interactive": {"components": {"body": {"text": "How can we help
    you?", "type": "text"}, "list": {"title": "Make a choice", "sections": [{"rows": [
    {"description": "Optional description", "payload": "button_id_1", "title": "Option 2"},
    {"description": "Optional description", "payload": "button_id_2", "title": "Option 2"},
    {"description": "Optional description", "payload": "button_id_3", "title": "Option 3"}],
    "title": "Section 1"}]}}, "type": "list"}, "type": "interactive"}""",
    "Single product message": """{"interactive": {"components": {"body": {"text": "Here is a
    suggested product for you", "type": "text"}, "product": {"productId": "1105524"}},
    "type": "product"}, "type": "interactive"}""",
    "Multi product message": """{"interactive": {"components": {"header": {"text": "Make a
    selection", "type": "text"}, "body": {"text": "Here are some suggested products for you",
    "type": "text"}, "productList": {"sections": [{"items": [{"productId": "1105521"},
    {"productId": "1105522"}, {"productId": "1105523"}], "title": "Our Collection"}]}},
    "type": "productList"}, "type": "interactive"}""",
}


def _one_line(text: str) -> str:
    """The examples above are wrapped for the line limit; inside strings a wrap is one space."""
    return re.sub(r"\s*\n\s*", " ", text)


async def test_reference_bodies_reach_the_platform_byte_identical(
    procs, kafka, prefix, sim
) -> None:
    """A body copied from each "Messages" table (and each example) passes egress validation,
    is sent once, and the simulator receives ``{"message": <it>}`` byte for byte as the bridge
    serialises JSON (compact, keys in the given order, numbers and text unchanged)."""
    await start_egress(procs, kafka, prefix, sim)
    messages = {name: _one_line(text) for name, text in REFERENCE_MESSAGES.items()}
    raw_commands: list[bytes] = []
    to: dict[str, str] = {}
    for i, (name, text) in enumerate(messages.items()):
        to[name] = contact(i)
        head = f'{{"id": "ref-{i}", "channelJid": "{CHANNEL}", "contactJid": "{to[name]}", '
        raw_commands.append(f'{head}"message": {text}}}'.encode())
    await produce(kafka, Topics(prefix).send_message, raw_commands)
    got = await results(kafka, prefix, len(messages))
    failed = {cid: r["data"] for cid, r in got.items() if r["type"] != "im.eazy.command.succeeded"}
    assert failed == {}
    requests = {r["path"].rsplit("/", 1)[1]: r for r in await sim.admin("GET", "requests")}
    assert len(requests) == len(messages)
    for name, text in messages.items():
        message = orjson.loads(text)
        expected = b'{"message":' + orjson.dumps(message) + b"}"
        request = requests[to[name]]
        assert request["status"] == 201, (name, request)
        assert request["body"] == {"message": message}, name
        assert list(request["body"]["message"]) == list(message), name  # key order kept
        assert request["bodySha256"] == hashlib.sha256(expected).hexdigest(), name


def lag_total(metrics: str, topic: str) -> float | None:
    """The sum of ``spotler_bridge_consumer_lag`` over ``topic``'s partitions (None: no series)."""
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("spotler_bridge_consumer_lag{") and f'topic="{topic}"' in line
    ]
    return sum(values) if values else None


async def test_lag_is_true_while_the_breaker_pauses_the_partitions(
    procs, kafka, prefix, sim: Simulator
) -> None:
    """With the platform failing, the breaker opens and pauses the partitions; N more commands
    then show as consumer lag (every uncommitted command, from the broker's offsets), while
    no call reaches the platform; when the platform recovers the lag drains to 0."""
    await sim.faults(errorRate=1.0, errorStatus=503)
    egress: BridgeProcess = await start_egress(
        procs,
        kafka,
        prefix,
        sim,
        BRIDGE_CIRCUIT_FAILURES="3",
        BRIDGE_CIRCUIT_OPEN_SECONDS="4",
        BRIDGE_EGRESS_MAX_ATTEMPTS="100",
        BRIDGE_EGRESS_BACKOFF_MAX="0.1",
    )
    topic = Topics(prefix).send_message
    await produce(kafka, topic, [send(f"trip-{i}", contact(i)) for i in range(3)])

    async def circuit_open() -> bool:
        return "spotler_bridge_circuit_state 2.0" in await egress.metrics()

    await eventually(circuit_open, timeout=20, what="the breaker open")
    n = 50
    await produce(kafka, topic, [send(f"more-{i}", contact(10 + i)) for i in range(n)])

    async def lag_shows_all() -> bool:
        return lag_total(await egress.metrics(), topic) == 3 + n

    await eventually(lag_shows_all, timeout=20, what=f"consumer lag {3 + n}")
    metrics = await egress.metrics()
    assert "spotler_bridge_circuit_state 0.0" not in metrics  # still not closed
    calls = await sim.admin("GET", "requests")
    assert all(r["status"] == 503 for r in calls)
    ids = [{k.lower(): v for k, v in r["headers"].items()}["x-request-id"] for r in calls]
    assert not any(i.startswith("more-") for i in ids)  # paused: none of the N was called
    await sim.faults()  # the platform recovers: a probe closes the breaker, work resumes
    got = await results(kafka, prefix, 3 + n, timeout=60)
    assert len(got) == 3 + n
    assert all(r["type"] == "im.eazy.command.succeeded" for r in got.values())

    async def lag_drained() -> bool:
        return lag_total(await egress.metrics(), topic) == 0

    await eventually(lag_drained, timeout=20, what="consumer lag back to 0")
