"""Ingress's channel list: ``BRIDGE_CHANNELS``, or the platform's ``GET /channels``, refreshed.

Owns keeping :class:`~bridge.ingress.channels.ChannelSet` current for a running ingress. With
``BRIDGE_CHANNELS`` set, that is the list, fixed. Otherwise, with an API key, a background task
loads the channels at start-up and every :data:`REFRESH_SECONDS`; a failure keeps the last list
and is logged once (and once more when it recovers), never on every try. Readiness does not
depend on it: ingress takes deliveries whether or not the platform's API answers (DESIGN.md,
"bridge doctor": readiness does not depend on the platform's API).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from aiohttp import web

from bridge.api.client import SpotlerClient
from bridge.core.config import Settings
from bridge.ingress.channels import ChannelSet
from bridge.telemetry.metrics import Metrics

REFRESH_SECONDS = 300.0
#: After a failure, the next try comes sooner, still bounded.
RETRY_SECONDS = 30.0

log = structlog.get_logger("bridge.ingress.channels")
CleanupCtx = Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]


def initial(settings: Settings) -> ChannelSet:
    return ChannelSet(settings.platform.channels)


def refresher(
    settings: Settings, channels: ChannelSet, metrics: Metrics, refresh: float = REFRESH_SECONDS
) -> CleanupCtx | None:
    """The ``cleanup_ctx`` that keeps ``channels`` current; None when there is nothing to do."""
    if settings.platform.channels or settings.api.api_key is None:
        return None

    @contextlib.asynccontextmanager
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        client = SpotlerClient(settings.api, metrics, max_connections=2)
        task = asyncio.create_task(_loop(client, channels, refresh), name="channel-list")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await client.close()

    return ctx


async def _loop(client: SpotlerClient, channels: ChannelSet, refresh: float) -> None:
    failing = False
    while True:
        try:
            found = await client.list_channels()
        except Exception as exc:  # any failure (ApiError, a bug) keeps the last list
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
        if changed or failing:
            log.info("ingress.channels_loaded", channels=len(jids), recovered=failing)
        failing = False
        await asyncio.sleep(refresh)


def _describe(exc: Any) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
