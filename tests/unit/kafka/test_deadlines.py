"""``Deadlines``: the publisher's waiting limits, one timer per distinct limit (issue 13)."""

from __future__ import annotations

import asyncio
import functools

import pytest

from bridge.kafka.sessions import Deadlines


async def test_a_waiter_still_waiting_at_its_deadline_gets_timeout_error() -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    late, answered = loop.create_future(), loop.create_future()
    started = loop.time()
    deadlines.add(late, 0.05)
    deadlines.add(answered, 0.05)
    answered.set_result(None)
    with pytest.raises(TimeoutError):
        await late
    assert 0.04 <= loop.time() - started < 1.0
    assert answered.result() is None  # answered before its deadline: left alone


def record(expired: list[str], name: str, _future: asyncio.Future[None]) -> None:
    expired.append(name)


async def test_each_limit_expires_in_its_own_time_and_in_order() -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    expired: list[str] = []
    futures: dict[str, asyncio.Future[None]] = {}
    for name, limit in (("long-1", 0.3), ("short-1", 0.05), ("long-2", 0.3), ("short-2", 0.05)):
        future = futures[name] = loop.create_future()
        future.add_done_callback(functools.partial(record, expired, name))
        deadlines.add(future, limit)
    await asyncio.wait(futures.values())
    assert expired == ["short-1", "short-2", "long-1", "long-2"]
    for future in futures.values():
        assert isinstance(future.exception(), TimeoutError)


async def test_a_waiter_given_up_is_skipped() -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    gave_up, waiting = loop.create_future(), loop.create_future()
    deadlines.add(gave_up, 0.02)
    deadlines.add(waiting, 0.04)
    gave_up.cancel()
    with pytest.raises(TimeoutError):
        await waiting
    assert gave_up.cancelled()
