"""The simulator's /v3 API over real HTTP: auth, errors, send messages, conversations."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge.simulator.keys import ApiKey, Secret
from tests import samples

SimClient = TestClient[web.Request, web.Application]


AUTH = {"Authorization": "Bearer sim-key"}
CHANNEL = "31612345678@whatsapp.eazy.im"
CONTACT = "31611111111@whatsapp.eazy.im"
SEND = f"/v3/channels/{CHANNEL}/messages/{CONTACT}"
CONVERSATION = f"/v3/channels/{CHANNEL}/conversations/{CONTACT}"
MEDIA = samples.SEND_MEDIA
MESSAGES = samples.SEND_BODIES

# What the reference's "Messages" tables mark mandatory ("Element ... Mandatory Y"), and the
# JSON type of its "Value" column; expectations written from the reference, not the code.
INVALID: list[tuple[dict[str, Any], str]] = [
    ({"message": {"type": "text"}}, "message.body: required"),
    ({"message": {"type": "text", "body": 5}}, "message.body: must be a JSON string"),
    ({"message": {"type": "image"}}, "message.mimeType: required"),
    ({"message": {"type": "gif", "caption": "c"}}, "message.mimeType: required"),
    ({"message": {"type": "ptt"}}, "message.mimeType: required"),
    ({"message": {"type": "sticker"}}, "message.mimeType: required"),
    ({"message": {"type": "video"}}, "message.mimeType: required"),
    ({"message": {"type": "audio", "mimeType": 1}}, "message.mimeType: must be a JSON string"),
    (
        {"message": {"type": "document", "mimeType": "application/pdf", "title": "t"}},
        "message.fileName: required",
    ),
    (
        {"message": {"type": "document", "mimeType": "a/b", "fileName": "f"}},
        "message.title: required",
    ),
    ({"message": {"type": "location", "latitude": "1", "longitude": 2}}, "message.latitude"),
    ({"message": {"type": "location", "latitude": 1}}, "message.longitude: required"),
    ({"message": {"type": "contact", "contacts": {}}}, "message.contacts: must be a JSON array"),
    ({"message": {"type": "template"}}, "message.template: required"),
    ({"message": {"type": "fax"}}, "message.type"),
    ({"message": "text"}, "message"),
    ({}, "message: required"),
]
#: Bodies the reference does not forbid: optional or unlisted fields, and no media.
PASSING: list[dict[str, Any]] = [
    {"message": {"type": "text", "body": "x", "colour": "red"}},
    {"message": {"type": "text", "body": "x"}, "extra": 1},
    {"message": {"type": "image", "mimeType": "image/png"}},
    {"message": {"type": "image", "mimeType": "image/png", "caption": 5}},
    {"message": {"type": "contact", "contacts": []}},
    {"message": {"type": "location", "latitude": 1, "longitude": 2.5, "name": None}},
]


def assert_error(body: Any, code: int, message_part: str = "") -> None:
    """The reference's error format: ``{"error": {"code", "message"}, "traceId": 6 hex}``."""
    assert set(body) == {"error", "traceId"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert message_part in body["error"]["message"]
    assert re.fullmatch(r"[0-9a-f]{6}", body["traceId"])


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "sim-key"},
        {"Authorization": "Basic sim-key"},
    ],
)
async def test_missing_or_wrong_key_is_401_1001(sim: SimClient, headers: dict[str, str]) -> None:
    """Without a known Bearer key every API call is 401/1001 in the documented format."""
    resp = await sim.post(SEND, json=MESSAGES["text"], headers=headers)
    assert resp.status == 401
    assert_error(await resp.json(), 1001)


async def test_several_keys_are_accepted(make_sim: Any) -> None:
    """Any key from the configured list works; the others do not."""
    sim = await make_sim(api_keys=(ApiKey(Secret("old")), ApiKey(Secret("new"))))
    for key, status in (("old", 201), ("new", 201), ("sim-key", 401)):
        resp = await sim.post(
            SEND, json=MESSAGES["text"], headers={"Authorization": f"Bearer {key}"}
        )
        assert resp.status == status


