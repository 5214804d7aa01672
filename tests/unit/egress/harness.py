"""A broker-free egress harness: the real runner and API client, a real local HTTP server
standing in for the platform, and the in-memory publisher in place of Kafka."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from bridge.api.client import SpotlerClient
from bridge.contract.records import Topics
from bridge.core.config import ApiSettings, EgressSettings
from bridge.core.errors import InvalidCommand
from bridge.core.parsers import Secret
from bridge.egress import commands
from bridge.egress.commands import Command, Kind, Position
from bridge.egress.runner import CommandRunner
from bridge.telemetry.metrics import Metrics
from tests.fakes import InMemoryPublisher

TOPICS = Topics("t")
Answer = Callable[[web.Request], web.StreamResponse]


def created(_: web.Request) -> web.StreamResponse:
    return web.json_response({"id": "m-1"}, status=201)


@dataclass
class FakePlatform:
    """A real aiohttp server; ``answer`` decides each response, ``calls`` records requests."""

    answer: Answer = created
    calls: list[dict[str, Any]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    url: str = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.calls.append(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "body": await request.read(),
                "time": asyncio.get_running_loop().time(),
            }
        )
        return self.answer(request)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/v3"

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class Egress:
    """The runner wired to a fake platform and an in-memory publisher."""

    def __init__(self, platform: FakePlatform, **settings: Any) -> None:
        options: dict[str, Any] = {
            "max_attempts": 3,
            "backoff_base": 0.01,
            "backoff_max": 0.05,
            "rate_limit": 0.0,
            "channel_rate_limit": 0.0,
        }
        options.update(settings)
        self.settings = EgressSettings(**options)
        self.metrics = Metrics()
        self.publisher = InMemoryPublisher()
        self.api = SpotlerClient(
            ApiSettings(url=platform.url, api_key=Secret("k"), timeout=5.0), self.metrics
        )
        self.stop = asyncio.Event()
        self.runner = CommandRunner(
            self.settings, TOPICS, self.metrics, self.publisher, self.api, self.stop, lambda s: None
        )
        self._offsets = itertools.count()

    async def run(self, raw: bytes, kind: Kind = "send-message") -> str:
        """Parse and run one record as the consumer does; return the outcome."""
        position = Position(
            TOPICS.send_message if kind == "send-message" else TOPICS.update_conversation,
            0,
            next(self._offsets),
            None,
            0,
        )
        try:
            command: Command | InvalidCommand = commands.parse(raw, kind)
        except InvalidCommand as exc:
            command = exc
        return await self.runner.run(position, kind, raw, command)

    def results(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in self.publisher.records if r.topic == TOPICS.results]

    def deadletters(self) -> list[dict[str, Any]]:
        return [
            orjson.loads(r.value)
            for r in self.publisher.records
            if r.topic == TOPICS.commands_deadletter
        ]

    async def close(self) -> None:
        await self.api.close()


CHANNEL = "31612345678@whatsapp.eazy.im"
CONTACT = "31611111111@whatsapp.eazy.im"


def send(command_id: Any, **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "id": command_id,
        "channelJid": CHANNEL,
        "contactJid": CONTACT,
        "message": {"type": "text", "body": "hi"},
    }
    body.update(extra)
    return orjson.dumps(body)
