"""The second baseline: the 30-line webhook-to-Kafka handler a user would write first.

aiohttp on uvloop, ``orjson.loads`` of the body (a bad body gets 400), one aiokafka
``send_and_wait`` per request with ``acks=all`` and the idempotent producer, 200 after the
acknowledgement. No authentication, normalization, de-duplication, metrics, logs or spool: what
the bridge adds is measured against this. ``python -m tests.bench.naive PORT BOOTSTRAP TOPIC``.
"""

from __future__ import annotations

import asyncio
import sys

import orjson
import uvloop
from aiohttp import web
from aiokafka import AIOKafkaProducer

PRODUCER = web.AppKey("producer", AIOKafkaProducer)
TOPIC = web.AppKey("topic", str)


async def webhook(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return web.Response(status=400)
    sender = event.get("from") if isinstance(event, dict) else None
    key = str(sender.get("jid")).encode() if isinstance(sender, dict) else None  # conversation
    await request.app[PRODUCER].send_and_wait(request.app[TOPIC], body, key=key)
    return web.Response(body=b"{}", content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def serve(port: int, bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    app = web.Application()
    app[PRODUCER], app[TOPIC] = producer, topic
    app.router.add_post("/webhooks", webhook)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.Event().wait()  # until SIGTERM ends the process
    finally:
        await producer.stop()


def main() -> None:
    uvloop.run(serve(int(sys.argv[1]), sys.argv[2], sys.argv[3]))


if __name__ == "__main__":
    main()
