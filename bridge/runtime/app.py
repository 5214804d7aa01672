"""Composition root: builds the apps for a role, runs them, and shuts them down in order.

The only module that imports every adapter. A role is ``ingress``, ``egress`` or ``serve``
(both). Every role serves the ops app (metrics, health) on ``BRIDGE_OPS_PORT``; resources live in
the ops app's ``cleanup_ctx`` (started first, stopped last), the webhook app on
``BRIDGE_HTTP_PORT`` is started after and stopped before them. SIGTERM or SIGINT: readiness goes
false, the webhook port stops accepting and in-flight deliveries finish, then the resources
close (egress finishes its commands and commits, the producer flushes). A second signal, or
the shutdown deadline, ends the process at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from bridge.api.client import SpotlerClient
from bridge.contract.records import Topics
from bridge.core.config import Role, Settings
from bridge.core.errors import ConfigError
from bridge.egress.consumer import CommandConsumer
from bridge.egress.status_worker import StatusWorker
from bridge.ingress.adoption import Adopter, claim, unlock
from bridge.ingress.receipt_names import ReceiptNames
from bridge.ingress.spool import Spool
from bridge.ingress.store import Durable
from bridge.ingress.webhook import make_webhook_app
from bridge.kafka.publisher import ManagedPublisher, make_publisher
from bridge.runtime import channel_list
from bridge.runtime.ops import Health, OpsSite, make_ops_app
from bridge.telemetry import logs
from bridge.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)

CleanupCtx = Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]


@dataclass
class Parts:
    """What a role runs: the ops app (owning resources) and, for ingress, the webhook app."""

    ops: web.Application
    webhook: web.Application | None
    health: Health
    metrics: Metrics


def build(settings: Settings, role: Role) -> Parts:
    """Wire the components of ``role``; nothing starts until the apps are run."""
    metrics = Metrics()
    health = Health()
    topics = Topics(settings.kafka.topic_prefix)
    # A record holds the body twice at most (normalized message and verbatim payload).
    max_record = 2 * settings.ingress.max_body_bytes + 64 * 1024
    publisher = make_publisher(settings.kafka, metrics, max_request_size=max_record)
    # The ops port gets the webhook port's timeout (see run()) and a connection bound.
    ops = make_ops_app(metrics, health, keepalive_timeout=max(settings.ingress.read_timeout, 5.0))
    ops.cleanup_ctx.append(_publisher_ctx(publisher, health))
    if role in ("egress", "serve"):
        ops.cleanup_ctx.append(_egress_ctx(settings, metrics, publisher, health))
        if settings.status.enabled:
            ops.cleanup_ctx.append(_status_ctx(settings, metrics, publisher, health))
    webhook = None
    if role in ("ingress", "serve"):
        root = Path(settings.spool.dir)
        own = root / (settings.spool.instance or socket.gethostname())
        spool = Spool(dataclasses.replace(settings.spool, dir=str(own)), metrics)
        adopter = Adopter(
            settings.spool, root, own, metrics, interval=settings.spool.adopt_interval
        )
        ops.cleanup_ctx.append(_spool_ctx(spool, adopter, publisher, health))
        durable = Durable(
            publisher, spool, publish_timeout=settings.ingress.publish_timeout, metrics=metrics
        )
        health.checks["kafka"] = lambda: durable.ready
        channels = channel_list.initial(settings)
        refresh = channel_list.refresher(settings, channels, metrics)
        if refresh is not None:  # not a readiness check: ingress never waits on the API
            ops.cleanup_ctx.append(refresh)
        names = None
        if settings.status.enabled:  # receipts name their command (docs/status.md)
            receipt_names = ReceiptNames(settings, metrics)
            ops.cleanup_ctx.append(_task_ctx(receipt_names.run, "receipt-names", health))
            names = receipt_names.name
        webhook = make_webhook_app(
            settings.ingress, topics, metrics, durable, channels, names=names
        )
    return Parts(ops=ops, webhook=webhook, health=health, metrics=metrics)


def _publisher_ctx(publisher: ManagedPublisher, health: Health) -> CleanupCtx:
    def on_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            health.tasks["kafka-connect"] = task  # dead: the watchdog stops the process

    @contextlib.asynccontextmanager
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        connect = asyncio.create_task(publisher.run_connect(), name="kafka-connect")
        connect.add_done_callback(on_done)
        try:
            yield
        finally:
            connect.cancel()
            # ConfigError: Kafka refused the settings, logged naming the variable to fix.
            with contextlib.suppress(asyncio.CancelledError, ConfigError):
                await connect
            await publisher.close()

    return ctx


def _spool_ctx(
    spool: Spool, adopter: Adopter, publisher: ManagedPublisher, health: Health
) -> CleanupCtx:
    @contextlib.asynccontextmanager
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        own = Path(spool.directory)
        held: list[int] = []  # the lock's descriptor, held for the process's life
        lock_task: asyncio.Task[None] | None = None  # taking it later (not a health task: it ends)

        async def take_lock() -> None:
            held.append((await claim(own.parent, own.name))[1])
            spool.locked = True

        try:  # a few tries at start; a volume that refuses does not stop ingress
            held.append((await claim(own.parent, own.name, retry=0.2, attempts=3))[1])
        except OSError:
            spool.locked = False  # appends get 503 until the lock is taken
            lock_task = asyncio.create_task(take_lock(), name="spool-lock")
        await asyncio.to_thread(spool.open)  # recovers what a previous process left
        adopt = asyncio.create_task(adopter.run(publisher), name="spool-adopt")
        health.tasks["spool-adopt"] = adopt
        writer = asyncio.create_task(spool.run_writer(), name="spool-writer")
        drain = asyncio.create_task(spool.run_drain(publisher), name="spool-drain")
        monitor = asyncio.create_task(spool.run_monitor(publisher), name="spool-monitor")
        health.tasks["spool-writer"] = writer
        health.tasks["spool-drain"] = drain
        health.tasks["spool-monitor"] = monitor
        try:
            yield
        finally:
            await spool.wait_until(lambda: not spool.queued)
            # Drain what Kafka will take before the deadline; the rest stays on disk.
            loop = asyncio.get_running_loop()
            end = (health.deadline or loop.time()) - 3.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(end):
                    await spool.wait_until(lambda: spool.empty or not publisher.connected)
            for task in (adopt, monitor, drain, writer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            spool.close()
            if lock_task is not None:
                lock_task.cancel()
            for fd in held:
                unlock(fd)
            log.info("spool.closed", records_left=spool.pending)

    return ctx


def _egress_ctx(
    settings: Settings, metrics: Metrics, publisher: ManagedPublisher, health: Health
) -> CleanupCtx:
    @contextlib.asynccontextmanager
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        api = SpotlerClient(settings.api, metrics, max_connections=settings.egress.concurrency)
        egress = CommandConsumer(settings, metrics, publisher, api)
        task = asyncio.create_task(egress.run(), name="egress")
        health.tasks["egress"] = task
        health.checks["egress"] = lambda: egress.ready
        try:
            yield
        finally:
            await egress.stop()  # finish in-flight commands, commit
            await _ended(task, "egress")
            await api.close()

    return ctx


def _task_ctx(
    run: Callable[[], Coroutine[Any, Any, None]], name: str, health: Health
) -> CleanupCtx:
    """A background task for the app's lifetime, watched by the health check."""

    @contextlib.asynccontextmanager
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(run(), name=name)
        health.tasks[name] = task
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return ctx


