"""Webhook emission, like the platform: POST each event to every subscribed webhook, retrying.

Owns the simulator's outbound HTTP: one ``aiohttp.ClientSession`` (opened and closed by
:meth:`Emitter.context`, a ``cleanup_ctx``) and the background tasks that deliver webhooks and
schedule receipts. A delivery is retried on anything but 200 or on a connection error, with
exponential backoff (``retry_base`` doubling up to ``retry_max``, times a random 0.5-1.0
jitter), forever unless ``max_attempts`` is set. Every attempt is recorded in the state.
Bodies are never logged.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web

from bridge.simulator import events
from bridge.simulator.receipts import ReceiptPlan
from bridge.simulator.settings import SimulatorSettings
from bridge.simulator.state import WEBHOOK_EVENTS, SimState, Webhook

log = structlog.get_logger(__name__)


class Emitter:
    """Delivers webhook bodies in background tasks; :meth:`cancel_all` stops them all."""

    def __init__(self, settings: SimulatorSettings, state: SimState) -> None:
        self._settings = settings
        self._state = state
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._rng = random.Random()  # noqa: S311 - backoff jitter, not cryptography
        self.receipts = ReceiptPlan()
        self.global_webhook: Webhook | None = None
        if settings.webhook_url:
            self.global_webhook = Webhook(
                id="global",
                url=settings.webhook_url,
                events=list(WEBHOOK_EVENTS),
                headers=dict(settings.webhook_headers),
            )

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx``: the client session for the app's lifetime; tasks end before it."""
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self._session = session
            try:
                yield
            finally:
                await self.cancel_all()
                self._session = None

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def targets(self, channel: str, event: str) -> list[Webhook]:
        """The enabled webhooks of ``channel`` (and the global one) that take ``event``."""
        hooks = [h for h in self._state.webhooks.get(channel, {}).values() if h.wants(event)]
        if self.global_webhook is not None and self.global_webhook.wants(event):
            hooks.append(self.global_webhook)
        return hooks

    def emit(self, channel: str, body: dict[str, Any]) -> int:
        """Deliver ``body`` (its ``type`` is the event) to each target; the number of targets."""
        event = str(body["type"])
        payload = orjson.dumps(body)
        hooks = self.targets(channel, event)
        for hook in hooks:
            headers = {**(hook.headers or {}), "Content-Type": "application/json"}
            self.spawn(self._deliver(hook, headers, event, body, payload))
        return len(hooks)

    def schedule_receipts(self, channel: str, contact: str, message_id: str) -> None:
        """The receipts of a sent message, as the receipt plan says (default: ``delivered`` then
        ``read``, ``receipt_delay`` apart; :mod:`bridge.simulator.receipts`)."""
        for at, receipt_id, status in self.receipts.schedule(
            message_id, self._settings.receipt_delay
        ):
            self.spawn(self._receipt(at, channel, contact, receipt_id, status))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("simulator.task_failed", exc_info=exc)

    async def cancel_all(self) -> None:
        """Cancel every pending delivery and receipt, and wait until they have stopped."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _receipt(
        self, at: float, channel: str, contact: str, message_id: str, status: str
    ) -> None:
        await asyncio.sleep(at)
        self.emit(channel, events.receipt(channel, contact, message_id, status))

    async def _deliver(
        self,
        hook: Webhook,
        headers: dict[str, str],
        event: str,
        body: dict[str, Any],
        payload: bytes,
    ) -> None:
        if self._session is None:
            raise RuntimeError("the simulator's client session is not open")
        s = self._settings
        delivery_id = str(uuid.uuid4())
        safe_url = hook.url.split("?", 1)[0]
        attempt = 0
        while True:
            attempt += 1
            status: int | None = None
            error: str | None = None
            try:
                async with self._session.post(hook.url, data=payload, headers=headers) as resp:
                    status = resp.status
                    await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            self._state.deliveries.append(
                {
                    "attempt": attempt,
                    "body": body,
                    "deliveryId": delivery_id,
                    "error": error,
                    "event": event,
                    "status": status,
                    "time": time.time(),
                    "url": hook.url,
                    "webhookId": hook.id,
                }
            )
            if status == 200:
                log.debug("simulator.delivered", url=safe_url, webhook_event=event, attempt=attempt)
                return
            if s.max_attempts and attempt >= s.max_attempts:
                log.warning("simulator.delivery_abandoned", url=safe_url, webhook_event=event)
                return
            delay = min(s.retry_max, s.retry_base * 2 ** min(attempt - 1, 40))
            delay *= self._rng.uniform(0.5, 1.0)
            log.info(
                "simulator.delivery_retry",
                url=safe_url,
                webhook_event=event,
                attempt=attempt,
                status=status,
                error=error,
                delay=round(delay, 3),
            )
            await asyncio.sleep(delay)


EMITTER = web.AppKey("simulator_emitter", Emitter)
