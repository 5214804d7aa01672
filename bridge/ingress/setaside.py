"""Records Kafka refuses for good: the small dead letter published in their place.

Owns the shape of that dead letter. A record Kafka will never take (too large, invalid, not
authorized: :class:`~bridge.core.errors.RecordRejected`) must not block the records behind it,
nor be lost without trace. It is replaced by a dead letter on ``P.events.deadletter`` that
names the reason, the original event id and topic, the record's size and sha256 digest, and
holds the head of the record (whose ``data.payload`` is the delivery as received). The schema
is ``bridge/contract/schemas/deadletter.schema.json``. Pure, no I/O.
"""

from __future__ import annotations

import hashlib
import time

import orjson

from bridge.contract.records import (
    INGRESS_SOURCE,
    WEBHOOK_TYPE_PREFIX,
    Record,
    Topics,
    cloudevent,
    iso_time,
)

#: Bytes of the refused record kept in the dead letter: enough to recognise it, small enough
#: for any topic.
HEAD_BYTES = 4096


def set_aside(record: Record, reason: str, *, now: float | None = None) -> Record:
    """The dead letter that replaces ``record`` (same id for the same record, every time)."""
    digest = hashlib.sha256(record.value).hexdigest()
    head = _utf8_head(record.value, HEAD_BYTES)
    received = iso_time(time.time() if now is None else now)
    data = {
        "reason": f"refused by Kafka: {reason}"[:500],
        "receivedAt": received,
        "size": len(record.value),
        "sha256": digest,
        "bodyEncoding": "utf-8",
        "body": head,
        "truncated": len(head.encode()) < len(record.value),
        "eventId": record.event_id,
        "topic": record.topic,
    }
    event_id = f"deadletter/sha256:{digest[:40]}"
    event = cloudevent(
        event_id=event_id,
        source=INGRESS_SOURCE,
        type_=WEBHOOK_TYPE_PREFIX + "deadletter",
        time=received,
        data=data,
    )
    return Record(
        topic=deadletter_topic(record.topic),
        key=None,
        value=orjson.dumps(event),
        event_id=event_id,
        label="deadletter",
    )


def deadletter_topic(topic: str) -> str:
    """``P.events.deadletter`` for a record on any ``P.events.*`` topic."""
    prefix, sep, _ = topic.rpartition(".events.")
    return Topics(prefix if sep else topic.rpartition(".")[0] or topic).deadletter


def _utf8_head(value: bytes, limit: int) -> str:
    """The first ``limit`` bytes as text, cut at a character boundary (records are JSON)."""
    return value[:limit].decode("utf-8", errors="ignore")
