"""The status join of one partition: send-log entries and receipts to status changes.

Pure (docs/status.md). The status worker keeps one :class:`StatusJoin` per partition number it
owns of the co-partitioned ``P.commands.sent`` and ``P.events.receipt``, and feeds it their
records in offset order. Bounded: sends older than the window (``BRIDGE_STATUS_WINDOW``) or
beyond the entry cap (``BRIDGE_STATUS_MAX_ENTRIES``) are forgotten; a receipt whose send is not
known waits up to the grace period (``BRIDGE_STATUS_GRACE``), then counts as unmatched.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from bridge.contract.records import iso_time
from bridge.contract.status import Receipt, SendEntry
from bridge.core.delivery import Delivery, state_of


@dataclass(slots=True)
class Tracked:
    """A command's delivery with what its status record names besides."""

    delivery: Delivery
    channel: str | None
    contact: str | None
    sent_at: float


@dataclass(frozen=True, slots=True)
class Change:
    """A fact changed a command's delivery: write its status record.

    ``reached``: the state when this fact moved the command to it for the first time (for the
    delivery-time histogram), else None; ``at``: when the fact happened (epoch seconds) if known.
    """

    tracked: Tracked
    reached: str | None
    at: float | None
    receipt: bool = False  # the fact was a receipt (else the send log)
    live: bool = True  # the fact's record is past the committed offset: write the change


class Held:
    """Sends held by all the joins of one process, against the process's cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.count = 0


class StatusJoin:
    def __init__(
        self, window: float, max_entries: int, grace: float, held: Held | None = None
    ) -> None:
        self._window, self._max, self._grace = window, max_entries, grace
        self._held = held if held is not None else Held(max_entries)
        self._by_message: OrderedDict[str, Tracked] = OrderedDict()
        self._by_command: dict[tuple[str, str], Tracked] = {}
        self._pending: OrderedDict[str, list[tuple[Receipt, float, bool]]] = OrderedDict()
        self._pending_count = 0
        self.evicted = 0  # sends forgotten early because of the cap

    def __len__(self) -> int:
        return len(self._by_message)

    def drop(self) -> None:
        """Forget everything (the partition was revoked): its sends leave the process's count."""
        self._held.count -= len(self._by_message)
        self._by_message.clear()
        self._by_command.clear()
        self._pending.clear()
        self._pending_count = 0

    @property
    def pending(self) -> int:
        return self._pending_count

    def on_send(self, entry: SendEntry, now: float, live: bool = True) -> list[Change]:
        """A send-log entry: a ``sent`` starts tracking (and matches waiting receipts)."""
        if entry.state == "failed" or entry.message_id is None:
            delivery = Delivery(entry.kind, entry.command_id, received_at=entry.received_at)
            delivery.add(
                state="failed", status=entry.reason, at=iso_time(entry.at), source="egress"
            )
            tracked = Tracked(delivery, entry.channel, entry.contact, entry.at)
            return [Change(tracked, "failed", entry.at, live=live)]
        if entry.at and entry.at < now - self._window:
            return []  # too old to track: its receipts will not match
        key = (entry.kind, entry.command_id)
        found = self._by_command.get(key)
        if found is None:
            delivery = Delivery(entry.kind, entry.command_id, received_at=entry.received_at)
            found = self._by_command[key] = Tracked(
                delivery, entry.channel, entry.contact, entry.at
            )
        tracked = found
        if entry.message_id in self._by_message:
            return []  # the same send again (a send log record read twice)
        tracked.delivery.message_id = entry.message_id
        self._by_message[entry.message_id] = tracked
        self._held.count += 1
        changes = []
        before = tracked.delivery.state
        if tracked.delivery.add(
            state="sent", status="sent", at=iso_time(entry.at), source="egress"
        ):
            reached = "sent" if before is None else None
            changes.append(Change(tracked, reached, entry.at, live=live))
        # A waiting receipt's change is live when the receipt was, whatever the send was.
        for receipt, _arrived, receipt_live in self._pending.pop(entry.message_id, []):
            self._pending_count -= 1
            change = self._apply(tracked, receipt, receipt_live)
            if change is not None:
                changes.append(change)
        self._evict(now)
        return changes

    def on_receipt(
        self, receipt: Receipt, now: float, live: bool = True
    ) -> tuple[str, Change | None]:
        """A receipt: ``(outcome, change)``; outcome is matched, pending, unusable or duplicate."""
        if receipt.message_id is None:
            return "unusable", None
        tracked = self._by_message.get(receipt.message_id)
        if tracked is None:
            waiting = self._pending.setdefault(receipt.message_id, [])
            if any(r.event_id == receipt.event_id for r, _, _ in waiting):
                return "duplicate", None
            waiting.append((receipt, now, live))
            self._pending_count += 1
            return "pending", None
        change = self._apply(tracked, receipt, live)
        return ("matched" if change is not None else "duplicate"), change

    def expire(self, now: float) -> int:
        """Forget receipts that waited longer than the grace period; how many (unmatched)."""
        expired = 0
        while self._pending:
            message_id, waiting = next(iter(self._pending.items()))
            if waiting[0][1] > now - self._grace and self._pending_count <= self._max:
                break
            del self._pending[message_id]
            self._pending_count -= len(waiting)
            expired += len(waiting)
        self._evict(now)
        return expired

    def _apply(self, tracked: Tracked, receipt: Receipt, live: bool) -> Change | None:
        delivery = tracked.delivery
        before = delivery.state
        state = state_of(receipt.status)
        if not delivery.add(
            state=state, status=receipt.status, at=receipt.at, source="receipt",
            event_id=receipt.event_id,
        ):  # fmt: skip
            return None
        moved = delivery.state != before and delivery.state == state
        return Change(
            tracked, state if moved else None, receipt.received_at, receipt=True, live=live
        )

    def _evict(self, now: float) -> None:
        horizon = now - self._window
        while self._by_message:
            message_id, tracked = next(iter(self._by_message.items()))
            over = self._held.count > self._held.cap  # the process's cap, over all partitions
            if not over and tracked.sent_at >= horizon:
                break
            del self._by_message[message_id]
            self._held.count -= 1
            self.evicted += over
            key = (tracked.delivery.kind, tracked.delivery.command_id)
            if self._by_command.get(key) is tracked and tracked.delivery.message_id == message_id:
                del self._by_command[key]
