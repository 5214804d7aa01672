"""Webhook ingress: ``POST /webhooks``, from HTTP request to a durable record.

Owns the HTTP side of ingress: authentication (bearer tokens, constant-time), size and time
limits, duplicate detection, and the answer. The memory budget and content decoding are
:mod:`bridge.ingress.intake`'s, parsing is :mod:`bridge.ingress.normalize`'s job and durability is
the :class:`~bridge.ingress.store.Durable` store's; this module only decides the status: 200 once
the record is durable, 401/413/408 for requests it refuses, 503 when nothing could take the record
or too many bytes are in flight (the platform then retries). No unhandled exception becomes a 500.

Logs: a plain success (published, or a duplicate) is a debug line; every other delivery (401, 408,
413, 503, dead-lettered, spooled) an info line; and one ``webhook.summary`` info line per
``summary_interval`` (10 s) with the counts per outcome and event type, the last one at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import structlog
from aiohttp import web

from bridge.contract.records import Record, Topics
from bridge.core import auth
from bridge.core.config import IngressSettings
from bridge.core.dedup import RecentIds
from bridge.core.errors import BridgeError
from bridge.ingress.channels import ChannelSet
from bridge.ingress.intake import (
    OFF_LOOP_BYTES,
    Budget,
    TooLarge,
    decode_and_normalize,
    trim_memory,
)
from bridge.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)

#: Makes a record durable and says how ("published" or "spooled"); raises BridgeError if not.
Store = Callable[[Record], Awaitable[str]]

_RETRY_AFTER = "5"

#: Outcomes logged at debug only: the delivery went where it should, nothing to look at.
_PLAIN_SUCCESS = frozenset({"published", "duplicate"})


class Tally:
    """Deliveries per (outcome, event type) since the last summary line."""

    __slots__ = ("counts", "since")

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.since = time.monotonic()

    def add(self, outcome: str, event_type: str) -> None:
        key = (outcome, event_type)
        self.counts[key] = self.counts.get(key, 0) + 1

    def log_summary(self) -> None:
        """One info line with the counts since the last one (none when nothing came)."""
        counts, self.counts = self.counts, {}
        now = time.monotonic()
        seconds, self.since = now - self.since, now
        if not counts:
            return
        outcomes: dict[str, dict[str, int]] = {}
        for (outcome, event_type), n in sorted(counts.items()):
            outcomes.setdefault(outcome, {})[event_type] = n
        log.info(
            "webhook.summary",
            seconds=round(seconds, 1),
            deliveries=sum(counts.values()),
            outcomes=outcomes,
        )


class Intake:
    """What the webhook handler needs, in one place (one lookup per request, not nine).

    ``inflight``: event ids being stored right now; a repeat waits for the first instead of
    storing it twice (the future to wait on is made only when a repeat comes, so the usual
    delivery creates none). ``debug``: whether debug lines are written at all, read at start-up;
    when not, a plain success builds no log line.
    """

    __slots__ = ("budget", "channels", "debug", "inflight", "loop", "metrics", "names",
                 "recent", "settings", "store", "tally", "topics")  # fmt: skip

    def __init__(
        self,
        settings: IngressSettings,
        topics: Topics,
        metrics: Metrics,
        store: Store,
        channels: ChannelSet,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.metrics = metrics
        self.store = store
        self.channels = channels
        self.recent = RecentIds(settings.dedup_size, settings.dedup_ttl)
        self.inflight: dict[str, asyncio.Future[None] | None] = {}
        self.budget = Budget(settings.max_inflight_bytes)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tally = Tally()
        #: Names a receipt's command when its send is known (docs/status.md); None: off.
        self.names: Callable[[Record], Record] | None = None
        self.debug = True


INTAKE = web.AppKey("intake", Intake)


def make_webhook_app(
    settings: IngressSettings,
    topics: Topics,
    metrics: Metrics,
    store: Store,
    channels: ChannelSet | None = None,
    *,
    summary_interval: float = 10.0,
    names: Callable[[Record], Record] | None = None,
) -> web.Application:
    """The webhook app. ``store`` is where records go (Kafka, or Kafka with the spool);
    ``channels`` the deployment's channel JIDs when known (they tell channel from contact);
    ``summary_interval`` the seconds between two ``webhook.summary`` lines."""
    # client_max_size makes aiohttp refuse larger bodies (413) even when chunked. Bodies are
    # read as sent (auto_decompress off) and decoded here: a body that claims gzip but does not
    # decode must still reach the dead-letter topic with its raw bytes, which aiohttp discards.
    app = web.Application(
        client_max_size=settings.max_body_bytes, handler_args={"auto_decompress": False}
    )
    intake = Intake(settings, topics, metrics, store, channels or ChannelSet())
    intake.names = names
    app[INTAKE] = intake
    # Read when scraped, not set on every delivery.
    metrics.dedup_entries.set_function(intake.recent.__len__)
    app.on_startup.append(_remember_loop)
    app.cleanup_ctx.append(_summaries(summary_interval))
    app.router.add_post("/webhooks", handle_webhook)
    return app


async def _remember_loop(app: web.Application) -> None:
    # Looked up once: asyncio.get_running_loop() costs a getpid() system call on Python 3.11.
    intake = app[INTAKE]
    intake.loop = asyncio.get_running_loop()
    intake.debug = log.is_enabled_for(logging.DEBUG)


def _summaries(
    interval: float,
) -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        tally = app[INTAKE].tally

        async def every_interval() -> None:
            while True:
                await asyncio.sleep(interval)
                tally.log_summary()

        task = asyncio.create_task(every_interval(), name="webhook-summary")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            tally.log_summary()  # what came since the last line, at shutdown

    return ctx


async def handle_webhook(request: web.Request) -> web.Response:
    started = time.perf_counter()
    intake = request.app[INTAKE]
    try:
        response, fields = await _deliver(request, intake)
    except Exception:
        # Never a 500: whatever went wrong, the platform must retry rather than give up.
        log.exception("webhook.crashed")
        response, fields = _unavailable(), {"outcome": "unavailable"}
    elapsed = time.perf_counter() - started
    metrics = intake.metrics
    metrics.child(
        metrics.webhook_duration, _STATUS.get(response.status) or str(response.status)
    ).observe(elapsed)
    outcome = str(fields.get("outcome", ""))
    intake.tally.add(outcome, str(fields.get("event_type", "none")))
    # Plain successes at debug: thousands a second are cost and personal data, not information;
    # with debug off, not even built.
    if outcome not in _PLAIN_SUCCESS:
        _line(log.info, request, response, elapsed, fields)
    elif intake.debug:
        _line(log.debug, request, response, elapsed, fields)
    return response


def _line(
    write: Callable[..., object],
    request: web.Request,
    response: web.Response,
    elapsed: float,
    fields: dict[str, object],
) -> None:
    write(
        "webhook",
        status=response.status,
        duration_ms=round(elapsed * 1000, 2),
        remote=request.remote,
        **fields,
    )


_STATUS = {200: "200", 401: "401", 408: "408", 413: "413", 503: "503"}


async def _deliver(request: web.Request, intake: Intake) -> tuple[web.Response, dict[str, object]]:
    settings, metrics = intake.settings, intake.metrics
    if not settings.auth_disabled and not auth.authorized(
        request.headers.get("Authorization", ""), settings.webhook_tokens
    ):
        metrics.child(metrics.webhook_rejections, "unauthorized").inc()
        metrics.child(metrics.webhooks, "none", "rejected").inc()
        return _unauthorized(), {"outcome": "rejected", "reason": "unauthorized"}
    length = request.content_length
    if length is not None and length > settings.max_body_bytes:
        return _too_large(metrics, settings), {"outcome": "rejected", "reason": "too_large"}
    # Bytes in flight are bounded: reserve the declared length (else the body limit) up front.
    budget = intake.budget
    reserved = length if length is not None else settings.max_body_bytes
    if not budget.take(reserved):
        metrics.child(metrics.webhook_rejections, "busy").inc()
        metrics.child(metrics.webhooks, "none", "rejected").inc()
        return _unavailable(), {"outcome": "rejected", "reason": "busy"}
    try:
        return await _admitted(request, intake)
    finally:
        budget.give(reserved)
        if budget.idle_after_large():
            # Large bodies leave freed memory with the allocator: hand it back to the system.
            await asyncio.to_thread(trim_memory)


async def _admitted(request: web.Request, intake: Intake) -> tuple[web.Response, dict[str, object]]:
    settings, metrics = intake.settings, intake.metrics
    try:
        if request.content.is_eof():  # the whole body came with the headers: no wait
            body = await request.read()
        else:
            async with asyncio.timeout(settings.read_timeout):
                body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _too_large(metrics, settings), {"outcome": "rejected", "reason": "too_large"}
    except TimeoutError:
        metrics.child(metrics.webhook_rejections, "timeout").inc()
        metrics.child(metrics.webhooks, "none", "rejected").inc()
        return _error(408, "request body not received in time"), {
            "outcome": "rejected",
            "reason": "timeout",
        }

    encoding = request.headers.get("Content-Encoding", "")
    args = (body, encoding, intake.topics, settings.max_body_bytes, intake.channels.jids)
    try:
        if len(body) > OFF_LOOP_BYTES:  # parsing a large body would stall every other request
            intake.budget.large = True
            record = await asyncio.to_thread(decode_and_normalize, *args)
        else:
            record = decode_and_normalize(*args)
    except TooLarge:
        return _too_large(metrics, settings), {"outcome": "rejected", "reason": "too_large"}
    if intake.names is not None and record.label == "receipt":
        record = intake.names(record)
    event_id = record.event_id
    fields: dict[str, object] = {"event_type": record.label, "event_id": event_id,
                                 "size": len(body)}  # fmt: skip
    recent, inflight = intake.recent, intake.inflight
    while event_id in inflight:  # the same event is being stored right now: wait for it
        waiting = inflight[event_id]
        if waiting is None:
            loop = intake.loop or asyncio.get_running_loop()
            waiting = inflight[event_id] = loop.create_future()
        await asyncio.shield(waiting)
    if event_id in recent:
        metrics.child(metrics.webhooks, record.label, "duplicate").inc()
        fields["outcome"] = "duplicate"
        return _accepted("duplicate", record), fields
    inflight[event_id] = None
    try:
        how = await intake.store(record)
    except BridgeError as exc:
        metrics.child(metrics.webhooks, record.label, "unavailable").inc()
        # Debug only: the delivery's own line says outcome=unavailable, and the spool logs its
        # change of state (unwritable, writable) once, not once per refused request.
        log.debug("webhook.not_durable", event_id=event_id, error=str(exc))
        fields["outcome"] = "unavailable"
        return _unavailable(), fields
    except Exception:
        # Never a 500: the delivery is not durable, so ask the platform to retry it.
        metrics.child(metrics.webhooks, record.label, "unavailable").inc()
        log.exception("webhook.store_crashed", event_id=event_id)
        fields["outcome"] = "unavailable"
        return _unavailable(), fields
    finally:
        waiters = inflight.pop(event_id)
        if waiters is not None:
            waiters.set_result(None)
    recent.add(event_id)
    outcome = "deadletter" if record.label == "deadletter" and how == "published" else how
    metrics.child(metrics.webhooks, record.label, outcome).inc()
    fields["outcome"] = outcome
    fields["topic"] = record.topic
    return _accepted(how, record), fields


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def _accepted(how: str, record: Record) -> web.Response:
    return _json({"status": how, "id": record.event_id})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json({"error": message}, status, headers)


def _unauthorized() -> web.Response:
    return _error(401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})


def _too_large(metrics: Metrics, settings: IngressSettings) -> web.Response:
    metrics.child(metrics.webhook_rejections, "too_large").inc()
    metrics.child(metrics.webhooks, "none", "rejected").inc()
    return _error(413, f"body larger than {settings.max_body_bytes} bytes")


def _unavailable() -> web.Response:
    return _error(503, "not durable yet, retry later", {"Retry-After": _RETRY_AFTER})
