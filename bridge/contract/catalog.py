"""The published contract: every topic the bridge reads or writes, and the schema of its values.

Pure core. The JSON Schemas in ``bridge/contract/schemas/`` are the one source; this module
names which topic each describes, its key, who writes and who reads it, and loads the schemas
(package data, no I/O library). :mod:`bridge.contract.asyncapi` builds the AsyncAPI document
from both, and the tests validate every record they read back from Kafka with
:func:`topic_schema` (docs/contract.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from bridge.contract.records import (
    COMMAND_FAILED,
    COMMAND_SENT,
    COMMAND_STATUS,
    COMMAND_SUCCEEDED,
    EVENT_TYPES,
    WEBHOOK_TYPE_PREFIX,
    schema_id,
)

#: The schemas, by name: ``schemas/<name>.schema.json``.
SCHEMA_NAMES = (
    "event",
    "deadletter",
    "send-message",
    "update-conversation",
    "result",
    "command-deadletter",
    "sent",
    "status",
)

CONVERSATION_KEY = "<channelJid>/<contactJid> (UTF-8)"
INGRESS = "bridge ingress (bridge serve, bridge ingress)"
EGRESS = "bridge egress (bridge serve, bridge egress)"
DOWNSTREAM = "downstream services"
STATUS_WORKER = "bridge egress's status worker (docs/status.md)"
#: Consumer groups of the bridge's readers: (setting, default).
EGRESS_GROUP = ("BRIDGE_EGRESS_GROUP_ID", "spotler-bridge-egress")
STATUS_GROUP = ("BRIDGE_STATUS_GROUP_ID", "spotler-bridge-status")


@dataclass(frozen=True, slots=True)
class Topic:
    """One topic under the prefix: ``<prefix>.<suffix>``."""

    suffix: str
    schema: str
    summary: str
    key: str
    publisher: str
    subscriber: str
    types: tuple[str, ...] = ()  # the CloudEvent types its records carry (none: not CloudEvents)
    compacted: bool = False
    group: tuple[str, str] | None = None  # the bridge's consumer group reading it, if any

    def name(self, prefix: str) -> str:
        return f"{prefix}.{self.suffix}"

    @property
    def channel_id(self) -> str:
        """An identifier for the AsyncAPI document (letters, digits, ``-``, ``_``)."""
        return self.suffix.replace(".", "-")


def _event_topic(event: str) -> Topic:
    return Topic(
        suffix=f"events.{event}",
        schema="event",
        summary=f"Webhook events of type {event!r}, normalized into CloudEvents",
        key=CONVERSATION_KEY + "; the channel JID alone when the delivery names no contact;"
        " no key when it names no channel",
        publisher=INGRESS,
        subscriber=DOWNSTREAM + (", " + STATUS_WORKER if event == "receipt" else ""),
        types=(WEBHOOK_TYPE_PREFIX + event,),
    )


TOPICS: tuple[Topic, ...] = (
    *(_event_topic(event) for event in (*EVENT_TYPES, "unknown")),
    Topic(
        suffix="events.deadletter",
        schema="deadletter",
        summary="Deliveries that could not be parsed, with the reason and the raw body",
        key="none",
        publisher=INGRESS,
        subscriber="operators, downstream services that audit deliveries",
        types=(WEBHOOK_TYPE_PREFIX + "deadletter",),
    ),
    Topic(
        suffix="commands.send-message",
        schema="send-message",
        summary="Send a message: POST {API}/channels/{channelJid}/messages/{contactJid}",
        key=CONVERSATION_KEY + " (the producer's; one conversation stays in order)",
        publisher=DOWNSTREAM,
        subscriber=EGRESS,
        group=EGRESS_GROUP,
    ),
    Topic(
        suffix="commands.update-conversation",
        schema="update-conversation",
        summary="Update a conversation:"
        " PATCH {API}/channels/{channelJid}/conversations/{contactJid}",
        key=CONVERSATION_KEY + " (the producer's; one conversation stays in order)",
        publisher=DOWNSTREAM,
        subscriber=EGRESS,
        group=EGRESS_GROUP,
    ),
    Topic(
        suffix="commands.results",
        schema="result",
        summary="One outcome per command: succeeded with the platform's response, or failed",
        key=CONVERSATION_KEY + "; the command's own key when it named no valid conversation",
        publisher=EGRESS,
        subscriber=DOWNSTREAM,
        types=(COMMAND_SUCCEEDED, COMMAND_FAILED),
    ),
    Topic(
        suffix="commands.deadletter",
        schema="command-deadletter",
        summary="Commands that could not be parsed or validated, bytes intact, with the reason",
        key="the command record's own key",
        publisher=EGRESS,
        subscriber="operators, the producing services",
        types=("im.eazy.command.deadletter",),
    ),
    Topic(
        suffix="commands.sent",
        schema="sent",
        summary="The send log: the outcome of each send-message command (sent with the"
        " platform's message id, or failed), written before the command's result",
        key=CONVERSATION_KEY + " (co-partitioned with events.receipt); the command record's"
        " own key when it named no valid conversation",
        publisher=EGRESS,
        subscriber=STATUS_WORKER + "; bridge ingress (no group: names the command on receipts)",
        types=(COMMAND_SENT,),
        group=STATUS_GROUP,
    ),
    Topic(
        suffix="commands.status",
        schema="status",
        summary="Delivery status per command (sent, failed, delivered, read), compacted: the"
        " latest record of a key is the command's state",
        key="<command kind>/<command id> (UTF-8), e.g. send-message/order-51616-shipped",
        publisher=STATUS_WORKER,
        subscriber=DOWNSTREAM + ", bridge status",
        types=(COMMAND_STATUS,),
        compacted=True,
    ),
)


def schema_text(name: str) -> str:
    """The schema file as shipped in the package."""
    return resources.files("bridge.contract").joinpath("schemas", f"{name}.schema.json").read_text()


def load_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_text(name))
    if schema.get("$id") != schema_id(name):
        raise ValueError(f"{name}.schema.json: $id {schema.get('$id')!r} is not {schema_id(name)}")
    return schema


def topic_of(prefix: str, topic: str) -> Topic | None:
    """The contract's topic ``topic`` is under ``prefix``, or None when it is not one."""
    for spec in TOPICS:
        if spec.name(prefix) == topic:
            return spec
    return None


def find_topic(topic: str) -> Topic | None:
    """The contract's topic a full name ends with (any prefix), or None."""
    for spec in TOPICS:
        if topic.endswith("." + spec.suffix) and len(topic) > len(spec.suffix) + 1:
            return spec
    return None


def topic_schema(spec: Topic) -> dict[str, Any]:
    """The schema of one topic's values: its file's schema, with the ``type`` fixed to the
    topic's CloudEvent types where the file covers several topics (the events)."""
    schema = load_schema(spec.schema)
    if spec.schema != "event":
        return schema
    narrowed = dict(schema)
    properties = dict(schema["properties"])
    properties["type"] = {**properties["type"], "enum": list(spec.types)}
    narrowed["properties"] = properties
    return narrowed
