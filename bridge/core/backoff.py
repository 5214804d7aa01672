"""Exponential backoff: the one rule for waiting between tries, used by every retry loop.

The delay before retry number ``n`` (1 = the first retry) is ``base * 2**(n - 1)``, capped at
``cap``; with jitter it is a random value between 0 and that ceiling ("full jitter"), so that many
callers failing together do not retry together. Egress retries API calls with jitter; the Kafka
start-up retry, the spool drain and result publishing use :class:`Backoff` without it.
Pure: it computes delays and never sleeps.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def ceiling(attempt: int, base: float, cap: float) -> float:
    """The longest delay before retry number ``attempt`` (1 = the first retry)."""
    return min(cap, base * (2.0 ** min(max(attempt, 1) - 1, 60)))


def full_jitter(
    attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """A random delay in ``[0, ceiling(attempt))`` before retry number ``attempt``."""
    return ceiling(attempt, base, cap) * rand()


class Backoff:
    """The delays of one retry loop: :meth:`next` after a failure, :meth:`reset` after success."""

    def __init__(self, base: float, cap: float) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def next(self) -> float:
        """Count a failure and return how long to wait before the next try."""
        self.failures += 1
        return ceiling(self.failures, self.base, self.cap)

    def reset(self) -> None:
        self.failures = 0
