"""The ops port against idle, slow and many connections (issue 15 item 7).

A real server on a local port: idle connections and unfinished headers are closed after the
keep-alive timeout (the webhook port's), connections beyond the bound are answered 503 and
closed, and the port serves again as soon as connections go away.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bridge.runtime.ops import Health, OpsSite, make_ops_app
from bridge.telemetry.metrics import Metrics

TIMEOUT = 0.5
LIMIT = 8


@pytest.fixture
async def ops() -> AsyncIterator[int]:
    runner = web.AppRunner(make_ops_app(Metrics(), Health(), keepalive_timeout=TIMEOUT))
    await runner.setup()
    site = OpsSite(runner, "127.0.0.1", 0, max_connections=LIMIT)
    await site.start()
    try:
        yield site.port
    finally:
        await runner.cleanup()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server sends until it closes; fails if it has not closed in time."""
    async with asyncio.timeout(seconds):
        return await reader.read()


async def healthz(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n")
    try:
        return await closed_within(reader, 5)
    finally:
        writer.close()


async def test_idle_connection_is_closed(ops: int) -> None:
    """A connection that sends nothing is closed after the keep-alive timeout."""
    reader, writer = await asyncio.open_connection("127.0.0.1", ops)
    assert await closed_within(reader, TIMEOUT + 3) == b""
    writer.close()


async def test_unfinished_headers_are_cut(ops: int) -> None:
    """Headers trickled and never finished: the connection does not stay open."""
    reader, writer = await asyncio.open_connection("127.0.0.1", ops)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: o\r\nX-Slow: ")
    await writer.drain()
    await closed_within(reader, TIMEOUT + 3)
    writer.close()


async def test_connections_beyond_the_bound_get_503_then_recover(ops: int) -> None:
    """LIMIT idle connections fill the port; the next is refused; freed, it serves again."""
    held = [await asyncio.open_connection("127.0.0.1", ops) for _ in range(LIMIT)]
    try:
        answer = await healthz(ops)
        assert answer.startswith(b"HTTP/1.1 503"), answer
    finally:
        for _, writer in held:
            writer.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while not (answer := await healthz(ops)).startswith(b"HTTP/1.1 200"):
        assert loop.time() < deadline, answer
        await asyncio.sleep(0.05)
