"""Normalization of webhook bodies into CloudEvents records (pure, no broker)."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.contract.records import EVENT_TYPES, Record, Topics
from bridge.ingress.normalize import normalize
from tests import samples
from tests.conftest import parse_cloudevent

TOPICS = Topics("spotler")
NOW = 1_700_000_000.5


def run(body: dict[str, Any] | bytes) -> tuple[Record, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    record = normalize(raw, TOPICS, received_at=NOW)
    return record, orjson.loads(record.value)


def test_confirmed_message_body(event_schema) -> None:
    """The real Apple delivery (docs/platform.md) becomes the record the README describes."""
    raw = orjson.dumps(samples.CONFIRMED_MESSAGE, option=orjson.OPT_INDENT_2)
    record, event = run(raw)
    channel = "7dd751fa-1ed7-4382-9ce0-0e0baf01d9c7@apple.eazy.im"
    contact = "3ecce6e1-3c6a-4aeb-a837-1822c4f6bcad@apple.eazy.im"
    assert record.topic == "spotler.events.message"
    assert record.key == f"{channel}/{contact}".encode()
    assert record.event_id == samples.message_event_id(samples.CONFIRMED_MESSAGE)
    assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
    assert event["specversion"] == "1.0"
    assert event["id"] == record.event_id
    assert event["source"] == f"/channels/{channel}"
    assert event["type"] == "im.eazy.webhook.message"
    assert event["subject"] == contact
    assert event["time"] == "2022-09-19T20:35:18.000Z"
    assert event["datacontenttype"] == "application/json"
    data = event["data"]
    assert data["event"] == "message"
    assert data["channel"] == {"jid": channel, "kind": "apple"}
    assert data["contact"] == {"jid": contact, "name": None, "locale": "en_US", "picture": None}
    assert data["direction"] == "inbound"
    assert data["occurredAt"] == "2022-09-19T20:35:18.000Z"
    assert data["receivedAt"] == "2023-11-14T22:13:20.500Z"
    assert data["message"] == {
        "body": "Thank you ",
        "id": samples.CONFIRMED_MESSAGE["message"]["id"],
        "type": "text",
    }
    assert data["payload"] == samples.CONFIRMED_MESSAGE
    # The payload is the received bytes themselves, indentation included.
    assert raw in record.value
    event_schema.validate(event)
    ce = parse_cloudevent(record.headers, record.key, record.value)
    assert ce.get_id() == record.event_id
    assert ce.get_type() == "im.eazy.webhook.message"
    assert ce.get_subject() == contact
    assert ce.get_data() == data


@pytest.mark.parametrize("kind", list(samples.MESSAGE_PARTS))
def test_every_message_type(kind: str, event_schema) -> None:
    """Each message type keeps its per-type fields, and media bodies keep their media."""
    body = samples.message_body(kind)
    record, event = run(body)
    message = event["data"]["message"]
    assert record.topic == "spotler.events.message"
    assert record.key == f"{samples.CHANNEL}/{samples.CONTACT}".encode()
    assert message["type"] == kind
    assert message["id"] == body["message"]["id"]
    for field, value in samples.MESSAGE_PARTS[kind][0].items():
        assert message[field] == value
    assert ("media" in message) == samples.MESSAGE_PARTS[kind][1]
    assert event["data"]["channel"]["kind"] == "whatsapp"
    event_schema.validate(event)


def test_quoted_reply_is_kept() -> None:
    body = samples.message_body("text")
    body["contextInfo"]["quotedMessage"] = {"id": "abc", "jid": samples.CHANNEL}
    _, event = run(body)
    assert event["data"]["message"]["quoted"] == {"id": "abc", "jid": samples.CHANNEL}


def test_revoke_goes_to_its_own_topic(event_schema) -> None:
    body = samples.other_events()["revoke"]
    record, event = run(body)
    assert record.topic == "spotler.events.revoke"
    assert record.event_id == samples.message_event_id(body)
    assert event["data"]["message"] == {"id": body["message"]["id"]}
    event_schema.validate(event)


@pytest.mark.parametrize("name", sorted(samples.other_events()))
def test_other_events(name: str, event_schema) -> None:
    """Every known event type lands on its topic with channel, contact and a CloudEvent shape."""
    body = samples.other_events()[name]
    record, event = run(body)
    assert record.topic == f"spotler.events.{name}"
    assert event["type"] == f"im.eazy.webhook.{name}"
    assert event["data"]["payload"] == body
    assert event["data"]["channel"]["jid"] == samples.CHANNEL
    if name != "template_pack":
        assert event["subject"] == samples.CONTACT
        assert record.key == f"{samples.CHANNEL}/{samples.CONTACT}".encode()
    else:
        assert record.key == samples.CHANNEL.encode()
    event_schema.validate(event)
    assert parse_cloudevent(record.headers, record.key, record.value).get_id() == record.event_id


def test_event_types_cover_the_design() -> None:
    assert set(EVENT_TYPES) == {
        "message",
        "echo",
        "receipt",
        "postback",
        "handover",
        "label",
        "note",
        "template_pack",
        "typing",
        "custom",
        "revoke",
    }


def test_event_specific_fields() -> None:
    events = samples.other_events()
    receipt = run(events["receipt"])[1]["data"]["receipt"]
    assert receipt == {
        "messageId": events["receipt"]["message"]["id"],
        "status": "delivered",
        "statusRaw": "DELIVERED",
    }
    assert run(events["postback"])[1]["data"]["postback"]["payload"] == "button_id_1"
    assert run(events["handover"])[1]["data"]["handover"] == {
        "assignee": "john@mycompany.com",
        "to": "agent",
    }
    assert run(events["label"])[1]["data"]["labels"] == ["1580486175684@label.eazy.im"]
    note = run(events["note"])
    assert note[1]["data"]["action"] == "created"
    assert note[0].event_id.startswith("note/edff51c3-4d8c-4d06-bd48-d61e993ecc57/created/sha256:")
    assert run(events["template_pack"])[1]["data"]["templates"][0]["status"] == "APPROVED"


def test_receipt_id_includes_the_status() -> None:
    """delivered and read receipts of one message are different events, not duplicates."""
    body = samples.other_events()["receipt"]
    delivered = run(body)[0].event_id
    body["message"]["status"] = "read"
    assert run(body)[0].event_id != delivered


def test_echo_direction_decides_channel_not_position() -> None:
    """An echo goes from the channel to the contact: the channel is ``from`` here."""
    record, event = run(samples.other_events()["echo"])
    assert event["data"]["channel"]["jid"] == samples.CHANNEL
    assert event["data"]["contact"]["jid"] == samples.CONTACT
    assert event["data"]["direction"] == "outbound"
    assert record.key == f"{samples.CHANNEL}/{samples.CONTACT}".encode()


def test_agent_sender_is_an_actor_not_a_party() -> None:
    body = samples.message_body("text", event="echo", direction=None)
    body["from"] = {"jid": samples.AGENT}
    body["to"] = samples.CONTACT
    _, event = run(body)
    assert event["data"]["actor"] == {"jid": samples.AGENT, "kind": "agent"}
    assert event["data"]["contact"]["jid"] == samples.CONTACT
    assert event["data"]["channel"] is None


def test_conversation_in_context_wins_over_position() -> None:
    body = samples.message_body("text", direction=None)
    body["from"], body["to"] = {"jid": samples.CHANNEL}, samples.CONTACT  # swapped positions
    body["contextInfo"]["conversation"] = {
        "channel": {"jid": samples.CHANNEL},
        "contact": {"jid": samples.CONTACT},
    }
    _, event = run(body)
    assert event["data"]["channel"]["jid"] == samples.CHANNEL
    assert event["data"]["direction"] == "outbound"


def test_missing_direction_defaults_to_inbound_for_messages() -> None:
    _, event = run(samples.message_body("text", direction=None))
    assert event["data"]["channel"]["jid"] == samples.CHANNEL
    assert event["data"]["direction"] == "inbound"


def test_ids_are_deterministic_and_fall_back_to_a_body_hash() -> None:
    body = samples.other_events()["typing"]
    a, b = run(body)[0], run(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))[0]
    assert a.event_id == b.event_id
    assert a.event_id.startswith("typing/sha256:")
    body["timestamp"] += 1
    assert run(body)[0].event_id != a.event_id


def test_timestamp_forms() -> None:
    body = samples.message_body("text")
    for value, expected in [
        ("1663619718", "2022-09-19T20:35:18.000Z"),
        (1663619718123, "2022-09-19T20:35:18.123Z"),
        (None, None),
        (True, None),
        ("soon", None),
        (-5, None),
    ]:
        body["timestamp"] = value
        event = run(body)[1]
        assert event["data"]["occurredAt"] == expected
        assert event["time"] == (expected or "2023-11-14T22:13:20.500Z")


def test_unknown_type_goes_to_unknown_topic(event_schema) -> None:
    record, event = run({"type": "../../etc/passwd", "to": samples.CHANNEL})
    assert record.topic == "spotler.events.unknown"
    assert event["type"] == "im.eazy.webhook.unknown"
    assert event["data"]["event"] == "../../etc/passwd"
    event_schema.validate(event)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not valid JSON"),
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON array, not an object"),
        (b'"message"', "JSON string, not an object"),
        (b"42", "JSON number, not an object"),
        (b"null", "JSON null, not an object"),
        (b"{}", "no string 'type' field"),
        (b'{"type": 5}', "no string 'type' field"),
        (b'{"type": ""}', "no string 'type' field"),
        (b'{"type": "message",', "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_hostile_bodies_are_dead_lettered_intact(
    raw: bytes, reason: str, deadletter_schema
) -> None:
    record, event = run(raw)
    assert record.topic == "spotler.events.deadletter"
    assert record.key is None
    assert event["data"]["reason"].startswith(reason)
    assert event["data"]["bodyEncoding"] == "utf-8"
    assert event["data"]["body"].encode() == raw
    deadletter_schema.validate(event)


def test_numbers_beyond_64_bits_are_kept_verbatim() -> None:
    """The payload is spliced in as received, so no number is rounded on the way."""
    raw = b'{"type": "custom", "n": 1' + b"0" * 40 + b', "f": 1.000000000000000000001}'
    record, _ = run(raw)
    assert record.topic == "spotler.events.custom"
    assert raw in record.value


def test_non_utf8_bytes_are_kept_as_base64(deadletter_schema) -> None:
    raw = b'{"type": "message", "x": "\xff\xfe"}'
    record, event = run(raw)
    assert record.topic == "spotler.events.deadletter"
    assert event["data"]["bodyEncoding"] == "base64"
    assert base64.b64decode(event["data"]["body"]) == raw
    deadletter_schema.validate(event)


def test_wrong_types_everywhere_still_route() -> None:
    """Fields of the wrong type are tolerated: the event still lands on its topic."""
    body = {
        "type": "message",
        "from": 5,
        "to": ["x"],
        "message": "hi",
        "contextInfo": 3,
        "direction": 7,
        "timestamp": {"a": 1},
        "media": [1],
    }
    record, event = run(body)
    assert record.topic == "spotler.events.message"
    assert event["data"]["channel"] is None
    assert event["data"]["message"] is None
    assert record.event_id.startswith("message/sha256:")


def test_huge_string_is_kept() -> None:
    body = samples.message_body("text")
    body["message"]["body"] = "x" * 500_000
    _, event = run(body)
    assert len(event["data"]["payload"]["message"]["body"]) == 500_000


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


#: DESIGN.md, "Topics": ``P.events.<type>`` for these types (written from its text, not the code).
DESIGN_EVENT_TYPES = (
    "message", "echo", "receipt", "postback", "handover", "label", "note",
    "template_pack", "typing", "custom", "revoke",
)  # fmt: skip
field_names = st.sampled_from(
    ["from", "to", "message", "direction", "timestamp", "contextInfo", "media", "receipt",
     "note", "assignee"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    event_type=st.sampled_from(DESIGN_EVENT_TYPES) | st.text(min_size=1, max_size=20),
    fields=st.dictionaries(
        field_names,
        json_values | st.sampled_from([samples.CHANNEL, samples.CONTACT, {"jid": samples.CONTACT}]),
    ),
    indent=st.booleans(),
)
def test_property_a_well_formed_object_is_never_a_dead_letter(
    event_type: str, fields: dict[str, Any], indent: bool
) -> None:
    """DESIGN.md, "Ingress" 3: a JSON object with a ``type`` goes to its event topic (known
    types) or ``P.events.unknown`` (any other), whatever else it holds; and its ``payload`` is
    the body exactly as received, byte for byte."""
    body = {**fields, "type": event_type}
    raw = orjson.dumps(body, option=orjson.OPT_INDENT_2 if indent else 0)
    record = normalize(raw, TOPICS, received_at=NOW)
    expected = event_type if event_type in DESIGN_EVENT_TYPES else "unknown"
    assert record.topic == f"spotler.events.{expected}"
    assert raw in record.value  # the received bytes themselves, not a re-encoding
    assert orjson.loads(record.value)["data"]["payload"] == orjson.loads(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_property_anything_else_is_a_dead_letter_with_its_bytes(raw: bytes) -> None:
    """DESIGN.md, "Ingress" 3: what is not a JSON object with a type goes, raw and intact, to
    the dead-letter topic; the body there decodes back to the exact bytes received."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("type"), str) and doc["type"]:
        return  # well-formed: the property above
    record = normalize(raw, TOPICS, received_at=NOW)
    assert record.topic == "spotler.events.deadletter"
    data = orjson.loads(record.value)["data"]
    body = data["body"]
    got = base64.b64decode(body) if data["bodyEncoding"] == "base64" else body.encode()
    assert got == raw


