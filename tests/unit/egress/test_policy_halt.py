"""The call policy's waits end as soon as the command is halted (issue 26, items 4 and 7):
a 429 pause of the rate limiter and the open circuit breaker both give up at once."""

from __future__ import annotations

import asyncio
import time

from bridge.egress.policy import CircuitBreaker, CircuitState, RateLimiter


async def test_a_paused_rate_limiter_gives_up_when_halted() -> None:
    limiter = RateLimiter(0.0, 0.0)
    limiter.pause("c", 60.0)
    halt = asyncio.Event()
    waiting = asyncio.create_task(limiter.acquire("c", halt))
    await asyncio.sleep(0)
    assert not waiting.done()
    started = time.monotonic()
    halt.set()
    async with asyncio.timeout(2):
        await waiting
    assert time.monotonic() - started < 1.0


async def test_an_open_breaker_gives_up_when_halted_without_taking_the_probe() -> None:
    breaker = CircuitBreaker(1, 60.0)
    breaker.failure()
    assert breaker.state is CircuitState.OPEN
    halt = asyncio.Event()
    waiting = asyncio.create_task(breaker.allow(halt))
    await asyncio.sleep(0)
    assert not waiting.done()
    halt.set()
    async with asyncio.timeout(2):
        assert await waiting is False  # not the probe
    assert breaker.state is CircuitState.OPEN


async def test_without_a_halt_the_breaker_still_lets_one_probe_through() -> None:
    breaker = CircuitBreaker(1, 0.05)
    breaker.failure()
    async with asyncio.timeout(2):
        assert await breaker.allow() is True
    assert breaker.state is CircuitState.HALF_OPEN
