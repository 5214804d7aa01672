"""Delivery status records: the send log, the status topic, and the receipt's command id.

Pure core (docs/status.md). Three record shapes:

- ``P.commands.sent``, the send log: one CloudEvent (``im.eazy.command.sent``) per outcome of a
  ``send-message`` command, written by egress before the command's result; keyed by
  ``<channelJid>/<contactJid>`` like the receipts on ``P.events.receipt``, so the two topics are
  co-partitioned and one status worker owns a conversation's sends and receipts.
- ``P.commands.status``, compacted, keyed by ``<kind>/<commandId>``: one CloudEvent
  (``im.eazy.command.status``) per change of a command's delivery (:mod:`bridge.core.delivery`).
- a receipt on ``P.events.receipt`` for a message the bridge sent names its command: the
  CloudEvents extension attribute ``commandid`` and ``data.commandId`` (:func:`with_command`).

Parsers here never raise: a record they cannot read is None, and the caller counts it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson

from bridge.contract.records import (
    COMMAND_SENT,
    COMMAND_STATUS,
    EGRESS_SOURCE,
    Record,
    Topics,
    cloudevent,
    iso_time,
)
from bridge.core.delivery import Delivery

SENT_TYPE = COMMAND_SENT
STATUS_TYPE = COMMAND_STATUS
STATUS_SOURCE = "/spotler-bridge/status"
#: CloudEvents extension attribute names are lower-case letters and digits only.
COMMAND_ID_ATTRIBUTE = "commandid"
#: A message id longer than this is not one the platform returned (they are 40 hex characters
#: or UUIDs, spotler/webhooks.md): such a receipt is never matched.
MAX_MESSAGE_ID = 200


@dataclass(frozen=True, slots=True)
class SendEntry:
    """One send-log entry: a send-message command was accepted (``sent``) or ``failed``."""

    kind: str
    command_id: str
    channel: str | None
    contact: str | None
    state: str  # "sent" or "failed"
    message_id: str | None
    at: float  # when egress learned the outcome (epoch seconds)
    received_at: float | None  # the command's Kafka timestamp (epoch seconds)
    reason: str | None = None


def status_key(kind: str, command_id: str) -> bytes:
    """The key of a command on the status topic: the kind and id the result id uses."""
    return f"{kind}/{command_id}".encode()


def conversation_key(channel: str | None, contact: str | None) -> bytes | None:
    return f"{channel}/{contact}".encode() if channel and contact else None


def send_log_record(topics: Topics, entry: SendEntry, fallback_key: bytes | None) -> Record:
    """The send-log record of ``entry``; keyed by its conversation (else ``fallback_key``)."""
    data: dict[str, Any] = {
        "commandId": entry.command_id,
        "command": entry.kind,
        "channelJid": entry.channel,
        "contactJid": entry.contact,
        "state": entry.state,
        "messageId": entry.message_id,
        "sentAt": iso_time(entry.at),
        "commandReceivedAt": iso_time(entry.received_at) if entry.received_at else None,
    }
    if entry.reason is not None:
        data["reason"] = entry.reason
    event_id = f"sent/{entry.kind}/{entry.command_id}/{entry.message_id or entry.state}"
    event = cloudevent(
        event_id=event_id,
        source=EGRESS_SOURCE,
        type_=SENT_TYPE,
        time=iso_time(entry.at),
        subject=entry.command_id,
        data=data,
    )
    return Record(
        topic=topics.sent,
        key=conversation_key(entry.channel, entry.contact) or fallback_key,
        value=orjson.dumps(event),
        event_id=event_id,
        label=entry.kind,
    )


def parse_send_log(value: bytes | None) -> SendEntry | None:
    """The entry of a send-log record, None when it is not one."""
    data = _data(value)
    if data is None:
        return None
    command_id, kind, state = data.get("commandId"), data.get("command"), data.get("state")
    message_id = data.get("messageId")
    if not (isinstance(command_id, str) and isinstance(kind, str)) or state not in (
        "sent",
        "failed",
    ):
        return None
    if state == "sent" and not _plausible_id(message_id):
        return None
    return SendEntry(
        kind=kind,
        command_id=command_id,
        channel=_str(data.get("channelJid")),
        contact=_str(data.get("contactJid")),
        state=state,
        message_id=message_id if isinstance(message_id, str) else None,
        at=_epoch(data.get("sentAt")) or 0.0,
        received_at=_epoch(data.get("commandReceivedAt")),
        reason=_str(data.get("reason")),
    )


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the status join needs of a receipt event; ``message_id`` None when unusable."""

    event_id: str
    message_id: str | None
    status: object  # as received (statusRaw), any JSON type
    at: str  # the event's time
    received_at: float | None  # when ingress received it (epoch seconds)


