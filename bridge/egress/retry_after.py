"""How much of the platform's ``Retry-After`` egress honours: at most ``BRIDGE_RETRY_AFTER_MAX``.

Owns the cap on a ``Retry-After`` (a 429 asking for a day, or an HTTP date a year ahead, would
otherwise pause a channel's bucket that long), the count of capped values
(``spotler_bridge_retry_after_capped_total``) and one log line per pause with the value as
received. A malformed value was already turned into "absent" by the API client. Pure policy:
the runner applies the result (:mod:`bridge.egress.runner`, :mod:`bridge.egress.policy`).
"""

from __future__ import annotations

import time

import structlog

from bridge.core.errors import ApiError
from bridge.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)

#: A pause is never shorter than the rate limiter's floor; the log window is at least this long.
_MIN_WINDOW = 1.0


class RetryAfterCap:
    """Caps ``Retry-After`` values, counts the capped ones, logs once per channel's pause."""

    def __init__(self, limit: float, metrics: Metrics, max_channels: int = 10_000) -> None:
        self._limit = limit
        self._metrics = metrics
        self._logged_until: dict[str, float] = {}  # channel -> end of the pause last logged
        self._max_channels = max_channels

    def honoured(self, channel: str, error: ApiError) -> float | None:
        """The seconds of ``error``'s ``Retry-After`` to honour (None when absent/malformed)."""
        received = error.retry_after
        seconds = None if received is None else min(received, self._limit)
        capped = received is not None and received > self._limit
        if capped:
            self._metrics.retry_after_capped.inc()
        if error.retry_after_text is not None or received is not None:
            self._log_once(channel, error, seconds, capped)
        return seconds

    def _log_once(self, channel: str, error: ApiError, seconds: float | None, capped: bool) -> None:
        now = time.monotonic()
        if now < self._logged_until.get(channel, 0.0):
            return  # this pause was logged already
        if len(self._logged_until) >= self._max_channels:
            self._logged_until = {c: t for c, t in self._logged_until.items() if t > now}
        self._logged_until[channel] = now + max(seconds or 0.0, _MIN_WINDOW)
        log.warning(
            "egress.retry_after",
            channel=channel,
            status=error.status,
            received=error.retry_after_text
            if error.retry_after_text is not None
            else f"{error.retry_after:g}",
            honoured_s=seconds,
            capped=capped,
        )
