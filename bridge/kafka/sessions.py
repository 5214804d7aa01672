"""Producer sessions, shared by both publishers: the working session and the wait for a new
one (:class:`SessionKeeper`), how long callers wait (:class:`Deadlines`), and settling the
callers of a batch (:func:`settle`). No Kafka client is imported here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Generic, Protocol, TypeVar


def settle(waiters: list[asyncio.Future[None]], exc: BaseException | None) -> None:
    """Resolve the callers of one batch: all acknowledged, or all failed with ``exc``."""
    for waiter in waiters:
        if not waiter.done():  # a caller that stopped waiting cancelled its own future
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)


class _Numbered(Protocol):
    number: int
    ended: str | None


S = TypeVar("S", bound=_Numbered)


class SessionKeeper(Generic[S]):
    """What both publishers keep about their producer sessions: the working one, how many were
    started, and the announcement of a new one that :meth:`until_new_session` waits for."""

    def __init__(self) -> None:
        self._session: S | None = None
        self._sessions = 0  # sessions started so far: the next one's number is this + 1
        self._started = asyncio.Event()  # set (and replaced) when a session starts
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def session(self) -> int:
        session = self._session
        return session.number if session is not None and session.ended is None else 0

    async def until_new_session(self, seen: int, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.session in (0, seen):
                    await self._started.wait()  # this session's event: a later start sets it
                return True
        return False

    def _announce(self, session: S) -> None:
        """``session`` works: it is the one publishes go to, and waiters learn of it."""
        self._session = session
        self._connected = True
        self._started.set()
        self._started = asyncio.Event()


class Deadlines:
    """How long callers wait, without a timer per call: one timer per distinct limit.

    Callers with the same limit expire in the order they came, so each limit keeps a FIFO of
    ``(deadline, future)`` and one timer for its oldest entry. A future still waiting at its
    deadline gets :class:`TimeoutError`; one answered (or given up) before is skipped.
    """

    def __init__(self) -> None:
        self._queues: dict[float, deque[tuple[float, asyncio.Future[None]]]] = {}
        self._timers: dict[float, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        # Looked up once: asyncio.get_running_loop() costs a getpid() system call on 3.11.
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def add(self, future: asyncio.Future[None], timeout: float) -> None:
        loop = self.loop
        deadline = loop.time() + timeout
        queue = self._queues.get(timeout)
        if queue is None:
            queue = self._queues[timeout] = deque()
        queue.append((deadline, future))
        if timeout not in self._timers:
            self._timers[timeout] = loop.call_at(deadline, self._expire, timeout)

    def _expire(self, timeout: float) -> None:
        queue = self._queues[timeout]
        now = self.loop.time()
        while queue and queue[0][0] <= now:
            future = queue.popleft()[1]
            if not future.done():
                future.set_exception(TimeoutError())
        if queue:
            self._timers[timeout] = self.loop.call_at(queue[0][0], self._expire, timeout)
        else:
            del self._timers[timeout], self._queues[timeout]
