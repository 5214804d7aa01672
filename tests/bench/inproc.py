"""A whole webhook request in process: aiohttp's own protocol fed raw HTTP bytes, no sockets.

The CPU time per request of ``bare.py``'s app and of the floor (``floor.py``: the bridge's
webhook app with a store that acknowledges at once) without wrk, the kernel or a second process
sharing the two cores: the ratio floor/bare of the benchmark with most of the noise gone (and
without the system calls, which both pay alike). :mod:`tests.bench.micro` reports it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from aiohttp import web

from tests.bench.bodies import templates
from tests.bench.harness import TOKEN


class _Transport(asyncio.Transport):
    """Takes the response and wakes the sender; everything else is a no-op."""

    def __init__(self) -> None:
        super().__init__()
        self.answered: asyncio.Future[None] | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def write(self, data: Any) -> None:
        self._done()

    def writelines(self, data: Any) -> None:
        self._done()

    def _done(self) -> None:
        if self.answered is not None and not self.answered.done():
            self.answered.set_result(None)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


def _app(which: str) -> web.Application:
    if which == "bare":
        from tests.bench.bare import webhook

        app = web.Application()
        app.router.add_post("/webhooks", webhook)
        return app
    from bridge.contract.records import Topics
    from bridge.core.config import IngressSettings

    try:
        from bridge.core.parsers import Secret
    except ImportError:  # a checkout from before the settings split (--code DIR)
        from bridge.core.config import Secret  # type: ignore[attr-defined]
    from bridge.ingress.webhook import make_webhook_app
    from bridge.telemetry.metrics import Metrics
    from tests.bench.floor import acknowledge

    settings = IngressSettings(webhook_tokens=(Secret(TOKEN),))
    return make_webhook_app(settings, Topics("inproc"), Metrics(), acknowledge)


def _requests(count: int, nonce: str) -> list[bytes]:
    bodies = templates(64, kind="message")
    out = []
    for i in range(count):
        body = bodies[i % 64].replace(b"@ID@", f"{nonce}-{i}".encode())
        head = (
            "POST /webhooks HTTP/1.1\r\nHost: bench\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


async def per_request_us(which: str, count: int = 20_000, repeats: int = 5) -> float:
    """CPU µs per request of ``which`` (``bare`` or ``floor``), the best of ``repeats`` runs of
    ``count`` requests over one keep-alive connection (unique event ids, so dedup never hits).
    Logs must be configured by the caller (as the floor server does)."""
    runner = web.AppRunner(_app(which), access_log=None)
    await runner.setup()
    try:
        protocol = runner.server()  # type: ignore[misc]  # the server is set up by now
        transport = _Transport()
        protocol.connection_made(transport)
        loop = asyncio.get_running_loop()

        async def send(requests: list[bytes]) -> None:
            for raw in requests:
                transport.answered = loop.create_future()
                protocol.data_received(raw)
                await transport.answered

        await send(_requests(2_000, "warm"))
        best = float("inf")
        for n in range(repeats):
            requests = _requests(count, f"r{n}-{time.time_ns()}")
            started = time.process_time()
            await send(requests)
            best = min(best, (time.process_time() - started) / count * 1e6)
        return best
    finally:
        await runner.cleanup()


def measure(count: int = 20_000) -> dict[str, float]:
    """Floor and bare, alternated (bare, floor, bare, floor), each the best of its runs."""
    import uvloop

    from bridge.telemetry import logs

    stdout = sys.stdout
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the log sink writes here until exit
    try:
        logs.configure("info", "json", secrets=[TOKEN])
        runs: dict[str, list[float]] = {"bare": [], "floor": []}
        for _ in range(2):
            for which in runs:
                runs[which].append(uvloop.run(per_request_us(which, count)))
    finally:
        sys.stdout = stdout
    bare, floor = min(runs["bare"]), min(runs["floor"])
    return {"request_bare_us": bare, "request_floor_us": floor, "floor_over_bare": floor / bare}
