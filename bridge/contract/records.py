"""The Kafka contract: topic names, the record type, and CloudEvents envelopes.

Pure core: what a record on each topic looks like (README.md, "Topics and records"),
independent of how it is published. Imports no I/O library.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any

#: Event types with a topic of their own (``<prefix>.events.<type>``).
EVENT_TYPES = (
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
)
KNOWN_EVENTS = frozenset(EVENT_TYPES)

CLOUDEVENTS_CONTENT_TYPE = b"application/cloudevents+json"
WEBHOOK_TYPE_PREFIX = "im.eazy.webhook."
COMMAND_SUCCEEDED = "im.eazy.command.succeeded"
COMMAND_FAILED = "im.eazy.command.failed"
COMMAND_SENT = "im.eazy.command.sent"
COMMAND_STATUS = "im.eazy.command.status"
INGRESS_SOURCE = "/spotler-bridge/ingress"
EGRESS_SOURCE = "/spotler-bridge/egress"

#: Where the JSON Schemas of the values live (``bridge/contract/schemas/``, ``bridge contract``).
SCHEMA_BASE = "https://spotler-bridge/schemas/"
#: The major version of each schema: raised only by a change that breaks consumers
#: (docs/contract.md, "Versions"). A schema's ``$id`` and the ``dataschema`` of its records name it.
SCHEMA_VERSIONS = {
    "event": 1,
    "deadletter": 1,
    "send-message": 1,
    "update-conversation": 1,
    "result": 1,
    "command-deadletter": 1,
    "sent": 1,
    "status": 1,
}


def schema_id(name: str) -> str:
    """The versioned ``$id`` of a schema: ``<base>v<major>/<name>.schema.json``."""
    return f"{SCHEMA_BASE}v{SCHEMA_VERSIONS[name]}/{name}.schema.json"


#: ``dataschema`` per CloudEvent type the bridge writes.
_DATASCHEMAS = {
    **{WEBHOOK_TYPE_PREFIX + t: schema_id("event") for t in (*EVENT_TYPES, "unknown")},
    WEBHOOK_TYPE_PREFIX + "deadletter": schema_id("deadletter"),
    COMMAND_SUCCEEDED: schema_id("result"),
    COMMAND_FAILED: schema_id("result"),
    "im.eazy.command.deadletter": schema_id("command-deadletter"),
    COMMAND_SENT: schema_id("sent"),
    COMMAND_STATUS: schema_id("status"),
}

#: Kafka headers on every CloudEvents record (structured mode).
RECORD_HEADERS: tuple[tuple[str, bytes], ...] = (("content-type", CLOUDEVENTS_CONTENT_TYPE),)


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names under one prefix (``BRIDGE_TOPIC_PREFIX``)."""

    prefix: str

    def event(self, event_type: str) -> str:
        """The topic of a known event type, ``unknown`` for any other."""
        suffix = event_type if event_type in KNOWN_EVENTS else "unknown"
        return f"{self.prefix}.events.{suffix}"

    @property
    def unknown(self) -> str:
        return f"{self.prefix}.events.unknown"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}.events.deadletter"

    @property
    def send_message(self) -> str:
        return f"{self.prefix}.commands.send-message"

    @property
    def update_conversation(self) -> str:
        return f"{self.prefix}.commands.update-conversation"

    @property
    def results(self) -> str:
        return f"{self.prefix}.commands.results"

    @property
    def status(self) -> str:
        """Compacted, keyed by command: its delivery state (docs/status.md)."""
        return f"{self.prefix}.commands.status"

    @property
    def sent(self) -> str:
        """The send log: the egress's outcome of each send, keyed by conversation."""
        return f"{self.prefix}.commands.sent"

    @property
    def commands_deadletter(self) -> str:
        return f"{self.prefix}.commands.deadletter"

    def all_event_topics(self) -> list[str]:
        """Every topic ingress writes to."""
        return [self.event(t) for t in EVENT_TYPES] + [self.unknown, self.deadletter]


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record, ready to publish.

    ``label`` names the record in metrics (the event type, ``deadletter``, or the command kind):
    a small, known set of values, unlike ``event_id``.
    """

    topic: str
    key: bytes | None
    value: bytes
    event_id: str
    label: str
    headers: tuple[tuple[str, bytes], ...] = RECORD_HEADERS


@functools.lru_cache(maxsize=1024)
def _iso_second(second: int) -> str:
    return dt.datetime.fromtimestamp(second, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def iso_time(epoch_seconds: float) -> str:
    """RFC 3339 UTC time with millisecond precision, as CloudEvents ``time`` wants it.

    The seconds part is cached: under load, thousands of timestamps a second share it.
    """
    millis = round(epoch_seconds * 1000)
    second, ms = divmod(millis, 1000)
    return f"{_iso_second(second)}.{ms:03d}Z"


def cloudevent(
    *,
    event_id: str,
    source: str,
    type_: str,
    time: str,
    data: Any,
    subject: str | None = None,
) -> dict[str, Any]:
    """A CloudEvents 1.0 envelope in JSON structured mode; ``dataschema`` names the versioned
    schema of the type's records."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": type_,
    }
    if subject:
        event["subject"] = subject
    event["time"] = time
    event["datacontenttype"] = "application/json"
    dataschema = _DATASCHEMAS.get(type_)
    if dataschema is not None:
        event["dataschema"] = dataschema
    event["data"] = data
    return event


def text_or_base64(body: bytes) -> tuple[str, str]:
    """Raw bytes for a JSON field: ``(text, "utf-8")`` when they decode, else base64.

    Dead-letter records carry the bytes this way (``body`` and ``bodyEncoding``), so that
    nothing is lost and the record stays valid JSON.
    """
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), "base64"
