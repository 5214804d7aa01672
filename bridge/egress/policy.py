"""Egress call policy: rate limits and the circuit breaker in front of the platform API.

Decides *when* an API call may happen; knows nothing of Kafka or HTTP. (The retry delays come
from :mod:`bridge.core.backoff`, with full jitter.) The rate limiter is a token bucket per
channel under a global one; a 429 pauses the bucket it applies to until ``Retry-After`` has
passed (never less than :data:`PAUSE_FLOOR`). The breaker opens after ``threshold`` consecutive
retriable failures, lets one probe through after ``open_seconds``, and closes when a probe
succeeds; a probe that ends in any other way (even an exception) is released, so the breaker can
never stay half-open with no probe running. Their waits take a ``halt`` event and end as soon
as it is set (stop, or the command's partition revoked): the caller checks it afterwards.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable

#: The shortest pause a 429 causes, whatever its ``Retry-After`` says (``0`` or absent too).
PAUSE_FLOOR = 1.0


async def _sleep(seconds: float, halt: asyncio.Event | None) -> bool:
    """Sleep ``seconds``; False (at once) when ``halt`` is set first."""
    if halt is None:
        await asyncio.sleep(seconds)
        return True
    if halt.is_set():
        return False
    try:
        async with asyncio.timeout(seconds):
            await halt.wait()
    except TimeoutError:
        return True
    return False


class TokenBucket:
    """``rate`` tokens per second, bursts up to ``burst``; ``rate`` 0 means unlimited."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self.paused_until = 0.0

    def pause(self, seconds: float) -> None:
        """No token is handed out for ``seconds`` (a 429 from the platform)."""
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    def delay(self) -> float:
        """Take a token now, returning how long to wait before using it (0 if available)."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class RateLimiter:
    """A global bucket and one bucket per channel; both must allow a call."""

    def __init__(self, rate: float, per_channel: float, max_channels: int = 10_000) -> None:
        self._global = TokenBucket(rate)
        self._per_channel = per_channel
        self._channels: dict[str, TokenBucket] = {}
        self._max_channels = max_channels

    def _bucket(self, channel: str) -> TokenBucket:
        bucket = self._channels.get(channel)
        if bucket is None:
            if len(self._channels) >= self._max_channels:
                self._channels.clear()  # bounded memory; a fresh bucket only allows a burst
            bucket = self._channels[channel] = TokenBucket(self._per_channel)
        return bucket

    def pause(self, channel: str, retry_after: float | None) -> float:
        """A 429 for ``channel``: pause its bucket, or the global one when channels are not
        limited apart; returns the pause in seconds (at least :data:`PAUSE_FLOOR`)."""
        seconds = max(PAUSE_FLOOR, retry_after or 0.0)
        (self._bucket(channel) if self._per_channel > 0 else self._global).pause(seconds)
        return seconds

    async def acquire(self, channel: str, halt: asyncio.Event | None = None) -> float:
        """Wait until a call to ``channel`` is allowed, or ``halt`` is set; returns the seconds
        waited."""
        bucket = self._bucket(channel)
        waited = 0.0
        while True:
            paused = max(self._global.paused_until, bucket.paused_until) - time.monotonic()
            if paused <= 0:
                break
            if not await _sleep(paused, halt):
                return waited
            waited += paused
        wait = max(self._global.delay(), bucket.delay())
        if wait > 0:
            if not await _sleep(wait, halt):
                return waited
            waited += wait
            # a 429 may have paused the bucket meanwhile: honour it before calling
            while (
                paused := max(self._global.paused_until, bucket.paused_until) - time.monotonic()
            ) > 0:
                if not await _sleep(paused, halt):
                    return waited
                waited += paused
        return waited


class CircuitState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Stops calls while the platform keeps failing; ``on_change`` hears every transition."""

    def __init__(
        self,
        threshold: int,
        open_seconds: float,
        on_change: Callable[[CircuitState], None] | None = None,
    ) -> None:
        self.threshold = threshold
        self.open_seconds = open_seconds
        self.state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._left_closed_at: float | None = None
        self._probing = False
        self._closed = asyncio.Event()
        self._closed.set()
        self._on_change = on_change

    def _set(self, state: CircuitState) -> None:
        if state is self.state:
            return
        self.state = state
        if state is CircuitState.CLOSED:
            self._closed.set()
            self._left_closed_at = None
        else:
            self._closed.clear()
            if self._left_closed_at is None:
                self._left_closed_at = time.monotonic()
        if self._on_change is not None:
            self._on_change(state)

    async def allow(self, halt: asyncio.Event | None = None) -> bool:
        """Wait until a call may be made: at once when closed; one probe at a time otherwise.
        Gives up (returning False) as soon as ``halt`` is set.

        Returns True when this call is the probe (hand that to :meth:`release`)."""
        while True:
            if self.state is CircuitState.CLOSED or (halt is not None and halt.is_set()):
                return False
            remaining = self._opened_at + self.open_seconds - time.monotonic()
            if remaining <= 0 and not self._probing:
                self._probing = True
                self._set(CircuitState.HALF_OPEN)
                return True
            waits = [asyncio.ensure_future(self._closed.wait())]
            if halt is not None:
                waits.append(asyncio.ensure_future(halt.wait()))
            try:
                await asyncio.wait(
                    waits, timeout=max(remaining, 0.05), return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiting in waits:
                    waiting.cancel()

    def not_closed_for(self) -> float:
        """Seconds since the breaker last left the closed state; 0 while closed."""
        since = self._left_closed_at
        return 0.0 if since is None else time.monotonic() - since

    def release(self, probe: bool) -> None:
        """A call ended without an answer about the platform's health (a bug, a cancellation):
        if it was the probe, let the next call probe instead, at once."""
        if probe and self._probing and self.state is CircuitState.HALF_OPEN:
            self._probing = False
            self._opened_at = time.monotonic() - self.open_seconds  # probe again at once
            self._set(CircuitState.OPEN)

    def success(self) -> None:
        self._failures = 0
        self._probing = False
        self._set(CircuitState.CLOSED)

    def failure(self) -> None:
        """A retriable failure (5xx, 429, network): count it, open at the threshold."""
        self._failures += 1
        if self._probing or self._failures >= self.threshold:
            self._probing = False
            self._opened_at = time.monotonic()
            self._set(CircuitState.OPEN)

    def neutral(self) -> None:
        """A call that ended without saying anything about the platform's health (e.g. 400)."""
        if self._probing:
            self.success()
