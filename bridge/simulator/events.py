"""Webhook bodies the simulator emits, shaped like the platform's (docs/platform.md).

Owns the shapes only: ``message`` follows the confirmed real delivery; ``receipt``,
``handover`` and ``label`` are inferred shapes on the same envelope (``type``, ``version`` 2,
``timestamp`` in Unix seconds, ``from`` the contact, ``to`` the channel). Pure; no I/O.
"""

from __future__ import annotations

import time
from typing import Any


def _envelope(event: str, channel: str, contact: str) -> dict[str, Any]:
    return {
        "from": {"jid": contact},
        "timestamp": int(time.time()),
        "to": channel,
        "type": event,
        "version": 2,
    }


def inbound_message(
    channel: str,
    contact: str,
    message: dict[str, Any],
    *,
    media: dict[str, Any] | None = None,
    name: str | None = None,
    locale: str = "en_US",
) -> dict[str, Any]:
    """A customer's ``message``: ``message`` already holds its ``id`` and ``type``."""
    body: dict[str, Any] = {
        "contextInfo": {"conversation": {}, "metadata": {}, "originator": None},
        "direction": "received",
        "from": {"jid": contact, "locale": locale, "name": name, "picture": None},
        "message": dict(sorted(message.items())),
        "timestamp": int(time.time()),
        "to": channel,
        "type": "message",
        "version": 2,
    }
    if media is not None:
        body["media"] = media
    return dict(sorted(body.items()))


def receipt(channel: str, contact: str, message_id: str, status: str) -> dict[str, Any]:
    """A receipt for a message; ``status`` is ``delivered``, ``read`` or ``failed`` (an assumption:
    ``rules.ASSUMPTIONS["receipt-status"]``)."""
    body = _envelope("receipt", channel, contact)
    body["message"] = {"id": message_id, "status": status}
    return dict(sorted(body.items()))


def handover(channel: str, contact: str, assignee: str | None) -> dict[str, Any]:
    """The conversation's new assignee (null: the agents' pool)."""
    body = _envelope("handover", channel, contact)
    body["assignee"] = assignee
    return dict(sorted(body.items()))


def label(channel: str, contact: str, labels: list[str]) -> dict[str, Any]:
    """The conversation's labels after a change (empty: unlabelled)."""
    body = _envelope("label", channel, contact)
    body["labels"] = list(labels)
    return dict(sorted(body.items()))
