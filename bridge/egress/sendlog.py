"""The send log: what egress tells the status worker about each send-message command.

Owns one decision, kept out of the runner: which outcome of a command becomes which send-log
entry (:mod:`bridge.contract.status`). A ``send-message`` command accepted by the platform is
``sent`` with the message id of its ``201 {"id"}``; one that failed before or at sending
(invalid, expired, refused, a bug) is ``failed``. ``update-conversation`` commands have no
delivery and no entry. Egress publishes the entry before the command's result, so once a result
says ``succeeded`` the send log already holds the message id (docs/status.md). Pure.
"""

from __future__ import annotations

import time
from typing import Any

from bridge.contract.records import Record, Topics
from bridge.contract.status import SendEntry, send_log_record
from bridge.egress.commands import Position


def entry_record(
    topics: Topics,
    *,
    command_id: str,
    kind: str,
    channel: str | None,
    contact: str | None,
    position: Position,
    response: dict[str, Any] | None = None,
    failed: str | None = None,
) -> Record | None:
    """The send-log record of a finished command; None for commands that send nothing."""
    if kind != "send-message":
        return None
    message_id = response.get("id") if response is not None else None
    sent = failed is None and isinstance(message_id, str)
    entry = SendEntry(
        kind=kind,
        command_id=command_id,
        channel=channel,
        contact=contact,
        state="sent" if sent else "failed",
        message_id=message_id if sent else None,
        at=time.time(),
        received_at=position.timestamp_ms / 1000.0 if position.timestamp_ms > 0 else None,
        reason=None if sent else (failed or "no message id in the platform's answer"),
    )
    return send_log_record(topics, entry, position.key)
