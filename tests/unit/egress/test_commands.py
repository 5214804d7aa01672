"""Command parsing and the result and dead-letter records, without a broker.

Expectations from DESIGN.md, "Egress": a command is ``{"id", "channelJid", "contactJid",
"message"}`` (send-message) or ``{..., "changes"}`` (update-conversation), possibly as the
``data`` of a CloudEvent; results are CloudEvents ``im.eazy.command.succeeded`` /
``im.eazy.command.failed`` on ``P.commands.results`` keyed ``<channelJid>/<contactJid>``, whose
data holds commandId, command, channelJid, contactJid, attempts, and messageId or the error.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from bridge.contract.records import Topics
from bridge.core.errors import ApiError, InvalidCommand
from bridge.egress import commands
from bridge.egress.commands import Position

CHANNEL = "31612345678@whatsapp.eazy.im"
CONTACT = "31611111111@whatsapp.eazy.im"
TOPICS = Topics("p")
POSITION = Position("p.commands.send-message", 3, 42, b"key", 0)
TEXT = {"type": "text", "body": "Your order has shipped"}


def raw(**doc: Any) -> bytes:
    base: dict[str, Any] = {"id": "c1", "channelJid": CHANNEL, "contactJid": CONTACT}
    base.update(doc)
    return orjson.dumps({k: v for k, v in base.items() if v is not None})


def test_a_send_message_command_from_design() -> None:
    """DESIGN.md's example command becomes the request body {"message": ...}."""
    command = commands.parse(raw(message=TEXT), "send-message")
    assert (command.id, command.kind, command.channel, command.contact) == (
        "c1", "send-message", CHANNEL, CONTACT,
    )  # fmt: skip
    assert command.body == {"message": TEXT}
    assert command.conversation == f"{CHANNEL}/{CONTACT}"


def test_an_update_conversation_command_from_design() -> None:
    """{"changes": {"status": "CLOSED"}} becomes the PATCH body."""
    command = commands.parse(raw(changes={"status": "CLOSED"}), "update-conversation")
    assert command.body == {"status": "CLOSED"}


def test_a_cloudevent_carrying_a_command() -> None:
    """A CloudEvent whose data is the command is accepted; its id is the fallback id."""
    event = {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "/orders",
        "type": "x",
        "data": {"channelJid": CHANNEL, "contactJid": CONTACT, "message": TEXT},
    }
    command = commands.parse(orjson.dumps(event), "send-message")
    assert command.id == "ce-1"
    with pytest.raises(InvalidCommand):
        commands.parse(orjson.dumps({**event, "data": [1]}), "send-message")


@pytest.mark.parametrize(
    ("body", "kind", "reason"),
    [
        (b"not json", "send-message", "not valid JSON"),
        (b"[1]", "send-message", "JSON object"),
        (raw(id=None, message=TEXT), "send-message", "id"),
        (raw(id="", message=TEXT), "send-message", "id"),
        (raw(id="x" * 201, message=TEXT), "send-message", "id"),
        (raw(id=5, message=TEXT), "send-message", "id"),
        (raw(message=TEXT, priority=1), "send-message", "priority: unknown field"),
        (raw(changes={"status": "CLOSED"}, message=TEXT), "update-conversation", "message"),
        (raw(), "update-conversation", "changes: required"),
        (raw(contactJid="not-a-jid", message=TEXT), "send-message", "contactJid"),
        (raw(channelJid=None, message=TEXT), "send-message", "channelJid"),
        (raw(message={"type": "text"}), "send-message", "message.body"),
    ],
)
def test_invalid_commands_name_the_problem(body: bytes, kind: Any, reason: str) -> None:
    """Each malformed command raises InvalidCommand whose reason names the field."""
    with pytest.raises(InvalidCommand) as excinfo:
        commands.parse(body, kind)
    assert reason in excinfo.value.reason


def test_an_id_of_200_characters_is_accepted() -> None:
    """The id bound is inclusive: 200 characters pass, 201 do not (above)."""
    assert commands.parse(raw(id="x" * 200, message=TEXT), "send-message").id == "x" * 200


def test_kind_of_topic() -> None:
    assert commands.kind_of(TOPICS.send_message, TOPICS) == "send-message"
    assert commands.kind_of(TOPICS.update_conversation, TOPICS) == "update-conversation"
    assert commands.kind_of(TOPICS.results, TOPICS) is None


