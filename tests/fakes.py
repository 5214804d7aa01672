"""Fakes of the bridge's ports for tests without a broker or a platform: real objects that
record what they are given, never mocks of the code under test."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

from bridge.contract.records import Record


class InMemoryPublisher:
    """A :class:`~bridge.kafka.publisher.SessionPublisher` that keeps records in a list.

    ``fail_with`` makes every publish raise it; ``failures`` makes only the next N raise.
    """

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.connected = True
        self.fail_with: Exception | None = None
        self.failures: deque[Exception] = deque()
        self.calls = 0
        self.session = 1  # :meth:`new_session` starts another (the producer replaced)
        self._started = asyncio.Event()

    def new_session(self) -> None:
        self.session += 1
        self._started.set()
        self._started = asyncio.Event()

    async def until_new_session(self, seen: int, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.session in (0, seen):
                    await self._started.wait()
                return True
        return False

    async def publish(self, record: Record, *, timeout: float | None = None) -> None:
        self.calls += 1
        if self.failures:
            raise self.failures.popleft()
        if self.fail_with is not None:
            raise self.fail_with
        self.records.append(record)


Reply = dict[str, Any] | Exception


class FakeApi:
    """Stands in for :class:`~bridge.api.client.SpotlerClient`: answers scripted replies in turn
    (an exception is raised), then ``default``; records every call as (method, channel,
    contact, body, request_id)."""

    def __init__(self, *replies: Reply, default: Callable[[], Reply] | None = None) -> None:
        self.replies: deque[Reply] = deque(replies)
        self.default = default or (lambda: {"id": "m" * 40})
        self.calls: list[tuple[str, str, str, dict[str, Any], str]] = []
        self.called = asyncio.Event()  # set by every call

    async def _answer(self, method: str, channel: str, contact: str, body: Any, rid: str) -> Any:
        self.calls.append((method, channel, contact, body, rid))
        self.called.set()
        await asyncio.sleep(0)
        reply = self.replies.popleft() if self.replies else self.default()
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def send_message(
        self, channel: str, contact: str, body: dict[str, Any], *, request_id: str
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._answer("send", channel, contact, body, request_id)
        return result

    async def update_conversation(
        self, channel: str, contact: str, changes: dict[str, Any], *, request_id: str
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._answer("update", channel, contact, changes, request_id)
        return result
