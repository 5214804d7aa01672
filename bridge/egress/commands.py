"""Commands and their outcomes: parsing a command record, and the result and dead-letter records.

Pure core. A command is a JSON object (or a CloudEvent whose ``data`` is one) on
``<prefix>.commands.send-message`` or ``<prefix>.commands.update-conversation``. Parsing checks
everything that can be checked before calling the platform (shape, id, JIDs, the message or
the changes, via :mod:`bridge.egress.validation`) and raises
:class:`~bridge.core.errors.InvalidCommand`
naming the first problem. Every command ends in exactly one result record (README.md,
"Delivery guarantees").
"""

from __future__ import annotations

import hashlib
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from bridge.contract.jids import conversation_problem
from bridge.contract.records import (
    COMMAND_FAILED,
    COMMAND_SUCCEEDED,
    EGRESS_SOURCE,
    Record,
    Topics,
    cloudevent,
    iso_time,
    text_or_base64,
)
from bridge.core.errors import ApiError, InvalidCommand
from bridge.egress.validation import conversation_changes_problems, send_body_problems

Kind = Literal["send-message", "update-conversation"]
_MAX_ID = 200
#: A result reports at most this many characters of an id (with the SHA-256 of a longer one).
_MAX_REPORTED_ID = 1024

#: Bytes of a command kept in the dead letter that replaces one Kafka refused (as ingress's
#: set-aside keeps of an event): enough to recognise it, small enough for any topic.
HEAD_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Position:
    """Where a command came from in Kafka."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    kind: Kind
    channel: str
    contact: str
    body: dict[str, Any]  # the API request body: {"message", "media"?} or the changes

    @property
    def conversation(self) -> str:
        return f"{self.channel}/{self.contact}"


def kind_of(topic: str, topics: Topics) -> Kind | None:
    if topic == topics.send_message:
        return "send-message"
    if topic == topics.update_conversation:
        return "update-conversation"
    return None


def parse(raw: bytes | None, kind: Kind) -> Command:
    """Parse and validate one command record, or raise InvalidCommand."""
    try:
        doc = orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:
        raise InvalidCommand(f"not valid JSON: {str(exc)[:120]}") from exc
    if not isinstance(doc, dict):
        raise InvalidCommand("command must be a JSON object")
    fallback_id = None
    if doc.get("specversion") is not None and "data" in doc:  # a CloudEvent carrying the command
        fallback_id, doc = doc.get("id"), doc["data"]
        if not isinstance(doc, dict):
            raise InvalidCommand("CloudEvent data must be a command object")
    command_id = doc.get("id", fallback_id)
    if not isinstance(command_id, str) or not command_id:
        raise InvalidCommand(f"id: required, a string of 1 to {_MAX_ID} characters")
    problem = id_problem(command_id)
    if problem:
        raise InvalidCommand(problem)
    channel, contact = doc.get("channelJid"), doc.get("contactJid")
    problem = conversation_problem(channel, contact)
    if problem:
        raise InvalidCommand(problem)
    assert isinstance(channel, str)  # checked just above
    assert isinstance(contact, str)
    if kind == "send-message":
        allowed = {"id", "channelJid", "contactJid", "message", "media"}
        body = {k: doc[k] for k in ("message", "media") if k in doc}
        problems = send_body_problems(body)
    else:
        allowed = {"id", "channelJid", "contactJid", "changes"}
        changes = doc.get("changes")
        body = changes if isinstance(changes, dict) else {}
        problems = (
            conversation_changes_problems(changes) if "changes" in doc else ["changes: required"]
        )
    unknown = sorted(set(doc) - allowed)
    if unknown:
        problems.insert(0, f"{unknown[0]}: unknown field")
    if problems:
        raise InvalidCommand(problems[0])
    return Command(id=command_id, kind=kind, channel=channel, contact=contact, body=body)


def is_clean_id(value: str) -> bool:
    """True when ``value`` has no control or format characters (Unicode categories Cc, Cf, Cs)."""
    return not any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in value)


def id_problem(value: str) -> str | None:
    """Why a (non-empty) id string cannot name a command, in words a person understands."""
    if not is_clean_id(value):
        return "id contains control characters"
    if len(value) > _MAX_ID:
        return f"id longer than {_MAX_ID} characters"
    return None


def safe_id(command_id: str) -> str:
    """The command id where it goes into a result id, a subject or a log line: the id itself
    when it is valid, else ``sha256:`` and 40 hex digits of its UTF-8 bytes, so no control
    character and no unbounded string reaches a Kafka key, a header or a log line."""
    if command_id and id_problem(command_id) is None:
        return command_id
    return "sha256:" + _sha256(command_id)[:40]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def salvage_id(raw: bytes | None, position: Position) -> str:
    """A command id for a record that could not be parsed: the id string as given, whatever it
    holds (``data.id`` for a CloudEvent, else the envelope's id, as :func:`parse` reads it), so
    its producer finds the result; a record without a non-empty id string is named by its
    place."""
    try:
        doc = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        doc = None
    candidates: list[object] = []
    if isinstance(doc, dict):
        data = doc.get("data")
        if doc.get("specversion") is not None and isinstance(data, dict):
            candidates.append(data.get("id"))
        candidates.append(doc.get("id"))
    for candidate in candidates:
        if candidate is None:
            continue
        if isinstance(candidate, str) and candidate:
            return candidate
        break  # an id is there but not a string: name the record by its place instead
    return f"{position.topic}/{position.partition}/{position.offset}"


def result_record(
    topics: Topics,
    *,
    command_id: str,
    kind: str,
    channel: str | None,
    contact: str | None,
    attempts: int,
    position: Position,
    response: dict[str, Any] | None = None,
    error: ApiError | None = None,
    reason: str | None = None,
) -> Record:
    """The one result of a command: succeeded with the platform's response, or failed and why."""
    data: dict[str, Any] = {
        "commandId": command_id[:_MAX_REPORTED_ID],
        "command": kind,
        "channelJid": channel,
        "contactJid": contact,
        "attempts": attempts,
        "status": "succeeded" if reason is None and error is None else "failed",
        "source": {
            "topic": position.topic,
            "partition": position.partition,
            "offset": position.offset,
        },
    }
    if response is not None:
        data["response"] = response
        if kind == "send-message" and isinstance(response.get("id"), str):
            data["messageId"] = response["id"]
    if error is not None:
        data["error"] = {
            "httpStatus": error.status or None,
            "code": error.code,
            "message": error.message,
            "traceId": error.trace_id,
        }
    if reason is not None:
        data["reason"] = reason
    if len(command_id) > _MAX_REPORTED_ID:
        data["commandIdSha256"] = _sha256(command_id)
    name = safe_id(command_id)
    result_id = f"result/{kind}/{name}"
    event = cloudevent(
        event_id=result_id,
        source=EGRESS_SOURCE,
        type_=COMMAND_SUCCEEDED if data["status"] == "succeeded" else COMMAND_FAILED,
        time=iso_time(time.time()),
        subject=name,
        data=data,
    )
    key = f"{channel}/{contact}".encode() if channel and contact else _clean_key(position.key)
    return Record(
        topic=topics.results,
        key=key,
        value=orjson.dumps(event),
        event_id=result_id,
        label=kind,
    )


def _clean_key(key: bytes | None) -> bytes | None:
    """The consumed key, for a result that has no conversation of its own, if it is UTF-8
    without control characters and of a plain length; else none."""
    if key is None or len(key) > 2 * _MAX_REPORTED_ID:
        return None
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return key if is_clean_id(text) else None


def deadletter_record(
    topics: Topics,
    raw: bytes | None,
    position: Position,
    reason: str,
    *,
    refused: str | None = None,
) -> Record:
    """The command as it was consumed (bytes intact), with where it came from and why it failed.

    With ``refused`` (why Kafka refused that dead letter for good) it is the bounded one that
    replaces it: the command's first :data:`HEAD_BYTES` bytes, its size and sha256 digest."""
    body = raw or b""
    extra: dict[str, Any] = {}
    if refused is not None:
        extra = {
            "refused": f"refused by Kafka: {refused}"[:500],
            "size": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "truncated": len(body) > HEAD_BYTES,
        }
        body = body[:HEAD_BYTES]
    text, encoding = text_or_base64(body)
    data = {
        "reason": reason,
        "source": {
            "topic": position.topic,
            "partition": position.partition,
            "offset": position.offset,
        },
        "key": position.key.decode("utf-8", "replace") if position.key else None,
        "bodyEncoding": encoding,
        "body": text,
        **extra,
    }
    event_id = f"deadletter/{position.topic}/{position.partition}/{position.offset}"
    event = cloudevent(
        event_id=event_id,
        source=EGRESS_SOURCE,
        type_="im.eazy.command.deadletter",
        time=iso_time(time.time()),
        data=data,
    )
    return Record(
        topic=topics.commands_deadletter,
        key=position.key,
        value=orjson.dumps(event),
        event_id=event_id,
        label="deadletter",
    )


def minimal_result(record: Record, refused: str) -> Record:
    """The small result that replaces ``record`` when Kafka refused it for good: the same id,
    type, status, command, conversation, attempts, source and ``messageId``, the error's status
    and code, without the platform's response or long texts, and ``refused`` saying why."""
    event = orjson.loads(record.value)
    data = event.get("data", {})
    small: dict[str, Any] = {
        k: data[k]
        for k in ("commandId", "command", "channelJid", "contactJid", "attempts", "status")
        if k in data
    }
    small["source"] = data.get("source")
    if isinstance(data.get("messageId"), str):
        small["messageId"] = data["messageId"]
    error = data.get("error")
    if isinstance(error, dict):
        small["error"] = {
            "httpStatus": error.get("httpStatus"),
            "code": error.get("code"),
            "message": str(error.get("message"))[:200],
            "traceId": error.get("traceId"),
        }
    if data.get("reason") is not None:
        small["reason"] = str(data["reason"])[:500]
    small["refused"] = f"refused by Kafka: {refused}"[:500]
    event["data"] = small
    return Record(
        topic=record.topic,
        key=record.key,
        value=orjson.dumps(event),
        event_id=record.event_id,
        label=record.label,
    )