def test_the_body_direction_decides_which_end_is_the_channel() -> None:
    """DESIGN.md, "Ingress" 6 and webhooks.md (`direction`: `received` on inbound): an event
    whose direction says received came from the contact to the channel, even an `echo`, which
    otherwise flows outbound."""
    channel, contact = "31612345678@whatsapp.eazy.im", "31611111111@whatsapp.eazy.im"
    body = {
        "type": "echo",
        "version": 2,
        "timestamp": 1700000000,
        "direction": "received",
        "from": {"jid": contact},
        "to": channel,
        "message": {"id": "m1", "type": "text", "body": "hi"},
    }
    record, event = run(body)
    assert record.key == f"{channel}/{contact}".encode()
    assert event["data"]["direction"] == "inbound"
    assert event["data"]["channel"]["jid"] == channel


@pytest.mark.parametrize(
    ("assignee", "to"),
    [
        ("1563451622477@ai.eazy.im", "assistant"),  # the reference's assistant JIDs
        ("john@mycompany.com", "agent"),
        (None, "agents"),  # reference, "Handover": null hands over to the agents
    ],
)
def test_handover_says_who_takes_over(assignee: str | None, to: str) -> None:
    """webhooks.md: a handover's assignee is an agent e-mail, an assistant JID, or null."""
    body = {**samples.other_events()["handover"], "assignee": assignee}
    assert run(body)[1]["data"]["handover"] == {"assignee": assignee, "to": to}


@pytest.mark.parametrize(
    "extra",
    [
        b'"items":[' + b",".join([b'{"a":[1]}'] * 200) + b"]",  # 401 brackets, 3 levels deep
        b'"text":"' + b"[{" * 100 + b'"',  # brackets inside a string are not nesting
    ],
)
def test_many_brackets_but_shallow_is_an_event(extra: bytes) -> None:
    """The bracket count only decides whether the depth is walked (README, "Topics and
    records": deeper than 64 levels is a dead letter); a wide, shallow body is an event."""
    body = b'{"type":"typing","to":"31612345678@whatsapp.eazy.im",' + extra + b"}"
    record = normalize(body, TOPICS, received_at=NOW)
    assert record.topic == "spotler.events.typing"
