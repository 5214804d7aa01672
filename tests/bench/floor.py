"""The floor: the bridge's own webhook app, with a store that acknowledges at once (no Kafka).

The same ``make_webhook_app`` as ``bridge ingress`` (authentication, size and memory limits,
normalization, dedup, metrics, JSON logs at info with redaction: a summary line per 10 s, a
line per delivery only when it is not a plain success), on uvloop,
but the store takes each record without I/O. What it costs per request is the bridge's own
work, which no Kafka-side change can remove: the bench compares it with the naive handler.
``python -m tests.bench.floor PORT TOKEN``; ``GET /healthz`` answers 200 for the harness.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop
from aiohttp import web

from bridge.contract.records import Record, Topics
from bridge.core.config import IngressSettings
from bridge.core.parsers import Secret
from bridge.ingress.webhook import make_webhook_app
from bridge.telemetry import logs
from bridge.telemetry.metrics import Metrics


async def acknowledge(record: Record) -> str:
    return "published"


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def serve(port: int, token: str) -> None:
    logs.configure("info", "json", secrets=[token])
    settings = IngressSettings(webhook_tokens=(Secret(token),))
    app = make_webhook_app(settings, Topics("floor"), Metrics(), acknowledge)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()  # until SIGTERM ends the process


def main() -> None:
    uvloop.run(serve(int(sys.argv[1]), sys.argv[2]))


if __name__ == "__main__":
    main()
