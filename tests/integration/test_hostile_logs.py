"""A hostile run against a real ``bridge ingress``: no log line shows a secret (issue 15 item 4).

Malformed and hostile requests go over raw sockets to a real process (console and JSON log
formats) whose tokens and API key are known; afterwards every line it logged, its own and its
libraries', is searched for them, and for raw terminal escapes (issue 15 item 8).
"""

from __future__ import annotations

import asyncio
import gzip

import orjson
import pytest

from tests import samples
from tests.integration.procs import ProcessFactory

pytestmark = pytest.mark.kafka

TOKEN = "hostile-run-token-Kq72Lm05"
API_KEY = "hostile-run-api-key-Vb61Rz09"


async def send(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()


def post(headers: bytes, body: bytes) -> bytes:
    return (
        b"POST /webhooks HTTP/1.1\r\nHost: bridge\r\n"
        + headers
        + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        + body
    )


@pytest.mark.parametrize("fmt", ["console", "json"])
async def test_no_secret_in_any_log_line(
    procs: ProcessFactory, kafka: str, prefix: str, fmt: str
) -> None:
    """Headers quoting the token or API key, tracebacks, escapes: none leaks into the logs."""
    bridge = procs.make(
        "ingress",
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS=kafka,
        BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_WEBHOOK_TOKENS=f"{TOKEN},second-token-0123456789",
        BRIDGE_SPOTLER_API_KEY=API_KEY,
        BRIDGE_LOG_FORMAT=fmt,
        BRIDGE_LOG_LEVEL="debug",
    )
    await bridge.start()
    await bridge.wait_ready()
    good = b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
    body = orjson.dumps(samples.message_body("text", message_id="id\x1b[2Jwiped"))
    requests = [
        post(b"Authorization: Bearer " + TOKEN.encode() + b"\x0b\r\n", body),
        post(b"Authorization: Bearer " + API_KEY.encode() + b"\x0b\r\n", body),
        post(b"X-Api-Key: " + API_KEY.encode() + b"\x01\r\n" + good, body),
        post(b"Authorization: Bearer \xff" + TOKEN.encode() + b"\r\n", body),
        post(b"Authorization: Basic " + API_KEY.encode() + b"\r\n", body),
        post(good + b"Content-Encoding: gzip\r\n", body),
        post(good + b"Content-Encoding: gzip\r\n", gzip.compress(body)[:-9]),
        post(good, body),
        b"GET /\x1b[2J" + TOKEN.encode() + b" HTTP/1.1\r\nHost: b\r\n\r\n",
        b"POST /webhooks HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b"\r\nContent-Length: nope\r\n\r\n",
    ]
    statuses = []
    for request in requests:
        answer = await send(bridge.http_port, request)
        statuses.append(answer.split(b" ", 2)[1] if answer else b"-")
    assert statuses[5:8] == [b"200", b"200", b"200"], statuses  # authenticated deliveries
    assert statuses[3:5] == [b"401", b"401"], statuses
    await bridge.stop()

    logs = bridge.log_path.read_bytes()
    assert b'"webhook"' in logs or b"webhook" in logs  # the run did log
    for secret in (TOKEN, API_KEY):
        assert secret.encode() not in logs, f"{secret} in the logs"
        assert secret[:12].encode() not in logs  # nor a prefix of it
    assert b"\x1b[2J" not in logs  # no raw terminal escape from a hostile value