def test_salvage_id() -> None:
    """An unparseable command keeps its own id string, even one too long to be valid (issue 25
    item 1), else its Kafka position."""
    assert commands.salvage_id(b'{"id": "mine", "x": 1}', POSITION) == "mine"
    assert commands.salvage_id(b'{"id": "' + b"x" * 201 + b'"}', POSITION) == "x" * 201
    fallback = "p.commands.send-message/3/42"
    for body in (b"not json", b"[1]", b'{"id": 5}', b'{"id": ""}', None):
        assert commands.salvage_id(body, POSITION) == fallback


def _record_data(record: Any) -> dict[str, Any]:
    event = orjson.loads(record.value)
    assert event["specversion"] == "1.0"
    data: dict[str, Any] = event["data"]
    data["_type"] = event["type"]
    return data


def test_a_succeeded_result() -> None:
    """Success: type succeeded, messageId from the response, keyed by conversation."""
    record = commands.result_record(
        TOPICS, command_id="c1", kind="send-message", channel=CHANNEL, contact=CONTACT,
        attempts=2, position=POSITION, response={"id": "abc"},
    )  # fmt: skip
    assert record.topic == "p.commands.results"
    assert record.key == f"{CHANNEL}/{CONTACT}".encode()
    data = _record_data(record)
    assert data["_type"] == "im.eazy.command.succeeded"
    assert (data["commandId"], data["command"], data["attempts"]) == ("c1", "send-message", 2)
    assert (data["channelJid"], data["contactJid"], data["messageId"]) == (CHANNEL, CONTACT, "abc")
    assert data["source"] == {"topic": POSITION.topic, "partition": 3, "offset": 42}
    assert "error" not in data


def test_a_failed_result_with_the_platforms_error() -> None:
    """Failure: type failed, the error's httpStatus, code, message and traceId."""
    error = ApiError(403, 1002, "Access denied", trace_id="7e6459")
    record = commands.result_record(
        TOPICS, command_id="c1", kind="update-conversation", channel=CHANNEL, contact=CONTACT,
        attempts=1, position=POSITION, error=error,
    )  # fmt: skip
    data = _record_data(record)
    assert data["_type"] == "im.eazy.command.failed"
    assert data["error"] == {
        "httpStatus": 403, "code": 1002, "message": "Access denied", "traceId": "7e6459",
    }  # fmt: skip
    assert data["status"] == "failed"


def test_a_failed_result_with_a_reason_and_no_conversation() -> None:
    """An invalid command's result has the reason, and falls back to the record's key."""
    record = commands.result_record(
        TOPICS, command_id="c1", kind="send-message", channel=None, contact=None,
        attempts=0, position=POSITION, reason="invalid: x",
    )  # fmt: skip
    assert record.key == b"key"
    data = _record_data(record)
    assert (data["_type"], data["reason"], data["attempts"]) == (
        "im.eazy.command.failed", "invalid: x", 0,
    )  # fmt: skip


def test_deadletter_keeps_the_bytes() -> None:
    """The dead letter carries the command as consumed: UTF-8 text, or base64 when not UTF-8."""
    text = commands.deadletter_record(TOPICS, b'{"a": 1}', POSITION, "why")
    assert text.topic == "p.commands.deadletter"
    data = _record_data(text)
    assert (data["body"], data["bodyEncoding"], data["reason"]) == ('{"a": 1}', "utf-8", "why")
    assert data["key"] == "key"
    binary = commands.deadletter_record(TOPICS, b"\xff\xfe", POSITION, "why")
    data = _record_data(binary)
    assert data["bodyEncoding"] == "base64"
    assert base64.b64decode(data["body"]) == b"\xff\xfe"


def test_a_command_keyed_with_bytes_that_are_not_utf8_is_still_dead_lettered() -> None:
    """A crafted key costs that one command, never the consumer (DESIGN.md, "Recovery"): the
    dead letter is written, keyed with the very bytes, and its body is intact."""
    position = Position("p.commands.send-message", 0, 7, b"\xff\xfe/\xc3", 0)
    record = commands.deadletter_record(TOPICS, b"not json", position, "not valid JSON")
    assert record.key == b"\xff\xfe/\xc3"
    data = _record_data(record)
    assert data["body"] == "not json"
    assert isinstance(data["key"], str)
