"""Hostile requests over a raw socket against the real webhook server (issue 15 items 3, 9, 10).

Raw bytes, not an HTTP client, so that headers and bodies arrive exactly as an attacker sends
them. Expected statuses come from DESIGN.md ("Ingress"): 401 for a bad token, and 200 with a
dead letter carrying the raw bytes for any authenticated delivery that cannot be parsed.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import zlib
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import generate_latest

from bridge.contract.records import Record, Topics
from bridge.core.config import IngressSettings
from bridge.core.parsers import Secret
from bridge.ingress.webhook import make_webhook_app
from bridge.telemetry.metrics import Metrics
from tests import samples

TOKEN = "t0ken-for-hostile-tests-0123456789"
MAX_BODY = 64 * 1024
#: The documented depth limit (README.md, "Topics and records").
MAX_DEPTH = 64


class Store:
    def __init__(self) -> None:
        self.records: list[Record] = []

    async def __call__(self, record: Record) -> str:
        self.records.append(record)
        return "published"


class Server:
    def __init__(self, server: TestServer, store: Store, metrics: Metrics) -> None:
        self.server, self.store, self.metrics = server, store, metrics

    async def send(self, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
        """One raw request (``head`` without the final blank line); returns status and body."""
        assert self.server.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        try:
            length = b"Content-Length: %d\r\n" % len(body)
            writer.write(
                head.rstrip(b"\r\n") + b"\r\n" + length + b"Connection: close\r\n\r\n" + body
            )
            await writer.drain()
            async with asyncio.timeout(10):
                answer = await reader.read()
        finally:
            writer.close()
        status_line, _, rest = answer.partition(b"\r\n")
        return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]

    def metric(self, line: str) -> float:
        for row in generate_latest(self.metrics.registry).decode().splitlines():
            if row.startswith(line + " "):
                return float(row.rsplit(" ", 1)[1])
        return 0.0


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    settings = IngressSettings(
        webhook_tokens=(Secret(TOKEN),), max_body_bytes=MAX_BODY, read_timeout=2.0
    )
    store, metrics = Store(), Metrics()
    test_server = TestServer(make_webhook_app(settings, Topics("t"), metrics, store))
    await test_server.start_server()
    try:
        yield Server(test_server, store, metrics)
    finally:
        await test_server.close()


POST = b"POST /webhooks HTTP/1.1\r\nHost: bridge\r\n"
AUTH = b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"


@pytest.mark.parametrize(
    "value",
    [b"Bearer \xff\xfe\xe9", "Bearer tökén".encode(), b"Bearer " + TOKEN.encode()[:-1] + b"\xe9"],
)
async def test_non_ascii_authorization_is_401_and_counted(server: Server, value: bytes) -> None:
    """Non-ASCII bytes in Authorization: 401, counted as unauthorized, nothing stored."""
    status, _ = await server.send(POST + b"Authorization: " + value + b"\r\n", b'{"type":"x"}')
    assert status == 401
    assert server.store.records == []
    assert server.metric('spotler_bridge_webhook_rejections_total{reason="unauthorized"}') == 1


def deadletter_body(record: Record) -> bytes:
    data = orjson.loads(record.value)["data"]
    if data["bodyEncoding"] == "base64":
        return base64.b64decode(data["body"])
    return str(data["body"]).encode()


@pytest.mark.parametrize("encoding", [b"gzip", b"deflate", b"x-gzip"])
async def test_body_that_does_not_decode_is_dead_lettered_with_200(
    server: Server, encoding: bytes
) -> None:
    """A body claiming gzip/deflate that does not decode: 200, dead letter with the raw bytes."""
    raw = orjson.dumps(samples.message_body("text"))
    status, answer = await server.send(POST + AUTH + b"Content-Encoding: " + encoding, raw)
    assert status == 200, answer
    [record] = server.store.records
    assert record.topic == "t.events.deadletter"
    assert deadletter_body(record) == raw
    assert "Content-Encoding" in orjson.loads(record.value)["data"]["reason"]


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [(b"gzip", gzip.compress), (b"deflate", zlib.compress)],
)
async def test_body_that_decodes_is_normalized(
    server: Server, encoding: bytes, compress: Callable[[bytes], bytes]
) -> None:
    """Honest gzip/deflate bodies still become events with the decoded payload."""
    body = samples.message_body("text")
    status, _ = await server.send(
        POST + AUTH + b"Content-Encoding: " + encoding, compress(orjson.dumps(body))
    )
    assert status == 200
    [record] = server.store.records
    assert record.topic == "t.events.message"
    assert orjson.loads(record.value)["data"]["payload"] == body


async def test_gzip_bomb_is_413(server: Server) -> None:
    """A small body that inflates past the body limit is refused (the bomb still holds)."""
    bomb = gzip.compress(b" " * (MAX_BODY * 20))
    assert len(bomb) < MAX_BODY
    status, _ = await server.send(POST + AUTH + b"Content-Encoding: gzip", bomb)
    assert status == 413
    assert server.store.records == []


@pytest.mark.parametrize("inside_message", [True, False])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 300, 1023])
async def test_deep_nesting_is_dead_lettered_with_raw_bytes(
    server: Server, depth: int, inside_message: bool
) -> None:
    """Beyond the documented depth a delivery is a dead letter with its raw bytes, 200."""

    def nested(levels: int) -> bytes:
        return b"[" * levels + b"]" * levels

    if inside_message:  # two levels are the body and its message object
        raw = b'{"type":"message","message":{"id":"m1","type":"text","x":' + nested(depth - 2)
        raw += b"}}"
    else:
        raw = b'{"type":"typing","x":' + nested(depth - 1) + b"}"
    status, _ = await server.send(POST + AUTH, raw)
    assert status == 200
    [record] = server.store.records
    assert record.topic == "t.events.deadletter"
    assert deadletter_body(record) == raw
    assert f"deeper than {MAX_DEPTH}" in orjson.loads(record.value)["data"]["reason"]


async def test_nesting_at_the_limit_is_an_event(server: Server) -> None:
    """Exactly MAX_DEPTH levels is still a normal event on its topic."""
    raw = b'{"type":"typing","x":' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    status, _ = await server.send(POST + AUTH, raw)
    assert status == 200
    [record] = server.store.records
    assert record.topic == "t.events.typing"


class GatedStore(Store):
    """Holds every record until the gate opens: the bodies stay in flight meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = 0
        self.arrived = asyncio.Event()

    async def __call__(self, record: Record) -> str:
        self.waiting += 1
        self.arrived.set()
        await self.gate.wait()
        return await super().__call__(record)