@pytest.mark.parametrize("kind", sorted(MESSAGES))
async def test_each_message_type_is_accepted(sim: SimClient, kind: str) -> None:
    """A valid message of every type answers 201 with a 40-hex id, recorded in order."""
    resp = await sim.post(SEND, json=MESSAGES[kind], headers=AUTH)
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert set(body) == {"id"}
    assert re.fullmatch(r"[0-9a-f]{40}", body["id"])
    (conversation,) = await (await sim.get("/_sim/messages")).json()
    assert conversation["channelJid"] == CHANNEL
    assert conversation["contactJid"] == CONTACT
    (sent,) = conversation["messages"]
    assert sent["id"] == body["id"]
    assert sent["message"] == MESSAGES[kind]["message"]
    assert sent.get("media") == MESSAGES[kind].get("media")


@pytest.mark.parametrize(("body", "expected"), INVALID)
async def test_invalid_message_is_400_1005_naming_the_field(
    sim: SimClient, body: dict[str, Any], expected: str
) -> None:
    """An invalid body is 400/1005 whose message names the field; nothing is recorded."""
    resp = await sim.post(SEND, json=body, headers=AUTH)
    assert resp.status == 400
    assert_error(await resp.json(), 1005, expected)
    assert await (await sim.get("/_sim/messages")).json() == []


@pytest.mark.parametrize("body", PASSING)
async def test_what_the_reference_does_not_forbid_passes(
    sim: SimClient, body: dict[str, Any]
) -> None:
    """Only mandatory fields are checked: optional, unlisted and media-less bodies are 201."""
    resp = await sim.post(SEND, json=body, headers=AUTH)
    assert resp.status == 201, await resp.text()


@pytest.mark.parametrize("media", [{"url": "ftp://x/y"}, "https://x/y", {"size": 1}, None])
async def test_malformed_media_is_1008(sim: SimClient, media: Any) -> None:
    """A media attachment that is not {"url": "http(s)://..."} is 400/1008 (Media is invalid)."""
    body = {"message": {"type": "image", "mimeType": "image/png"}, "media": media}
    resp = await sim.post(SEND, json=body, headers=AUTH)
    assert resp.status == 400
    assert_error(await resp.json(), 1008)


@pytest.mark.parametrize(
    "contact",
    ["31611111111", "a%20b@whatsapp.eazy.im", "x@y", "x@@y.im", "x@y.im%0A", "x@-y.im"],
)
async def test_bad_json_and_bad_jids(sim: SimClient, contact: str) -> None:
    """Bad JSON, and a JID that is not e-mail-like ("Channels & JIDs"), are 400/1005."""
    resp = await sim.post(SEND, data=b"{not json", headers=AUTH)
    assert resp.status == 400
    assert_error(await resp.json(), 1005, "JSON")
    resp = await sim.post(
        f"/v3/channels/{CHANNEL}/messages/{contact}", json=MESSAGES["text"], headers=AUTH
    )
    assert resp.status == 400
    assert_error(await resp.json(), 1005, "contactJid")


@pytest.mark.parametrize(
    ("template", "status", "code"),
    [
        # "Read templates": hello's only translation is REJECTED (rejectedReason PROMOTIONAL).
        ({"name": "hello", "language": "en", "parameters": ["John"]}, 400, 1011),
        ({"name": "nope", "language": "en"}, 400, 1006),
        ({"name": "delivery_notification", "language": "de", "parameters": ["a", "b"]}, 400, 1006),
        ({"name": "delivery_notification", "language": "nl", "parameters": ["a", "b"]}, 201, None),
        ({"name": "delivery_notification", "language": "en"}, 400, 1013),
        ({"name": "delivery_notification", "language": "en", "parameters": ["a"]}, 400, 1013),
        ({"name": "support_after_24hours", "language": "en", "parameters": ["a"]}, 201, None),
        ({"name": "delivery_notification", "language": "en", "parameters": "ab"}, 400, 1005),
        (
            {
                "name": "delivery_notification",
                "language": "en",
                "components": [{"type": "body", "parameters": {"text": "a"}}],
            },
            400,
            1005,
        ),
        ({"language": "en"}, 400, 1005),
        (
            {
                "name": "delivery_notification",
                "language": "en",
                "components": [{"type": "body", "parameters": [{"text": "a"}, {"text": "b"}]}],
            },
            201,
            None,
        ),
    ],
)
async def test_templates(
    sim: SimClient, template: dict[str, Any], status: int, code: int | None
) -> None:
    """Unknown templates are 1006, rejected ones 1011, wrong parameter counts 1013, malformed
    parameters 1005 (never 500)."""
    resp = await sim.post(
        SEND, json={"message": {"type": "template", "template": template}}, headers=AUTH
    )
    assert resp.status == status
    if code is not None:
        assert_error(await resp.json(), code)