def parse_receipt(value: bytes | None) -> Receipt | None:
    """The receipt in a ``P.events.receipt`` record, None when the record is no CloudEvent."""
    if value is None:
        return None
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        return None
    data = event.get("data")
    part = data.get("receipt") if isinstance(data, dict) else None
    part = part if isinstance(part, dict) else {}
    message_id = part.get("messageId")
    status = part.get("statusRaw", part.get("status"))
    time = event.get("time")
    received = data.get("receivedAt") if isinstance(data, dict) else None
    return Receipt(
        event_id=event["id"],
        message_id=message_id if _plausible_id(message_id) else None,
        status=status,
        at=time if isinstance(time, str) else "",
        received_at=_epoch(received),
    )


def status_record(
    topics: Topics, delivery: Delivery, channel: str | None, contact: str | None, now: float
) -> Record:
    """The status record of ``delivery`` as it stands: its state, message id and history."""
    data: dict[str, Any] = {
        "commandId": delivery.command_id,
        "command": delivery.kind,
        "channelJid": channel,
        "contactJid": contact,
        "messageId": delivery.message_id,
        "state": delivery.state,
        "history": delivery.history,
    }
    if delivery.dropped:
        data["historyDropped"] = delivery.dropped
    # Deterministic: the same command with the same facts has the same id, so a record written
    # again after a restart can be recognised downstream.
    count = len(delivery.history) + delivery.dropped
    event_id = f"status/{delivery.kind}/{delivery.command_id}/{count}"
    event = cloudevent(
        event_id=event_id,
        source=STATUS_SOURCE,
        type_=STATUS_TYPE,
        time=iso_time(now),
        subject=delivery.command_id,
        data=data,
    )
    return Record(
        topic=topics.status,
        key=status_key(delivery.kind, delivery.command_id),
        value=orjson.dumps(event),
        event_id=event_id,
        label=delivery.state or "none",
    )


def with_command(value: bytes, command_id: str) -> bytes:
    """A receipt event's bytes with its command named, the rest (and the payload) unchanged.

    Spliced into the serialized event rather than parsed and dumped again, so that ``payload``
    keeps the webhook body byte for byte. The event is a JSON object whose last member is
    ``data`` and whose earlier members are strings, so the first ``"data":{`` is the top-level
    one (a quote inside a JSON string is always escaped).
    """
    marker = b'"data":{'
    at = value.find(marker)
    if not value.startswith(b"{") or at < 0:
        return value
    quoted = orjson.dumps(command_id)
    at += len(marker)
    comma = b"" if value[at : at + 1] == b"}" else b","
    return (
        b'{"' + COMMAND_ID_ATTRIBUTE.encode() + b'":' + quoted + b","
        + value[1:at] + b'"commandId":' + quoted + comma + value[at:]
    )  # fmt: skip


def _data(value: bytes | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    data = event.get("data") if isinstance(event, dict) else None
    return data if isinstance(data, dict) else None


def _plausible_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_MESSAGE_ID and value.isprintable()


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _epoch(value: object) -> float | None:
    """Epoch seconds of an RFC 3339 UTC time as :func:`iso_time` writes it; None otherwise."""
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
