"""The simulator's webhooks over real HTTP: configuration CRUD and emission to a real receiver."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

SimClient = TestClient[web.Request, web.Application]

AUTH = {"Authorization": "Bearer sim-key"}
CHANNEL = "31612345678@whatsapp.eazy.im"
CONTACT = "31611111111@whatsapp.eazy.im"
SEND = f"/v3/channels/{CHANNEL}/messages/{CONTACT}"
CONVERSATION = f"/v3/channels/{CHANNEL}/conversations/{CONTACT}"
WEBHOOKS = f"/v3/channels/{CHANNEL}/webhooks"
TEXT = {"message": {"body": "Have a nice day!", "type": "text"}}
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"


async def register(sim: SimClient, url: str, events: list[str], **extra: Any) -> dict[str, Any]:
    resp = await sim.post(WEBHOOKS, json={"events": events, "url": url, **extra}, headers=AUTH)
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_webhook_crud(sim: SimClient) -> None:
    """Create (201), list (200), update (200, updatedAt set) and delete (204) a webhook."""
    created = await register(sim, "https://your.company.com/webhook", ["message"])
    assert set(created) == {
        "assistant", "cipherKey", "createdAt", "enabled", "events",
        "headers", "id", "updatedAt", "url",
    }  # fmt: skip
    assert uuid.UUID(created["id"]).version == 4
    assert created["enabled"] is True
    assert created["headers"] is None
    assert created["updatedAt"] is None
    assert re.fullmatch(ISO, created["createdAt"])
    second = await register(
        sim,
        "https://your.company.com/webhook-receipt",
        ["receipt"],
        headers={"Authorization": "Bearer x"},
    )
    listed = await (await sim.get(WEBHOOKS, headers=AUTH)).json()
    assert listed == [created, second]

    resp = await sim.patch(
        f"{WEBHOOKS}/{created['id']}", json={"url": "https://your.company.com/new"}, headers=AUTH
    )
    assert resp.status == 200
    updated = await resp.json()
    assert updated["url"] == "https://your.company.com/new"
    assert updated["events"] == ["message"]
    assert re.fullmatch(ISO, updated["updatedAt"])

    resp = await sim.delete(f"{WEBHOOKS}/{created['id']}", headers=AUTH)
    assert resp.status == 204
    assert [h["id"] for h in await (await sim.get(WEBHOOKS, headers=AUTH)).json()] == [second["id"]]
    resp = await sim.delete(f"{WEBHOOKS}/{created['id']}", headers=AUTH)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == 1009
    other = "31699999999@whatsapp.eazy.im"
    assert await (await sim.get(f"/v3/channels/{other}/webhooks", headers=AUTH)).json() == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"events": ["message"]}, "url: required"),
        ({"url": "https://x.example/h"}, "events: required"),
        ({"events": ["messages"], "url": "https://x.example/h"}, "events[0]: unknown event"),
        ({"events": [], "url": "https://x.example/h"}, "events: must be a non-empty"),
        ({"events": ["message"], "url": "ftp://x.example/h"}, "url: must be an http(s) URL"),
        ({"events": ["message"], "url": "https://x.example/h", "headers": {"a": 1}}, "headers.a"),
        ({"events": "message", "url": "https://x.example/h"}, "events: must be a non-empty array"),
    ],
)
async def test_invalid_webhook_is_400_1005(
    sim: SimClient, body: dict[str, Any], expected: str
) -> None:
    """Events must be the documented names ("Events"), the URL http(s), headers strings."""
    resp = await sim.post(WEBHOOKS, json=body, headers=AUTH)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == 1005
    assert expected in error["message"]


async def test_duplicate_webhook_is_409_1014(sim: SimClient) -> None:
    """The same URL for an overlapping event is 409/1014; for other events it is fine."""
    await register(sim, "https://x.example/h", ["message", "receipt"])
    resp = await sim.post(
        WEBHOOKS, json={"events": ["receipt"], "url": "https://x.example/h"}, headers=AUTH
    )
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == 1014
    await register(sim, "https://x.example/h", ["label"])


async def test_send_emits_delivered_then_read_receipts_with_headers(
    sim: SimClient, receiver: Any, eventually: Any
) -> None:
    """A sent message gets receipts delivered then read, POSTed with the webhook's headers."""
    await register(sim, receiver.url, ["receipt"], headers={"Authorization": "Bearer hook-secret"})
    message_id = (await (await sim.post(SEND, json=TEXT, headers=AUTH)).json())["id"]
    await eventually(lambda: len(receiver.bodies("receipt")) == 2)
    delivered, read = receiver.bodies("receipt")
    for body, status in ((delivered, "delivered"), (read, "read")):
        assert body == {
            "from": {"jid": CONTACT},
            "message": {"id": message_id, "status": status},
            "timestamp": body["timestamp"],
            "to": CHANNEL,
            "type": "receipt",
            "version": 2,
        }
        assert isinstance(body["timestamp"], int)
    headers = receiver.received[0].headers
    assert headers["Authorization"] == "Bearer hook-secret"
    assert headers["Content-Type"] == "application/json"