def _status_ctx(
    settings: Settings, metrics: Metrics, publisher: ManagedPublisher, health: Health
) -> CleanupCtx:
    @contextlib.asynccontextmanager
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        worker = StatusWorker(settings, metrics, publisher)
        task = asyncio.create_task(worker.run(), name="status")
        health.tasks["status"] = task
        try:
            yield
        finally:
            await worker.stop()
            await _ended(task, "status")

    return ctx


async def _ended(task: asyncio.Task[None], name: str) -> None:
    """Wait for a stopped consumer's task to end; what it failed with is logged, not raised."""
    with contextlib.suppress(asyncio.CancelledError):
        try:
            await task
        except ConfigError:
            pass  # Kafka refused the settings: logged naming the variable to fix
        except Exception:
            log.exception(f"{name}.failed")


async def run(settings: Settings, role: Role) -> int:
    """Run ``role`` until SIGTERM/SIGINT; returns the process exit code."""
    parts = build(settings, role)
    stop = asyncio.Event()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("shutdown.forced", signal=signal.Signals(signum).name)
            _hard_exit(1)
        log.info("shutdown.requested", signal=signal.Signals(signum).name)
        parts.health.shutting_down = True
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    host = settings.ingress.host
    timeout = settings.shutdown_timeout
    ops_runner = web.AppRunner(parts.ops, handle_signals=False, access_log=None)
    await ops_runner.setup()
    await OpsSite(ops_runner, host, settings.ops_port).start()
    hook_runner: web.AppRunner | None = None
    if parts.webhook is not None:
        hook_runner = web.AppRunner(
            parts.webhook,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=max(1.0, timeout - 5.0),
            # Also closes connections that never finish sending their headers.
            keepalive_timeout=max(settings.ingress.read_timeout, 5.0),
        )
        await hook_runner.setup()
        await web.TCPSite(hook_runner, host, settings.ingress.port).start()
    log.info(
        "bridge.started",
        role=role,
        http_port=settings.ingress.port if hook_runner else None,
        ops_port=settings.ops_port,
        kafka=settings.kafka.bootstrap_servers,
    )

    # Everything built so far lives as long as the process: keep it out of the collector's way
    # (full collections over it showed up as 40+ ms pauses in the benchmark).
    gc.collect()
    gc.freeze()
    watchdog = asyncio.create_task(_watch_tasks(parts.health, stop))
    await stop.wait()
    watchdog.cancel()
    code = 0 if signals else 1  # a dead background task is a failure, not a clean stop
    parts.health.shutting_down = True
    parts.health.deadline = loop.time() + timeout
    try:
        async with asyncio.timeout(timeout):
            if hook_runner is not None:
                await hook_runner.cleanup()  # stop accepting, finish in-flight deliveries
            await ops_runner.cleanup()  # egress, spool drain, producer flush (reverse order)
    except TimeoutError:
        log.error("shutdown.deadline_exceeded", seconds=timeout)
        _hard_exit(1)
    log.info("bridge.stopped", code=code)
    return code


async def _watch_tasks(health: Health, stop: asyncio.Event) -> None:
    """Stop the process when a background task dies: a restart beats a silent zombie."""
    while True:
        await asyncio.sleep(1.0)
        dead = [name for name, alive in health.live().items() if not alive]
        if dead:
            log.error("bridge.task_died", tasks=dead)
            stop.set()
            return


def _hard_exit(code: int) -> None:
    logs.flush()
    sys.stdout.flush()
    os._exit(code)
