"""The status join of one partition: order, grace, window and cap (issue 22, docs/status.md)."""

from __future__ import annotations

import tracemalloc

from bridge.contract.status import Receipt, SendEntry
from bridge.egress.status_join import Held, StatusJoin

NOW = 1_800_000_000.0


def sent(n: int, at: float = NOW) -> SendEntry:
    return SendEntry("send-message", f"c{n}", "ch@whatsapp.eazy.im", "k@whatsapp.eazy.im",
                     "sent", f"m{n:040d}", at, at - 1.0)  # fmt: skip


def receipt(n: int, status: object, event: str | None = None) -> Receipt:
    return Receipt(event or f"r{n}/{status}", f"m{n:040d}", status, "t", NOW + 5.0)


def test_receipts_before_their_send_are_matched_when_it_comes() -> None:
    join = StatusJoin(window=3600, max_entries=100, grace=60)
    assert join.on_receipt(receipt(1, "read"), NOW) == ("pending", None)
    assert join.on_receipt(receipt(1, "delivered"), NOW)[0] == "pending"
    changes = join.on_send(sent(1), NOW + 1)
    assert [c.tracked.delivery.state for c in changes] == ["read"] * 3
    assert [c.reached for c in changes] == ["sent", "read", None]
    assert [c.receipt for c in changes] == [False, True, True]
    assert join.pending == 0


def test_a_receipt_whose_send_never_comes_is_unmatched_after_the_grace_period() -> None:
    join = StatusJoin(window=3600, max_entries=100, grace=60)
    join.on_receipt(receipt(7, "delivered"), NOW)
    assert join.expire(NOW + 59) == 0
    assert join.expire(NOW + 61) == 1
    assert join.on_send(sent(7), NOW + 62)[-1].tracked.delivery.state == "sent"


def test_unusable_and_duplicate_receipts() -> None:
    join = StatusJoin(window=3600, max_entries=100, grace=60)
    assert join.on_receipt(Receipt("e", None, "read", "t", None), NOW) == ("unusable", None)
    join.on_send(sent(2), NOW)
    assert join.on_receipt(receipt(2, "delivered"), NOW)[0] == "matched"
    assert join.on_receipt(receipt(2, "delivered"), NOW) == ("duplicate", None)


def test_a_failed_send_is_failed_at_once() -> None:
    join = StatusJoin(window=3600, max_entries=100, grace=60)
    entry = SendEntry("send-message", "c9", None, None, "failed", None, NOW, None, "expired")
    [change] = join.on_send(entry, NOW)
    assert (change.tracked.delivery.state, change.reached) == ("failed", "failed")
    assert len(join) == 0


def test_sends_leave_at_the_end_of_the_window_or_over_the_cap() -> None:
    join = StatusJoin(window=100, max_entries=3, grace=60)
    for n in range(5):
        join.on_send(sent(n, NOW + n), NOW + n)
    assert len(join) == 3
    assert join.evicted == 2
    assert join.on_receipt(receipt(0, "read"), NOW + 5)[0] == "pending"  # forgotten
    assert join.on_receipt(receipt(4, "read"), NOW + 5)[0] == "matched"
    join.expire(NOW + 103.5)
    assert len(join) == 1  # sends at NOW+2, NOW+3 are out of the 100 s window


def test_memory_stays_under_the_cap_with_200000_sends_in_the_window() -> None:
    """Issue 22: 200,000 sends in the window, cap 100,000: the join holds the cap, and the
    memory it holds is that of the cap (measured: bytes per held send printed on failure)."""
    join = StatusJoin(window=7 * 86400, max_entries=100_000, grace=600)
    tracemalloc.start()
    try:
        for n in range(200_000):
            join.on_send(sent(n, NOW + n * 0.001), NOW + n * 0.001)
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(join) == 100_000
    assert join.evicted == 100_000
    per_send = held / len(join)
    assert per_send < 2500, f"{per_send:.0f} bytes per held send"


def test_a_live_receipt_matched_by_a_replayed_send_is_live() -> None:
    """After a restart the worker replays sends silently; a receipt read live that waited for
    such a send must still be written (the SIGKILL scenario lost `read` records without this)."""
    join = StatusJoin(window=3600, max_entries=100, grace=60)
    join.on_receipt(receipt(3, "delivered"), NOW, live=False)
    join.on_receipt(receipt(3, "read"), NOW, live=True)
    changes = join.on_send(sent(3), NOW, live=False)
    assert [(c.receipt, c.live) for c in changes] == [(False, False), (True, False), (True, True)]
    assert changes[-1].tracked.delivery.state == "read"


def test_the_cap_holds_for_the_process_over_all_its_partitions() -> None:
    """BRIDGE_STATUS_MAX_ENTRIES bounds a process, not each partition (the first real-broker
    run held 3 x the cap with 3 partitions)."""
    held = Held(10)
    joins = [StatusJoin(3600, 10, 60, held) for _ in range(3)]
    for n in range(30):
        joins[n % 3].on_send(sent(n), NOW)
    assert sum(len(j) for j in joins) == 10 == held.count
    joins[0].drop()
    assert held.count == sum(len(j) for j in joins[1:])
