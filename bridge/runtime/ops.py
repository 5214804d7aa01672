"""Operations endpoints: ``/metrics``, ``/healthz`` and ``/readyz`` on the ops port.

Liveness says the process and its background tasks are alive (a dead consumer task must not hide
behind a green probe); readiness says it can do its work now (Kafka connected, partitions
assigned, not shutting down). Each component registers its own checks on :class:`Health`.

The ops port is as exposed to slow and idle clients as the webhook port: it gets the same
keep-alive timeout (which also cuts connections that never finish their headers) and
:class:`OpsSite` bounds the open connections, answering 503 beyond the bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.telemetry.metrics import Metrics

METRICS = web.AppKey("metrics", Metrics)


@dataclass
class Health:
    """What the probes report: readiness checks, background tasks, and the shutdown flag."""

    shutting_down: bool = False
    deadline: float | None = None  # loop time by which shutdown must be complete
    checks: dict[str, Callable[[], bool]] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    def live(self) -> dict[str, bool]:
        """Per task: True while it runs (or finished cleanly during shutdown)."""
        return {
            name: not task.done() or (self.shutting_down and not _failed(task))
            for name, task in self.tasks.items()
        }

    def ready(self) -> dict[str, bool]:
        state = {name: check() for name, check in self.checks.items()}
        state["accepting"] = not self.shutting_down
        return state


def _failed(task: asyncio.Task[None]) -> bool:
    return task.cancelled() or task.exception() is not None


HEALTH = web.AppKey("health", Health)


#: Open connections the ops port keeps at most (scrapes and probes need a handful).
MAX_OPS_CONNECTIONS = 64
_FULL = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n"
)


def make_ops_app(
    metrics: Metrics, health: Health, *, keepalive_timeout: float = 10.0
) -> web.Application:
    """The ops app; ``keepalive_timeout`` closes idle connections and unfinished headers."""
    app = web.Application(handler_args={"keepalive_timeout": keepalive_timeout})
    app[METRICS] = metrics
    app[HEALTH] = health
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/readyz", handle_readyz)
    return app


async def handle_metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def handle_healthz(request: web.Request) -> web.Response:
    state = request.app[HEALTH].live()
    return _probe(state)


async def handle_readyz(request: web.Request) -> web.Response:
    state = request.app[HEALTH].ready()
    return _probe(state)


def _probe(state: dict[str, bool]) -> web.Response:
    ok = all(state.values())
    return web.json_response({"ok": ok, "checks": state}, status=200 if ok else 503)


class _Refuse(asyncio.Protocol):
    """A connection beyond the bound: answered 503 at once and closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_FULL)
        transport.close()


class OpsSite(web.TCPSite):
    """A TCP site that keeps at most ``max_connections`` connections open."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str | None,
        port: int,
        *,
        max_connections: int = MAX_OPS_CONNECTIONS,
    ) -> None:
        super().__init__(runner, host, port)
        self.max_connections = max_connections

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; the listener is made here
        server = self._runner.server
        assert server is not None
        limit = self.max_connections

        def protocol() -> asyncio.BaseProtocol:
            if len(server.connections) >= limit:
                return _Refuse()
            return server()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            protocol, self._host, self._port, backlog=self._backlog, reuse_address=True
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]