async def test_only_enabled_subscribed_webhooks_receive(
    make_sim: Any, receiver: Any, eventually: Any
) -> None:
    """A disabled webhook and one for other events get nothing.

    Receipts without delay: the first message's receipts are emitted (to no one) at once, not
    after the webhook is enabled below, which a slow machine made them do."""
    sim = await make_sim(receipt_delay=0.0)
    hook = await register(sim, receiver.url, ["receipt"], enabled=False)
    await register(sim, receiver.url + "?other", ["message"])
    assert (await sim.post(SEND, json=TEXT, headers=AUTH)).status == 201
    resp = await sim.post(
        "/_sim/inbound",
        json={
            "channelJid": CHANNEL,
            "contactJid": CONTACT,
            "message": {"type": "text", "body": "hi"},
        },
    )
    assert resp.status == 202
    await eventually(lambda: len(receiver.received) == 1)
    await sim.patch(f"{WEBHOOKS}/{hook['id']}", json={"enabled": True}, headers=AUTH)
    assert (await sim.post(SEND, json=TEXT, headers=AUTH)).status == 201
    await eventually(lambda: len(receiver.bodies("receipt")) == 2)
    assert [b["type"] for b in receiver.bodies()] == ["message", "receipt", "receipt"]


async def test_retries_until_200_and_records_attempts(
    sim: SimClient, receiver: Any, eventually: Any
) -> None:
    """A receiver answering 500 twice then 200 gets the same body three times; all recorded."""
    await register(sim, receiver.url, ["message"])
    receiver.statuses.extend([500, 500])
    inbound = {
        "channelJid": CHANNEL,
        "contactJid": CONTACT,
        "message": {"type": "text", "body": "hi"},
    }
    sent = await (await sim.post("/_sim/inbound", json=inbound)).json()
    await eventually(lambda: len(receiver.bodies("message")) == 1)
    assert [r.status for r in receiver.received] == [500, 500, 200]
    assert all(r.body == sent for r in receiver.received)
    deliveries = await (await sim.get("/_sim/deliveries")).json()
    assert [(d["attempt"], d["status"]) for d in deliveries] == [(1, 500), (2, 500), (3, 200)]
    assert {d["url"] for d in deliveries} == {receiver.url}
    assert {d["event"] for d in deliveries} == {"message"}
    assert len({d["deliveryId"] for d in deliveries}) == 1


async def test_connection_errors_are_retried_up_to_max_attempts(
    make_sim: Any, eventually: Any
) -> None:
    """An unreachable URL is retried; with max_attempts=3 it is given up after three tries."""
    sim = await make_sim(max_attempts=3)
    await register(sim, "http://127.0.0.1:9/hook", ["message"])
    inbound = {
        "channelJid": CHANNEL,
        "contactJid": CONTACT,
        "message": {"type": "text", "body": "hi"},
    }
    assert (await sim.post("/_sim/inbound", json=inbound)).status == 202

    seen: list[dict[str, Any]] = []

    async def three_attempts() -> bool:
        seen[:] = await (await sim.get("/_sim/deliveries")).json()
        return len(seen) >= 3

    await eventually(three_attempts)
    assert [d["attempt"] for d in seen] == [1, 2, 3]
    assert all(d["status"] is None and d["error"] for d in seen)
    await asyncio.sleep(0.2)  # retry_max is 0.05 s: a fourth attempt would have happened
    assert len(await (await sim.get("/_sim/deliveries")).json()) == 3


async def test_inbound_message_matches_the_confirmed_shape(
    sim: SimClient, receiver: Any, eventually: Any
) -> None:
    """/_sim/inbound emits a `message` body shaped like the confirmed real delivery."""
    await register(sim, receiver.url, ["message"])
    resp = await sim.post(
        "/_sim/inbound",
        json={
            "channelJid": CHANNEL,
            "contactJid": CONTACT,
            "name": "John",
            "message": {"type": "text", "body": "Thank you "},
        },
    )
    assert resp.status == 202
    sent = await resp.json()
    await eventually(lambda: len(receiver.bodies("message")) == 1)
    (body,) = receiver.bodies("message")
    assert body == sent
    assert list(body) == [
        "contextInfo",
        "direction",
        "from",
        "message",
        "timestamp",
        "to",
        "type",
        "version",
    ]
    assert body["contextInfo"] == {"conversation": {}, "metadata": {}, "originator": None}
    assert body["direction"] == "received"
    assert body["from"] == {"jid": CONTACT, "locale": "en_US", "name": "John", "picture": None}
    assert body["message"]["body"] == "Thank you "
    assert body["message"]["type"] == "text"
    assert re.fullmatch(r"[0-9a-f]{40}", body["message"]["id"])
    assert isinstance(body["timestamp"], int)
    assert body["to"] == CHANNEL
    assert (body["type"], body["version"]) == ("message", 2)
    conversation = await (await sim.get(CONVERSATION, headers=AUTH)).json()
    assert conversation["messagesReceived"] == 1
    assert conversation["lastMessageReceivedAt"] is not None


