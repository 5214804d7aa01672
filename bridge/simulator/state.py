"""The simulator's in-memory world: conversations, webhooks, templates and what it recorded.

Owns the data every handler shares, kept under typed ``web.AppKey``s on the application (no
globals). Plain data and small pure helpers; no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bridge.simulator import rules
from bridge.simulator.faults import FaultInjector
from bridge.simulator.settings import SimulatorSettings

WEBHOOK_EVENTS = rules.WEBHOOK_EVENTS
#: Records kept for inspection; the oldest go first so a long local run stays bounded.
RECORD_LIMIT = 10_000

ConversationKey = tuple[str, str]


def iso(t: float | None) -> str | None:
    """The platform's timestamp format: ``2019-04-04T15:29:47.000000Z``."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True)
class Conversation:
    channel: str
    contact: str
    created_at: float = field(default_factory=time.time)
    assignee: str | None = None
    labels: list[str] = field(default_factory=list)
    status: str = "OPEN"
    team: str | None = None
    unread_count: int | None = None
    last_received: float | None = None
    last_sent: float | None = None
    received: int = 0
    sent: int = 0

    @property
    def id(self) -> str:
        digest = hashlib.sha1(f"{self.channel}/{self.contact}".encode(), usedforsecurity=False)
        return base64.b64encode(digest.digest()).decode()

    def to_json(self) -> dict[str, Any]:
        """The "Read conversation" object."""
        return {
            "assignee": self.assignee,
            "channel": {"jid": self.channel},
            "contact": {"jid": self.contact},
            "createdAt": iso(self.created_at),
            "id": self.id,
            "labels": list(self.labels),
            "lastMessageReceivedAt": iso(self.last_received),
            "lastMessageSentAt": iso(self.last_sent),
            "messagesReceived": self.received,
            "messagesSent": self.sent,
            "status": self.status,
            "team": {"jid": self.team} if self.team else None,
            "unreadCount": self.unread_count,
        }


@dataclass(slots=True)
class Webhook:
    id: str
    url: str
    events: list[str]
    headers: dict[str, str] | None = None
    enabled: bool = True
    created_at: float = field(default_factory=time.time)
    updated_at: float | None = None

    def wants(self, event: str) -> bool:
        """Whether an ``event`` body goes to this webhook (``revoke`` rides on ``message``)."""
        return self.enabled and ("message" if event == "revoke" else event) in self.events

    def to_json(self) -> dict[str, Any]:
        """The reference's webhook object."""
        return {
            "assistant": None,
            "cipherKey": None,
            "createdAt": iso(self.created_at),
            "enabled": self.enabled,
            "events": list(self.events),
            "headers": dict(self.headers) if self.headers is not None else None,
            "id": self.id,
            "updatedAt": iso(self.updated_at),
            "url": self.url,
        }


@dataclass(slots=True)
class SimState:
    """Everything ``POST /_sim/reset`` clears."""

    conversations: dict[ConversationKey, Conversation] = field(default_factory=dict)
    webhooks: dict[str, dict[str, Webhook]] = field(default_factory=dict)
    messages: dict[ConversationKey, list[dict[str, Any]]] = field(default_factory=dict)
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECORD_LIMIT))
    deliveries: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECORD_LIMIT))
    faults: FaultInjector = field(default_factory=FaultInjector)
    #: The templates of every channel ("Read templates"), fresh per simulator.
    templates: list[dict[str, Any]] = field(default_factory=rules.default_templates)

    def conversation(self, channel: str, contact: str) -> Conversation:
        """The conversation of ``channel``/``contact``, created OPEN if it is new."""
        key = (channel, contact)
        if key not in self.conversations:
            self.conversations[key] = Conversation(channel, contact)
        return self.conversations[key]

    def reset(self) -> None:
        self.conversations.clear()
        self.webhooks.clear()
        self.messages.clear()
        self.requests.clear()
        self.deliveries.clear()
        self.faults = FaultInjector()
        self.templates = rules.default_templates()


SETTINGS = web.AppKey("simulator_settings", SimulatorSettings)
STATE = web.AppKey("simulator_state", SimState)
