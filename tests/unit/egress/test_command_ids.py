"""Command ids that cannot be used as they are (issue 25 item 1), without a broker.

Expectations from the issue and DESIGN.md ("Results"): every command that carries an id string
ends in exactly one failed result whose ``data.commandId`` is the id as given (JSON escapes it);
the reason says what is wrong ("id contains control characters"); the result's own id, subject
and key are built so that no control character reaches a Kafka key, a header or a log line: the
id when it is usable, else ``sha256:`` and 40 hex digits of its UTF-8 bytes (the README's form
for hashes). A command without any string id is named by its place, as before.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson
import pytest

from bridge.api.client import header_safe
from bridge.contract.records import Topics
from bridge.core.errors import InvalidCommand
from bridge.egress import commands
from bridge.egress.commands import Position
from tests.unit.egress.harness import Egress, FakePlatform

CHANNEL = "31612345678@whatsapp.eazy.im"
CONTACT = "31611111111@whatsapp.eazy.im"
TOPICS = Topics("p")
POSITION = Position("p.commands.send-message", 3, 42, b"key", 0)
PLACE = "p.commands.send-message/3/42"
TEXT = {"type": "text", "body": "hi"}


def hashed(command_id: str) -> str:
    return "sha256:" + hashlib.sha256(command_id.encode()).hexdigest()[:40]


def raw(command_id: Any) -> bytes:
    return orjson.dumps(
        {"id": command_id, "channelJid": CHANNEL, "contactJid": CONTACT, "message": TEXT}
    )


def printable(text: str) -> bool:
    return all(c.isprintable() for c in text)


@pytest.mark.parametrize(
    ("command_id", "reason"),
    [
        ("bad\u0007id", "id contains control characters"),
        ("line\nbreak", "id contains control characters"),
        ("nul\x00", "id contains control characters"),
        ("bidi\u202eoverride", "id contains control characters"),
        ("x" * 201, "id longer than 200 characters"),
        ("", "id: required, a string of 1 to 200 characters"),
        (5, "id: required, a string of 1 to 200 characters"),
    ],
)
def test_an_unusable_id_is_refused_with_a_plain_reason(command_id: Any, reason: str) -> None:
    with pytest.raises(InvalidCommand) as excinfo:
        commands.parse(raw(command_id), "send-message")
    assert excinfo.value.reason == reason


@pytest.mark.parametrize("command_id", ["order/51616/shipped", "bestelling-ü-🚀-注文", "x" * 200])
def test_slashes_non_ascii_and_200_characters_are_valid_ids(command_id: str) -> None:
    assert commands.parse(raw(command_id), "send-message").id == command_id
    assert commands.safe_id(command_id) == command_id


@pytest.mark.parametrize(
    "command_id", ["bad\u0007id", "tab\t", "bidi\u202e", "x" * 201, "\ud7ff\x1b[31m"]
)
def test_the_id_as_given_is_salvaged_whatever_it_holds(command_id: str) -> None:
    assert commands.salvage_id(raw(command_id), POSITION) == command_id
    envelope = {"specversion": "1.0", "id": "env", "source": "/s", "type": "t"}
    wrapped = orjson.dumps({**envelope, "data": {"id": command_id}})
    assert commands.salvage_id(wrapped, POSITION) == command_id


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"id": 5}', b'{"id": ""}', None, b"{}"])
def test_a_record_without_an_id_string_is_named_by_its_place(body: bytes | None) -> None:
    assert commands.salvage_id(body, POSITION) == PLACE


@pytest.mark.parametrize("command_id", ["bad\u0007id", "bidi\u202eoverride", "x" * 201])
def test_the_result_of_an_unusable_id_names_it_by_hash(command_id: str) -> None:
    position = Position("p.commands.send-message", 3, 42, b"k\x07ey", 0)
    record = commands.result_record(
        TOPICS, command_id=command_id, kind="send-message", channel=None, contact=None,
        attempts=0, position=position, reason="invalid: id contains control characters",
    )  # fmt: skip
    event = orjson.loads(record.value)
    assert event["data"]["commandId"] == command_id
    assert event["id"] == record.event_id == f"result/send-message/{hashed(command_id)}"
    assert event["subject"] == hashed(command_id)
    assert record.key is None  # the consumed key holds a control character: not reused
    assert all(printable(k) and printable(v.decode()) for k, v in record.headers)


def test_the_result_of_a_usable_id_is_unchanged() -> None:
    """README: id ``result/<command>/<commandId>``, e.g. ``result/send-message/order-51616``."""
    record = commands.result_record(
        TOPICS, command_id="order/51616", kind="send-message", channel=CHANNEL, contact=CONTACT,
        attempts=1, position=POSITION, response={"id": "m"},
    )  # fmt: skip
    event = orjson.loads(record.value)
    assert (event["id"], event["subject"]) == ("result/send-message/order/51616", "order/51616")
    assert record.key == f"{CHANNEL}/{CONTACT}".encode()
    assert "commandIdSha256" not in event["data"]


def test_a_huge_id_is_reported_bounded_with_its_hash() -> None:
    """An id of a megabyte of control characters must not make a result Kafka refuses: the
    first 1024 characters are reported, with the SHA-256 of the whole id to match it by."""
    command_id = "\x07" * 1_000_000
    record = commands.result_record(
        TOPICS, command_id=command_id, kind="send-message", channel=None, contact=None,
        attempts=0, position=POSITION, reason="invalid: id longer than 200 characters",
    )  # fmt: skip
    assert len(record.value) < 16 * 1024
    data = orjson.loads(record.value)["data"]
    assert data["commandId"] == command_id[:1024]
    assert data["commandIdSha256"] == hashlib.sha256(command_id.encode()).hexdigest()


async def test_the_runner_publishes_one_result_under_the_id_and_logs_it_safely(
    capsys: pytest.CaptureFixture[str],
) -> None:
    platform = FakePlatform()
    await platform.start()
    egress = Egress(platform)
    try:
        for command_id in ("bad\u0007id", "bidi\u202eoverride"):
            assert await egress.run(raw(command_id)) == "deadletter"
        assert platform.calls == []
        results = egress.results()
        assert [r["data"]["commandId"] for r in results] == ["bad\u0007id", "bidi\u202eoverride"]
        assert [r["data"]["reason"] for r in results] == [
            "invalid: id contains control characters"
        ] * 2
        assert len(egress.deadletters()) == 2
    finally:
        await egress.close()
        await platform.close()
    out = capsys.readouterr()
    for line in (out.out + out.err).splitlines():
        assert printable(line), line
        assert "\\u0007" not in line, line
        assert "\u202e" not in line, line


@pytest.mark.parametrize("command_id", ["注文" * 100, "a" * 198 + "ü", "x" * 200, "bad\u0007id"])
def test_the_request_id_header_never_ends_in_a_broken_escape(command_id: str) -> None:
    """X-Request-Id: printable ASCII, at most 200 characters, every ``%`` a whole escape."""
    value = header_safe(command_id)
    assert 0 < len(value) <= 200
    assert all(0x21 <= ord(c) < 0x7F for c in value)
    assert re.fullmatch(r"(?:[^%]|%[0-9A-F]{2})*", value), value
