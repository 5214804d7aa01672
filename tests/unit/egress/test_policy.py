"""Pure egress policy: backoff, token buckets, the circuit breaker, commit points, API errors."""

from __future__ import annotations

import asyncio
import time

import pytest

from bridge.api.client import parse_retry_after
from bridge.core.backoff import Backoff
from bridge.core.backoff import full_jitter as backoff
from bridge.core.errors import ApiError
from bridge.egress.offsets import OffsetTracker
from bridge.egress.policy import CircuitBreaker, CircuitState, RateLimiter, TokenBucket


def test_backoff_is_full_jitter_and_capped() -> None:
    assert backoff(1, 0.5, 30, rand=lambda: 1.0) == 0.5
    assert backoff(3, 0.5, 30, rand=lambda: 1.0) == 2.0
    assert backoff(50, 0.5, 30, rand=lambda: 1.0) == 30
    assert backoff(4, 0.5, 30, rand=lambda: 0.0) == 0.0
    samples = {round(backoff(5, 0.5, 30), 3) for _ in range(50)}
    assert len(samples) > 10  # jittered
    assert all(0 <= s <= 8 for s in samples)


def test_backoff_doubles_from_base_to_cap_and_resets() -> None:
    retry = Backoff(0.2, 1.0)
    assert [retry.next() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    assert retry.failures == 5
    retry.reset()
    assert retry.next() == 0.2


def test_token_bucket_limits_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=2)
    waits = [bucket.delay() for _ in range(5)]
    assert waits[:2] == [0.0, 0.0]
    assert waits[2] == pytest.approx(0.1, abs=0.02)
    assert waits[4] == pytest.approx(0.3, abs=0.02)
    assert TokenBucket(rate=0).delay() == 0.0


async def test_circuit_opens_probes_and_closes() -> None:
    states: list[CircuitState] = []
    breaker = CircuitBreaker(threshold=3, open_seconds=0.2, on_change=states.append)
    for _ in range(3):
        await breaker.allow()
        breaker.failure()
    assert breaker.state is CircuitState.OPEN
    started = time.monotonic()
    await breaker.allow()  # waits for the probe slot
    assert time.monotonic() - started >= 0.15
    assert states[-1] is CircuitState.HALF_OPEN
    second = asyncio.create_task(breaker.allow())  # a second caller waits for the probe
    # it stays blocked through three of its 50 ms re-checks (a window for an absence, with
    # asyncio.wait returning as soon as the task would finish)
    done, _ = await asyncio.wait({second}, timeout=0.15)
    assert not done
    breaker.success()
    await asyncio.wait_for(second, 1)
    assert states == [CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.CLOSED]


async def test_failed_probe_opens_again() -> None:
    breaker = CircuitBreaker(threshold=1, open_seconds=0.05)
    breaker.failure()
    await breaker.allow()
    breaker.failure()
    assert breaker.state is CircuitState.OPEN


def test_successes_reset_the_failure_count() -> None:
    breaker = CircuitBreaker(threshold=3, open_seconds=1)
    for _ in range(5):
        breaker.failure()
        breaker.failure()
        breaker.success()
    assert breaker.state is CircuitState.CLOSED


def test_commit_point_never_skips_an_unfinished_record() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12, 13):
        tracker.add(offset)
    tracker.finish(12)
    assert tracker.commit_point() is None  # 10 still runs
    tracker.finish(10)
    assert tracker.commit_point() == 11
    tracker.finish(11)
    assert tracker.commit_point() == 13
    tracker.finish(13)
    assert tracker.commit_point() == 14
    assert tracker.pending == 0


def test_a_finish_for_an_offset_not_tracked_changes_nothing() -> None:
    """A record finished twice, or one from before a rebalance, neither crashes the consumer nor
    moves the commit point past a record still running (DESIGN.md: "no gaps")."""
    tracker = OffsetTracker()
    tracker.add(5)
    tracker.add(6)
    tracker.finish(6)
    tracker.finish(6)
    tracker.finish(99)
    assert tracker.commit_point() is None  # 5 still runs
    tracker.finish(5)
    assert tracker.commit_point() == 7


@pytest.mark.parametrize(
    ("status", "code", "network", "retriable"),
    [
        (503, 1003, False, True),
        (502, 1012, False, True),
        (500, 1004, False, True),
        (429, None, False, True),
        (0, None, True, True),
        (400, 1003, False, True),
        (400, 1005, False, False),
        (401, 1001, False, False),
        (403, 1002, False, False),
        (404, 1009, False, False),
        (400, 1015, False, False),
        (409, 1014, False, False),
        # DESIGN.md "Egress": the code decides first, then the status.
        (500, 1005, False, False),
        (500, None, False, True),
        (501, None, False, True),
        (499, None, False, False),
        (408, None, False, True),
        (400, None, False, False),
        (503, 9999, False, True),
        (429, 1005, False, False),  # the code decides first, even over a 429
    ],
)
def test_which_errors_retry(status: int, code: int | None, network: bool, retriable: bool) -> None:
    assert ApiError(status, code, "x", network=network).retriable is retriable


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412475.0) == 5.0


async def test_a_bucket_refills_at_its_rate() -> None:
    """20 calls per second: a token spent is back within 0.1 s (time passing is what is under
    test here, not a synchronisation)."""
    bucket = TokenBucket(rate=20, burst=1)
    assert bucket.delay() == 0.0
    await asyncio.sleep(0.1)
    assert bucket.delay() == 0.0


async def test_a_paused_channel_waits_out_the_pause() -> None:
    """DESIGN.md: a 429 pauses the bucket it applies to until Retry-After has passed."""
    limiter = RateLimiter(rate=0, per_channel=0)
    pause = limiter.pause("c", 0.3)
    assert pause >= 0.3
    started = time.monotonic()
    waited = await limiter.acquire("c")
    assert time.monotonic() - started >= pause - 0.01
    assert waited >= pause - 0.01


async def test_a_pause_that_comes_during_a_token_wait_is_honoured() -> None:
    """DESIGN.md: a 429 pauses the bucket until Retry-After has passed, also for a call that
    was already waiting for a token when the 429 came."""
    limiter = RateLimiter(rate=2, per_channel=0)
    await limiter.acquire("c")
    await limiter.acquire("c")  # the burst of 2 is spent: the next call waits about 0.5 s
    third = asyncio.create_task(limiter.acquire("c"))
    await asyncio.sleep(0)  # one turn of the loop: the task is now waiting for its token
    paused_at = time.monotonic()
    pause = limiter.pause("c", 0.0)
    await asyncio.wait_for(third, 5)
    assert time.monotonic() - paused_at >= pause - 0.01
