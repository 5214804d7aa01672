"""RecentIds, the repeat filter: a size bound and a time-to-live, with an injected clock."""

from __future__ import annotations

from bridge.core.dedup import RecentIds


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_id_is_forgotten_after_its_ttl() -> None:
    """Seen within the TTL: a repeat; after it (strictly later): new again."""
    clock = Clock()
    ids = RecentIds(10, ttl=60.0, clock=clock)
    ids.add("a")
    clock.now += 60.0
    assert "a" in ids  # exactly at the TTL it is still remembered
    clock.now += 0.001
    assert "a" not in ids
    assert len(ids) == 0  # an expired id is dropped when looked up


def test_the_oldest_ids_go_first_when_full() -> None:
    """Past the size bound the oldest id is evicted; re-adding refreshes an id's place."""
    ids = RecentIds(2, ttl=60.0, clock=Clock())
    ids.add("a")
    ids.add("b")
    ids.add("a")  # a is now the newest
    ids.add("c")
    assert "b" not in ids
    assert "a" in ids
    assert "c" in ids
    assert len(ids) == 2


def test_size_zero_remembers_nothing_and_non_strings_are_never_seen() -> None:
    ids = RecentIds(0, ttl=60.0, clock=Clock())
    ids.add("a")
    assert "a" not in ids
    assert 5 not in RecentIds(5, ttl=60.0)


def test_size_one_remembers_the_latest_id() -> None:
    """A memory of one id still acknowledges an immediate repeat (DESIGN.md, "Ingress" 5)."""
    ids = RecentIds(1, ttl=60.0, clock=Clock())
    ids.add("a")
    assert "a" in ids
    ids.add("b")
    assert "b" in ids
    assert "a" not in ids