async def test_unknown_routes_are_404_1009(sim: SimClient) -> None:
    """Unknown paths and methods answer 404/1009 in the error format, after auth."""
    for method, path in (("GET", "/v3/nothing"), ("DELETE", SEND), ("GET", "/")):
        resp = await sim.request(method, path, headers=AUTH)
        assert resp.status == 404
        assert_error(await resp.json(), 1009)
    resp = await sim.get("/v3/nothing")
    assert resp.status == 401


async def test_conversation_read_and_update(sim: SimClient) -> None:
    """A send creates an OPEN conversation; PATCH applies changes and answers the result."""
    resp = await sim.get(CONVERSATION, headers=AUTH)
    assert resp.status == 404
    assert_error(await resp.json(), 1009)
    resp = await sim.patch(CONVERSATION, json={"status": "CLOSED"}, headers=AUTH)
    assert resp.status == 404
    assert (await sim.post(SEND, json=MESSAGES["text"], headers=AUTH)).status == 201

    conversation = await (await sim.get(CONVERSATION, headers=AUTH)).json()
    assert set(conversation) == {
        "assignee", "channel", "contact", "createdAt", "id", "labels", "lastMessageReceivedAt",
        "lastMessageSentAt", "messagesReceived", "messagesSent", "status", "team", "unreadCount",
    }  # fmt: skip
    assert conversation["channel"] == {"jid": CHANNEL}
    assert conversation["contact"] == {"jid": CONTACT}
    assert conversation["status"] == "OPEN"
    assert conversation["messagesSent"] == 1
    assert conversation["labels"] == []
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", conversation["createdAt"])

    changes = {
        "status": "CLOSED",
        "assignee": "john@mycompany.com",
        "labels": ["1580486175684@label.eazy.im"],
        "team": "1601626130348@team.eazy.im",
        "unreadCount": 0,
    }
    resp = await sim.patch(CONVERSATION, json=changes, headers=AUTH)
    assert resp.status == 200
    updated = await resp.json()
    assert updated["status"] == "CLOSED"
    assert updated["assignee"] == "john@mycompany.com"
    assert updated["labels"] == ["1580486175684@label.eazy.im"]
    assert updated["team"] == {"jid": "1601626130348@team.eazy.im"}
    assert updated["unreadCount"] == 0
    assert await (await sim.get(CONVERSATION, headers=AUTH)).json() == updated


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"status": "closed"}, "status"),
        ({"labels": "Support"}, "labels"),
        ({"labels": [1]}, "labels"),
        ({"assignee": 5}, "assignee"),
        ({"unreadCount": -1}, "unreadCount"),
        ({"unreadCount": "0"}, "unreadCount"),
        ({"team": "sales"}, "team"),
    ],
)
async def test_invalid_conversation_update_is_400_1005(
    sim: SimClient, changes: dict[str, Any], expected: str
) -> None:
    """PATCH values outside "Update a conversation" and its "Use cases" are 400/1005; nothing
    changes on failure."""
    assert (await sim.post(SEND, json=MESSAGES["text"], headers=AUTH)).status == 201
    resp = await sim.patch(CONVERSATION, json=changes, headers=AUTH)
    assert resp.status == 400
    assert_error(await resp.json(), 1005, expected)
    assert (await (await sim.get(CONVERSATION, headers=AUTH)).json())["status"] == "OPEN"
