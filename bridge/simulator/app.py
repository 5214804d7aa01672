"""Composition root of the simulator: builds the aiohttp application and serves it.

Owns wiring only: settings and state under ``web.AppKey``s, the platform middleware, the API,
webhook and admin routes, and the emitter's client session as a ``cleanup_ctx``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import structlog
from aiohttp import web

from bridge.simulator import admin, catalog, receipts
from bridge.simulator.emitter import EMITTER, Emitter
from bridge.simulator.middleware import platform_middleware
from bridge.simulator.settings import SimulatorSettings
from bridge.simulator.state import SETTINGS, STATE, SimState

log = structlog.get_logger(__name__)


def make_simulator_app(settings: SimulatorSettings) -> web.Application:
    """A fresh simulator: its own state, no webhooks but the global one from ``settings``."""
    app = web.Application(middlewares=[platform_middleware])
    state = SimState()
    emitter = Emitter(settings, state)
    app[SETTINGS] = settings
    app[STATE] = state
    app[EMITTER] = emitter
    app[receipts.RECEIPTS] = emitter.receipts
    catalog.add_routes(app)
    admin.add_routes(app)
    receipts.add_routes(app)
    app.cleanup_ctx.append(emitter.context)
    return app


async def run_simulator(settings: SimulatorSettings) -> None:
    """Serve the simulator until this task is cancelled or the process gets SIGTERM/SIGINT."""
    runner = web.AppRunner(make_simulator_app(settings), handle_signals=False)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        for address in runner.addresses:
            host, port = address[0], address[1]
            log.info("simulator.started", url=f"http://{host}:{port}/v3", admin="/_sim")
        await stop.wait()
        log.info("simulator.stopping")
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
