"""Delivery state of a sent command: receipt statuses to sent, delivered, read or failed.

Pure core (docs/status.md). A command's delivery is a small state machine fed with facts: the
egress's outcome (``sent`` with the platform's message id, or ``failed`` before or at sending)
and the receipts the platform reports for that message id. Its state only moves forward::

    sent  <  failed  <  delivered  <  read

``failed`` ranks below ``delivered``: a receipt saying the message reached the phone is evidence
that outweighs a failure report for the same message (the platform is not known to send both;
the order is our choice, written down in docs/status.md). Every fact that is new (not a repeat
of a receipt already seen, by its event id) goes into the history, also when it does not move
the state: a late ``delivered`` after ``read`` is history, not the state.

INFERENCE: the reference does not list receipt statuses (spotler/webhooks.md, "receipt":
"probably sent/delivered/read/failed in some case"). :data:`STATUS_STATES` maps the plausible
names case-insensitively; any other status is kept as received, with no state, and moves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SENT, FAILED, DELIVERED, READ = "sent", "failed", "delivered", "read"
#: The order states move in; a fact of lower rank never replaces the state.
RANK = {SENT: 0, FAILED: 1, DELIVERED: 2, READ: 3}
STATES = tuple(RANK)

#: INFERENCE (spotler/webhooks.md, "receipt"): receipt status names, lower-cased, to states.
STATUS_STATES: dict[str, str] = {
    "sent": SENT,
    "accepted": SENT,
    "queued": SENT,
    "delivered": DELIVERED,
    "received": DELIVERED,
    "read": READ,
    "seen": READ,
    "played": READ,
    "failed": FAILED,
    "error": FAILED,
    "undelivered": FAILED,
    "rejected": FAILED,
}

#: History entries kept per command: the status record stays small whatever the platform sends.
MAX_HISTORY = 32
#: A status string longer than this is cut in the history (it is never a state then).
MAX_STATUS_CHARS = 64


def state_of(status: object) -> str | None:
    """The state a receipt status maps to (case-insensitive), None when it maps to none."""
    if not isinstance(status, str) or len(status) > MAX_STATUS_CHARS:
        return None
    return STATUS_STATES.get(status.strip().lower())


def later(current: str | None, new: str | None) -> str | None:
    """The state after ``new`` arrives at ``current``: the higher-ranked of the two."""
    if new is None:
        return current
    if current is None or RANK[new] > RANK[current]:
        return new
    return current


@dataclass(slots=True)
class Delivery:
    """One command's delivery: its current state and the facts that led there.

    ``history`` entries are plain JSON-ready dicts: ``state`` (None when the status maps to
    none), ``status`` (as received, cut to :data:`MAX_STATUS_CHARS`), ``at`` (RFC 3339),
    ``source`` (``egress`` or ``receipt``) and, for receipts, ``eventId``.
    """

    kind: str
    command_id: str
    state: str | None = None
    message_id: str | None = None
    received_at: float | None = None  # the command's Kafka timestamp (epoch seconds)
    history: list[dict[str, Any]] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    dropped: int = 0  # history entries dropped beyond MAX_HISTORY

    def add(
        self,
        *,
        state: str | None,
        status: object,
        at: str,
        source: str,
        event_id: str | None = None,
    ) -> bool:
        """Add one fact; False for a repeat (same event id, or the same egress state again)."""
        key = event_id if event_id is not None else f"{source}:{state}"
        if key in self._seen:
            return False
        self._seen.add(key)
        raw = status if isinstance(status, str) else None
        entry: dict[str, Any] = {
            "state": state,
            "status": raw[:MAX_STATUS_CHARS] if raw is not None else None,
            "at": at,
            "source": source,
        }
        if event_id is not None:
            entry["eventId"] = event_id
        self.history.append(entry)
        if len(self.history) > MAX_HISTORY:
            # keep the first fact (how it started) and the latest ones
            del self.history[1]
            self.dropped += 1
        self.state = later(self.state, state)
        return True
