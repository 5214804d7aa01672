"""Normalization: one webhook body (raw bytes) into one Kafka record.

Pure and total: :func:`normalize` never raises, whatever the bytes. A JSON object with a
string ``type`` becomes a CloudEvent on its event topic (``unknown`` for types we do not know);
anything else becomes a dead-letter record that keeps the raw bytes intact. The confirmed
``message`` body (docs/platform.md) is handled field by field; the other events are
inferred, so every field is looked up defensively and the verbatim ``payload`` is always kept.
When a question in docs/platform.md gets an answer, the change belongs here and nowhere else.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from bridge.contract.jids import NON_CHANNEL_KINDS, is_channel_jid, jid_kind
from bridge.contract.records import (
    INGRESS_SOURCE,
    KNOWN_EVENTS,
    WEBHOOK_TYPE_PREFIX,
    Record,
    Topics,
    cloudevent,
    iso_time,
    text_or_base64,
)

INBOUND = "inbound"
OUTBOUND = "outbound"
_DIRECTIONS = {
    "received": INBOUND,
    "inbound": INBOUND,
    "incoming": INBOUND,
    "in": INBOUND,
    "sent": OUTBOUND,
    "send": OUTBOUND,
    "outbound": OUTBOUND,
    "outgoing": OUTBOUND,
    "out": OUTBOUND,
}
# Which way an event flows when the body does not say (``direction`` absent in older bodies).
_DEFAULT_DIRECTION = {"echo": OUTBOUND}
_MESSAGE_LIKE = frozenset({"message", "echo", "revoke"})
_MAX_ID = 200
#: Deepest nesting of a body that becomes an event (README.md, "Topics and records"): deeper
#: bodies are dead-lettered raw, so that every event record stays renderable (orjson stops at 255).
MAX_DEPTH = 64
#: ``source`` when no channel JID can be found (an agent's echo may name only the contact).
NO_CHANNEL_SOURCE = "/channels/unknown"
_NO_CHANNEL = "no channel JID in the delivery; key left empty rather than the contact alone"
# Unix seconds before 1990 or after 2200 are not plausible; larger values are milliseconds.
_MIN_TS, _MAX_TS = 631_152_000, 7_258_118_400


def normalize(
    body: bytes, topics: Topics, *, received_at: float, channels: frozenset[str] = frozenset()
) -> Record:
    """Turn one delivery into the record to publish. Never raises.

    ``channels``: the deployment's channel JIDs when known (``BRIDGE_CHANNELS`` or
    ``GET /channels``); a JID among them is the channel, whatever its position in the body.
    """
    try:
        return _normalize(body, topics, received_at, channels)
    except Exception as exc:  # a bug here must not lose a delivery: keep it as a dead letter
        return deadletter(body, topics, f"normalizer error: {type(exc).__name__}", received_at)


def _normalize(body: bytes, topics: Topics, received_at: float, channels: frozenset[str]) -> Record:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return deadletter(body, topics, f"not valid JSON: {str(exc)[:200]}", received_at)
    if not isinstance(parsed, dict):
        return deadletter(body, topics, f"JSON {_json_kind(parsed)}, not an object", received_at)
    if _may_nest_deeper(body, MAX_DEPTH) and _deeper_than(parsed, MAX_DEPTH):
        return deadletter(body, topics, f"nested deeper than {MAX_DEPTH} levels", received_at)
    event_type = parsed.get("type")
    if not isinstance(event_type, str) or not event_type:
        return deadletter(body, topics, "no string 'type' field", received_at)
    return _event_record(parsed, body, event_type, topics, received_at, channels)


def _event_record(
    doc: dict[str, Any],
    body: bytes,
    event_type: str,
    topics: Topics,
    received_at: float,
    channels: frozenset[str],
) -> Record:
    """The event's record, in one pass over the parsed body: each field is looked up once and
    written into the one dict that orjson renders (the verbatim body spliced in as bytes)."""
    known = event_type in KNOWN_EVENTS
    label = event_type if known else "unknown"
    channel, contact, actor, direction = _parties(doc, event_type)
    if channels:
        channel, contact, direction = _by_channel_list(doc, channel, contact, direction, channels)
    occurred = _timestamp(doc.get("timestamp"))
    received = iso_time(received_at)
    occurred_at = iso_time(occurred) if occurred is not None else None
    data: dict[str, Any] = {
        "event": event_type if known else event_type[:100],
        "channel": {"jid": channel, "kind": jid_kind(channel)} if channel else None,
        "contact": _contact(doc, contact) if contact is not None else None,
        "direction": direction,
        "occurredAt": occurred_at,
        "receivedAt": received,
        "version": doc.get("version"),
    }
    if actor:
        data["actor"] = {"jid": actor, "kind": jid_kind(actor)}
    if event_type in _MESSAGE_LIKE:
        message = doc.get("message")
        data["message"] = _message(doc, message) if isinstance(message, dict) else None
        # The natural key: the message id (docs/platform.md, "Event ids").
        message_id = _short(message.get("id")) if isinstance(message, dict) else None
        natural = label + "/" + message_id if message_id else label
    else:
        details = _DETAILS.get(event_type)
        if details is not None:
            data.update(details(doc))
        natural = "/".join([label, *_natural_key(doc, event_type)])
    # The body exactly as received: orjson splices the original bytes in, unchanged.
    data["payload"] = orjson.Fragment(body)
    if channel is None:
        data["channelMissing"] = _NO_CHANNEL
    # ``<type>/<natural key>[/<action>]/sha256:<canonical hash>`` (docs/platform.md, "Event
    # ids"): retries (same body, any key order or whitespace) share an id, and two deliveries
    # that differ in anything else never do (a note created, pinned, deleted: three events).
    event_id = natural + "/sha256:" + _canonical_hash(doc)
    event = cloudevent(
        event_id=event_id,
        source="/channels/" + channel if channel else NO_CHANNEL_SOURCE,
        type_=WEBHOOK_TYPE_PREFIX + label,
        time=occurred_at or received,
        subject=contact,
        data=data,
    )
    return Record(
        topic=topics.event(label),
        key=_key(channel, contact),
        value=orjson.dumps(event),
        event_id=event_id,
        label=label,
    )


def deadletter(body: bytes, topics: Topics, reason: str, received_at: float) -> Record:
    """A dead-letter record: the raw bytes intact (UTF-8 text, else base64) and the reason."""
    digest = hashlib.sha256(body).hexdigest()
    text, encoding = text_or_base64(body)
    event_id = f"deadletter/sha256:{digest[:40]}"
    data = {
        "reason": reason,
        "receivedAt": iso_time(received_at),
        "size": len(body),
        "sha256": digest,
        "bodyEncoding": encoding,
        "body": text,
    }
    event = cloudevent(
        event_id=event_id,
        source=INGRESS_SOURCE,
        type_=WEBHOOK_TYPE_PREFIX + "deadletter",
        time=iso_time(received_at),
        data=data,
    )
    return Record(
        topic=topics.deadletter,
        key=None,
        value=orjson.dumps(event),
        event_id=event_id,
        label="deadletter",
    )


def _parties(
    doc: dict[str, Any], event_type: str
) -> tuple[str | None, str | None, str | None, str | None]:
    """(channel, contact, actor, direction), worked out from JID kinds and ``direction``.

    Agents and assistants (``@agent``/``@ai`` JIDs) are actors, never the channel or contact.
    A conversation named in ``contextInfo.conversation`` wins; otherwise ``direction`` (or the
    event's usual flow) says which of ``from``/``to`` is the channel.
    """
    raw_direction = doc.get("direction")
    direction = _DIRECTIONS.get(raw_direction.lower()) if isinstance(raw_direction, str) else None
    # Each end's JID and kind, looked up once: a channel-kind JID is a side of the conversation,
    # another kind (agent, ai, ...) an actor.
    from_jid, from_kind = _jid_and_kind(doc.get("from"))
    to_jid, to_kind = _jid_and_kind(doc.get("to"))
    from_side = from_kind is not None and from_kind not in NON_CHANNEL_KINDS
    to_side = to_kind is not None and to_kind not in NON_CHANNEL_KINDS
    actor = from_jid if from_kind and not from_side else None
    if actor is None and to_kind and not to_side:
        actor = to_jid
    sender = from_jid if from_side else None
    recipient = to_jid if to_side else None

    conversation = _get(doc, "contextInfo", "conversation")
    channel = _jid_of(_get(conversation, "channel"))
    contact = _jid_of(_get(conversation, "contact"))
    if channel and contact and is_channel_jid(channel) and is_channel_jid(contact):
        return channel, contact, actor, direction or _guess_direction(sender, channel)

    flow = direction or _DEFAULT_DIRECTION.get(event_type, INBOUND)
    if flow == OUTBOUND:
        channel, contact = sender, recipient
    else:
        contact, channel = sender, recipient
    if actor and channel is None and contact is None:
        # e.g. an echo from an agent: the one channel-kind JID present is the contact.
        contact = sender or recipient
    return channel, contact, actor, direction or (flow if channel or contact else None)


def _by_channel_list(
    doc: dict[str, Any],
    channel: str | None,
    contact: str | None,
    direction: str | None,
    channels: frozenset[str],
) -> tuple[str | None, str | None, str | None]:
    """Correct an inference with the known channel list: a JID in the list is the channel.

    Only when the inference put a listed JID on the contact's side and the channel's side holds
    none; a direction the body states stays, a guessed one follows the corrected channel.
    """
    if contact not in channels or channel in channels:
        return channel, contact, direction
    channel, contact = contact, channel
    stated = doc.get("direction")
    if isinstance(stated, str) and stated.lower() in _DIRECTIONS:
        return channel, contact, direction
    sender = _jid_of(doc.get("from"))
    if sender is not None and is_channel_jid(sender):
        return channel, contact, _guess_direction(sender, channel)
    return channel, contact, direction


def _guess_direction(sender: str | None, channel: str) -> str | None:
    if sender is None:
        return None
    return OUTBOUND if sender == channel else INBOUND


def _contact(doc: dict[str, Any], contact: str) -> dict[str, Any]:
    out: dict[str, Any] = {"jid": contact}
    sender = doc.get("from")
    if isinstance(sender, dict) and sender.get("jid") == contact:
        for field in ("name", "locale", "picture"):
            if field in sender:
                out[field] = sender[field]
    return out


def _message(doc: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """The per-type fields as the platform sends them (docs/platform.md), with the media and
    the quoted message when the body has them; the body's own dict when it has neither."""
    media = doc.get("media")
    quoted = _get(doc, "contextInfo", "quotedMessage")
    media_ok, quoted_ok = isinstance(media, dict), isinstance(quoted, dict)
    if not (media_ok or quoted_ok):
        return message
    out = dict(message)
    if media_ok:
        out["media"] = media
    if quoted_ok:
        out["quoted"] = quoted
    return out


def _receipt(doc: dict[str, Any]) -> dict[str, Any]:
    part = _first_dict(doc, "receipt", "message")
    status = _first(part, doc, "status")
    return {
        "receipt": {
            "messageId": _first(part, doc, "id", "messageId"),
            "status": status.lower() if isinstance(status, str) else None,
            "statusRaw": status,
        }
    }


def _postback(doc: dict[str, Any]) -> dict[str, Any]:
    part = _first_dict(doc, "postback", "message")
    return {
        "postback": {
            "payload": _first(part, doc, "payload"),
            "title": _first(part, doc, "title"),
            "messageId": _first(part, doc, "id", "messageId"),
        }
    }


def _handover(doc: dict[str, Any]) -> dict[str, Any]:
    part = _first_dict(doc, "handover", "conversation")
    assignee = _first(part, doc, "assignee")
    if isinstance(assignee, dict):
        assignee = assignee.get("jid") or assignee.get("email")
    kind = jid_kind(assignee)
    to = {"ai": "assistant", "agent": "agent"}.get(kind or "", "agent" if assignee else "agents")
    return {"handover": {"assignee": assignee, "to": to}}


def _label(doc: dict[str, Any]) -> dict[str, Any]:
    labels = _first(_first_dict(doc, "label", "conversation"), doc, "labels")
    return {"labels": labels if isinstance(labels, list) else None}


def _note(doc: dict[str, Any]) -> dict[str, Any]:
    note = doc.get("note")
    action = _first(note if isinstance(note, dict) else {}, doc, "action", "event", "status")
    return {"note": note if isinstance(note, dict) else None, "action": action}


def _template_pack(doc: dict[str, Any]) -> dict[str, Any]:
    pack = _first_dict(doc, "template_pack", "templatePack", "template")
    templates = _first(pack, doc, "templates")
    return {"templates": templates if isinstance(templates, list) else ([pack] if pack else None)}


_DETAILS = {
    "receipt": _receipt,
    "postback": _postback,
    "handover": _handover,
    "label": _label,
    "note": _note,
    "template_pack": _template_pack,
}


def _natural_key(doc: dict[str, Any], event_type: str) -> list[str]:
    """The natural key docs/platform.md names for this event, plus the action the body names."""
    if event_type in _MESSAGE_LIKE:
        message_id = _short(_get(doc, "message", "id"))
        return [message_id] if message_id else []
    if event_type == "receipt":
        receipt = _receipt(doc)["receipt"]
        message_id, status = _short(receipt["messageId"]), _short(receipt["status"])
        return [message_id, status[:40]] if message_id and status else []
    if event_type == "note":
        note = _note(doc)
        note_id, action = _short(_get(note["note"], "id")), _short(note["action"])
        if note_id:
            return [note_id, action[:40]] if action else [note_id]
    return []


def _canonical_hash(doc: dict[str, Any]) -> str:
    """Hash of the body with sorted keys: retries of one delivery hash the same."""
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()[:40]


def _key(channel: str | None, contact: str | None) -> bytes | None:
    """``<channel>/<contact>``, the channel alone, or none: never the contact alone, which would
    put part of one conversation on another partition (DESIGN.md, "Event records")."""
    if channel and contact:
        return f"{channel}/{contact}".encode()
    return channel.encode() if channel else None


def _timestamp(value: object) -> float | None:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    seconds = float(value)
    if seconds > _MAX_TS:
        seconds /= 1000.0
    return seconds if _MIN_TS <= seconds <= _MAX_TS else None


def _jid_and_kind(value: object) -> tuple[str | None, str | None]:
    """A JID (or an object with a ``jid``) and its kind; (None, None) when it is not one."""
    if isinstance(value, dict):
        value = value.get("jid")
    kind = jid_kind(value)
    return (value, kind) if kind else (None, None)  # type: ignore[return-value]


def _jid_of(value: object) -> str | None:
    if isinstance(value, dict):
        value = value.get("jid")
    return value if jid_kind(value) else None  # type: ignore[return-value]


def _get(value: object, *path: str) -> Any:
    for name in path:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def _first_dict(doc: dict[str, Any], *names: str) -> dict[str, Any]:
    for name in names:
        value = doc.get(name)
        if isinstance(value, dict):
            return value
    return {}


def _first(part: dict[str, Any], doc: dict[str, Any], *names: str) -> Any:
    for source in (part, doc):
        for name in names:
            if name in source and source[name] is not None:
                return source[name]
    return None


def _short(value: object) -> str | None:
    """A short id-like value for an event id, or None (too long, empty, or with a control
    character or ``/``, which would make the id ambiguous or unsafe to print)."""
    if isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value)
        if 0 < len(text) <= _MAX_ID and text.isprintable() and "/" not in text:
            return text
    return None


def _may_nest_deeper(body: bytes, limit: int) -> bool:
    """False when ``body`` has too few brackets to nest past ``limit`` levels: each level opens
    one (brackets inside strings only add to the count). Two C-speed scans instead of a walk."""
    return body.count(b"{") + body.count(b"[") > limit


def _deeper_than(doc: object, limit: int) -> bool:
    """Whether ``doc`` nests objects/arrays more than ``limit`` levels (iterative: no recursion)."""
    stack: list[tuple[object, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        items = value.values() if isinstance(value, dict) else value
        stack.extend((v, depth + 1) for v in items if isinstance(v, dict | list))  # type: ignore[attr-defined]
    return False


def _json_kind(value: object) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )
