"""The baseline: a bare aiohttp app; ``POST /webhooks`` reads the body and answers 200 ``{}``.

Run as its own process, on uvloop like the bridge, without an access log (the bridge has none
either): ``python -m tests.bench.bare PORT``. ``GET /healthz`` answers 200 for the harness.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop
from aiohttp import web


async def webhook(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=b"{}", content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def serve(port: int) -> None:
    app = web.Application()
    app.router.add_post("/webhooks", webhook)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()  # until SIGTERM ends the process


def main() -> None:
    uvloop.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
