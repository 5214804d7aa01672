"""Fixtures for the simulator tests: the simulator and a webhook receiver, both real HTTP
servers on 127.0.0.1 (aiohttp's TestServer/TestClient; no pytest-aiohttp needed)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge.simulator import SimulatorSettings, make_simulator_app

SimClient = TestClient[web.Request, web.Application]
MakeSim = Callable[..., Awaitable[SimClient]]


async def _value(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


async def _eventually(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await _value(predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


@pytest.fixture
def eventually() -> Callable[..., Awaitable[None]]:
    """``await eventually(predicate, timeout=5)``: wait until ``predicate()`` (or the value it
    awaits) is true, else fail the test."""
    return _eventually


@pytest.fixture
async def make_sim() -> AsyncIterator[MakeSim]:
    """Start simulators with fast timings; keyword arguments override the settings."""
    clients: list[SimClient] = []

    async def start(**overrides: Any) -> SimClient:
        values: dict[str, Any] = {"receipt_delay": 0.01, "retry_base": 0.01, "retry_max": 0.05}
        values.update(overrides)
        app = make_simulator_app(SimulatorSettings(**values))
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def sim(make_sim: MakeSim) -> SimClient:
    return await make_sim()


@dataclass
class Received:
    headers: dict[str, str]
    body: Any
    status: int


@dataclass
class Receiver:
    """A webhook receiver answering the scripted ``statuses`` in turn, then 200."""

    statuses: deque[int] = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        status = self.statuses.popleft() if self.statuses else 200
        body = orjson.loads(await request.read())
        self.received.append(Received(dict(request.headers), body, status))
        return web.Response(status=status)

    def bodies(self, event: str | None = None) -> list[Any]:
        """Bodies answered 200, optionally of one event ``type``."""
        return [
            r.body
            for r in self.received
            if r.status == 200 and (event is None or r.body.get("type") == event)
        ]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver()
    app = web.Application()
    app.router.add_post("/hook", recv.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    recv.url = str(server.make_url("/hook"))
    yield recv
    await server.close()
