"""Ingress's channel list: ``BRIDGE_CHANNELS``, or the platform's ``GET /channels``, refreshed.

Owns keeping :class:`~bridge.ingress.channels.ChannelSet` current for a running ingress. With
``BRIDGE_CHANNELS`` set, that is the list, fixed. Otherwise, with an API key, a background task
loads the channels at start-up and every ``BRIDGE_CHANNELS_REFRESH_SECONDS``; a failure keeps the
last list and is logged once (and once more when it recovers), never on every try. Readiness does
not depend on it: ingress takes deliveries whether or not the platform's API answers (DESIGN.md,
"bridge doctor": readiness does not depend on the platform's API). Metrics show it instead
(:class:`RefreshWatch`): every refresh by outcome, and the age of the last good list, computed
at scrape time, which an alert compares with the refresh interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from aiohttp import web

from bridge.api.client import SpotlerClient
from bridge.core.config import Settings
from bridge.core.errors import ApiError
from bridge.ingress.channels import ChannelSet
from bridge.telemetry.metrics import Metrics

#: After a failure, the next try comes sooner, still bounded.
RETRY_SECONDS = 30.0

log = structlog.get_logger("bridge.ingress.channels")
CleanupCtx = Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]


def initial(settings: Settings) -> ChannelSet:
    return ChannelSet(settings.platform.channels)


#: The ``outcome`` label of ``spotler_bridge_channel_list_refreshes_total``.
OUTCOMES = ("ok", "unauthorized", "timeout", "unreachable", "server_error", "error")


def outcome_of(exc: BaseException) -> str:
    """The outcome label of a failed refresh: what a person would check first."""
    if isinstance(exc, ApiError):
        if exc.code in (1001, 1002) or exc.status in (401, 403):
            return "unauthorized"
        if exc.network:
            return "timeout" if isinstance(exc.__cause__, TimeoutError) else "unreachable"
        if exc.status >= 500:
            return "server_error"
    return "error"


class RefreshWatch:
    """Counts refreshes by outcome; the age of the last good list is read at scrape time
    (from the start, while none succeeded yet)."""

    def __init__(
        self, metrics: Metrics, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._metrics = metrics
        self._clock = clock
        self._last_ok = clock()
        metrics.channel_list_interval.set(interval)
        metrics.channel_list_age.set_function(lambda: self._clock() - self._last_ok)

    def succeeded(self) -> None:
        self._last_ok = self._clock()
        self._metrics.child(self._metrics.channel_list_refreshes, "ok").inc()

    def failed(self, exc: BaseException) -> None:
        self._metrics.child(self._metrics.channel_list_refreshes, outcome_of(exc)).inc()


def refresher(settings: Settings, channels: ChannelSet, metrics: Metrics) -> CleanupCtx | None:
    """The ``cleanup_ctx`` that keeps ``channels`` current; None when there is nothing to do."""
    if settings.platform.channels or settings.api.api_key is None:
        return None

    refresh = settings.platform.channels_refresh_seconds

    @contextlib.asynccontextmanager
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        client = SpotlerClient(settings.api, metrics, max_connections=2)
        watch = RefreshWatch(metrics, refresh)
        task = asyncio.create_task(_loop(client, channels, refresh, watch), name="channel-list")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await client.close()

    return ctx


async def _loop(
    client: SpotlerClient, channels: ChannelSet, refresh: float, watch: RefreshWatch | None = None
) -> None:
    failing = False
    while True:
        try:
            found = await client.list_channels()
        except Exception as exc:  # any failure (ApiError, a bug) keeps the last list
            if watch is not None:
                watch.failed(exc)
            if not failing:
                log.warning(
                    "ingress.channels_refresh_failed",
                    error=_describe(exc),
                    kept=len(channels.jids),
                )
            failing = True
            await asyncio.sleep(min(refresh, RETRY_SECONDS))
            continue
        jids = [str(c["jid"]) for c in found if isinstance(c.get("jid"), str)]
        changed = channels.replace(jids)
        if watch is not None:
            watch.succeeded()
        if changed or failing:
            log.info("ingress.channels_loaded", channels=len(jids), recovered=failing)
        failing = False
        await asyncio.sleep(refresh)


def _describe(exc: Any) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