async def test_inbound_media_and_given_id(sim: SimClient) -> None:
    """Media messages carry a top-level media {url, size}; a given message id is kept."""
    inbound = {
        "channelJid": CHANNEL,
        "contactJid": CONTACT,
        "message": {"id": "abc", "type": "image", "mimeType": "image/jpeg", "caption": "look"},
        "media": {"url": "https://cdn.example.com/img.jpg", "size": 1234},
    }
    body = await (await sim.post("/_sim/inbound", json=inbound)).json()
    assert body["message"] == {
        "caption": "look",
        "id": "abc",
        "mimeType": "image/jpeg",
        "type": "image",
    }
    assert body["media"] == {"size": 1234, "url": "https://cdn.example.com/img.jpg"}
    resp = await sim.post("/_sim/inbound", json={**inbound, "message": {"type": "text"}})
    assert resp.status == 400
    assert (await resp.json())["error"]["message"].startswith("message.body: required")


async def test_handover_and_label_events(sim: SimClient, receiver: Any, eventually: Any) -> None:
    """A new assignee emits `handover`, new labels `label`; repeating a change emits nothing."""
    await register(sim, receiver.url, ["handover", "label"])
    assert (await sim.post(SEND, json=TEXT, headers=AUTH)).status == 201
    changes = {"assignee": "john@mycompany.com", "labels": ["1@label.eazy.im"]}
    assert (await sim.patch(CONVERSATION, json=changes, headers=AUTH)).status == 200
    assert (await sim.patch(CONVERSATION, json=changes, headers=AUTH)).status == 200
    assert (await sim.patch(CONVERSATION, json={"labels": []}, headers=AUTH)).status == 200
    await eventually(lambda: len(receiver.bodies()) == 3)
    by_type = sorted(receiver.bodies(), key=lambda b: (b["type"], len(b.get("labels", []))))
    handover, unlabel, label = by_type
    assert handover["assignee"] == "john@mycompany.com"
    assert handover["from"] == {"jid": CONTACT}
    assert handover["to"] == CHANNEL
    assert handover["version"] == 2
    assert label["labels"] == ["1@label.eazy.im"]
    assert unlabel["labels"] == []


async def test_global_webhook_from_settings(make_sim: Any, receiver: Any, eventually: Any) -> None:
    """SIMULATOR_WEBHOOK_URL receives every event of every channel with its headers."""
    sim = await make_sim(webhook_url=receiver.url, webhook_headers={"Authorization": "Bearer g"})
    other = "31699999999@whatsapp.eazy.im"
    for channel in (CHANNEL, other):
        inbound = {
            "channelJid": channel,
            "contactJid": CONTACT,
            "message": {"type": "text", "body": "x"},
        }
        assert (await sim.post("/_sim/inbound", json=inbound)).status == 202
    await eventually(lambda: len(receiver.bodies("message")) == 2)
    assert {b["to"] for b in receiver.bodies("message")} == {CHANNEL, other}
    assert all(r.headers["Authorization"] == "Bearer g" for r in receiver.received)


async def test_any_event_body_can_be_emitted(
    sim: SimClient, receiver: Any, eventually: Any
) -> None:
    """/_sim/events sends a body as given; `revoke` goes to `message` subscribers."""
    await register(sim, receiver.url, ["message"])
    revoke = {
        "type": "revoke",
        "version": 2,
        "timestamp": 1663619718,
        "from": {"jid": CONTACT},
        "to": CHANNEL,
        "message": {"id": "abc"},
    }
    postback = {**revoke, "type": "postback"}
    for body, count in ((revoke, 1), (postback, 0)):
        resp = await sim.post("/_sim/events", json={"channelJid": CHANNEL, "body": body})
        assert resp.status == 202
        assert await resp.json() == {"body": body, "webhooks": count}
    await eventually(lambda: len(receiver.received) == 1)
    assert receiver.bodies() == [revoke]
    resp = await sim.post("/_sim/events", json={"channelJid": CHANNEL, "body": {"x": 1}})
    assert resp.status == 400