async def test_bytes_in_flight_are_bounded_then_recover() -> None:
    """Past BRIDGE_MAX_INFLIGHT_BYTES: 503 with Retry-After, counted as busy; then served again."""
    settings = IngressSettings(
        webhook_tokens=(Secret(TOKEN),), max_body_bytes=MAX_BODY, max_inflight_bytes=MAX_BODY
    )
    store, metrics = GatedStore(), Metrics()
    test_server = TestServer(make_webhook_app(settings, Topics("t"), metrics, store))
    await test_server.start_server()
    server = Server(test_server, store, metrics)
    try:
        first = orjson.dumps({"type": "typing", "pad": "x" * (MAX_BODY // 2)})
        second = orjson.dumps({"type": "custom", "pad": "y" * (MAX_BODY // 2)})
        held = asyncio.create_task(server.send(POST + AUTH, first))
        async with asyncio.timeout(5):
            await store.arrived.wait()
        status, _ = await server.send(POST + AUTH, second)
        assert status == 503
        assert server.metric('spotler_bridge_webhook_rejections_total{reason="busy"}') == 1
        store.gate.set()
        assert (await held)[0] == 200
        status, _ = await server.send(POST + AUTH, second)  # the platform's retry
        assert status == 200
        assert [r.topic for r in store.records] == ["t.events.typing", "t.events.custom"]
    finally:
        await test_server.close()
