"""A 429 pauses the rate-limit bucket it applies to until ``Retry-After`` has passed, with a
floor on the delay (DESIGN.md, "Egress"; issue 9 item 9)."""

from __future__ import annotations

import asyncio
import time

import pytest

from bridge.egress.policy import PAUSE_FLOOR, RateLimiter

A = "31612345678@whatsapp.eazy.im"
B = "31687654321@whatsapp.eazy.im"


async def timed_acquire(limiter: RateLimiter, channel: str) -> float:
    started = time.monotonic()
    await limiter.acquire(channel)
    return time.monotonic() - started


#: What "not back to back" means here: at least half a second between the 429 and the next call.
MIN_PAUSE = 0.5


@pytest.mark.parametrize("retry_after", [None, 0.0, 0.01])
async def test_retry_after_zero_or_absent_still_pauses_for_the_floor(
    retry_after: float | None,
) -> None:
    """``Retry-After: 0`` (or none, or a tiny one) pauses the channel for the floor, so the
    next call to it cannot follow at once."""
    limiter = RateLimiter(rate=0, per_channel=100)
    assert limiter.pause(A, retry_after) >= MIN_PAUSE
    waited = await asyncio.wait_for(timed_acquire(limiter, A), PAUSE_FLOOR + 2)
    assert waited >= MIN_PAUSE


async def test_the_pause_lasts_retry_after_and_holds_only_that_channel() -> None:
    """A longer ``Retry-After`` is honoured as given; another channel is served at once."""
    limiter = RateLimiter(rate=0, per_channel=100)
    assert limiter.pause(A, 1.5) == 1.5
    paused = asyncio.create_task(timed_acquire(limiter, A))
    other = await asyncio.wait_for(timed_acquire(limiter, B), 1.0)
    assert other < 0.1
    assert not paused.done()
    assert await asyncio.wait_for(paused, 4) >= 1.5 - 0.01


async def test_every_waiting_call_to_the_channel_waits_for_the_pause() -> None:
    """Calls that were already waiting for a token (not only the one that got the 429) wait
    until the pause is over: a pause set while they sleep is checked again before calling."""
    limiter = RateLimiter(rate=0, per_channel=10)  # burst 10, then one token per 0.1 s
    for _ in range(10):
        await limiter.acquire(A)
    waiting = [asyncio.create_task(timed_acquire(limiter, A)) for _ in range(3)]
    await asyncio.sleep(0)  # let them take their (future) tokens and start sleeping
    started = time.monotonic()
    limiter.pause(A, 1.2)
    await asyncio.wait_for(asyncio.gather(*waiting), 5)
    assert time.monotonic() - started >= 1.2 - 0.01


async def test_without_channel_limits_the_global_bucket_is_paused() -> None:
    """With no per-channel limit the 429 applies to the global bucket: every channel waits."""
    limiter = RateLimiter(rate=0, per_channel=0)
    limiter.pause(A, 1.1)
    waits = await asyncio.wait_for(
        asyncio.gather(timed_acquire(limiter, A), timed_acquire(limiter, B)), 4
    )
    assert min(waits) >= 1.1 - 0.01
