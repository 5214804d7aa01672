"""The spool: framing, group commit, crash recovery, draining in order, size bound."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.contract.records import Record
from bridge.core.backoff import Backoff
from bridge.core.config import SpoolSettings
from bridge.core.errors import PublishError, SpoolError
from bridge.ingress import drain as drain_module
from bridge.ingress.spool import Spool, decode, encode, scan
from bridge.telemetry.metrics import Metrics
from tests.fakes import InMemoryPublisher


def record(n: int, size: int = 100) -> Record:
    return Record(
        topic="t.events.message",
        key=f"c/{n % 7}".encode(),
        value=b"%06d" % n + b"x" * size,
        event_id=f"message/{n}",
        label="message",
    )


def spool_at(path: Path, **overrides: int) -> Spool:
    options = {"dir": str(path), "max_bytes": 64 * 1024 * 1024, "segment_bytes": 64 * 1024}
    options.update(overrides)
    return Spool(SpoolSettings(**options), Metrics())  # type: ignore[arg-type]


class Running:
    """A spool with its writer (and optionally drain) tasks running."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.tasks: list[asyncio.Task[None]] = []

    def drain_to(self, publisher: InMemoryPublisher) -> None:
        self.tasks.append(asyncio.create_task(self.spool.run_drain(publisher, timeout=1)))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.spool.close()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    spool = spool_at(tmp_path)
    spool.open()
    run = Running(spool)
    run.tasks.append(asyncio.create_task(spool.run_writer()))
    yield run
    await run.stop()


def test_frame_round_trip() -> None:
    original = Record(
        topic="a",
        key=None,
        value=b"\x00\xff" * 10,
        event_id="x/1",
        label="x",
        headers=(("content-type", b"application/cloudevents+json"),),
    )
    frames, valid, corruptions = scan(encode(original, 123.5))
    assert (len(frames), corruptions) == (1, 0)
    assert decode(frames[0][1]) == (original, 123.5)
    assert valid == len(encode(original, 123.5))


async def test_appends_are_durable_on_disk(running: Running, tmp_path: Path) -> None:
    await asyncio.gather(*(running.spool.append(record(i)) for i in range(50)))
    assert running.spool.pending == 50
    data = b"".join(p.read_bytes() for p in sorted(tmp_path.glob("*.wal")))
    frames, _, corruptions = scan(data)
    assert corruptions == 0
    assert [decode(p)[0].event_id for _, p in frames] == [f"message/{i}" for i in range(50)]


async def test_group_commit_shares_fsyncs(running: Running, monkeypatch) -> None:
    """Many concurrent appends are written in a few batches, not one fsync each."""
    calls = 0
    real = os.fsync

    def counting(fd: int) -> None:
        nonlocal calls
        calls += 1
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    await asyncio.gather(*(running.spool.append(record(i)) for i in range(500)))
    assert running.spool.pending == 500
    assert calls < 100  # counted, not mocked away: the fsyncs really happen


async def test_drain_publishes_in_order_and_deletes_segments(
    running: Running, tmp_path: Path
) -> None:
    for i in range(20):
        await running.spool.append(record(i))
    await asyncio.gather(*(running.spool.append(record(i)) for i in range(20, 1020)))
    assert len(list(tmp_path.glob("*.wal"))) > 1  # several 64 KiB segments
    publisher = InMemoryPublisher()
    running.drain_to(publisher)
    await asyncio.wait_for(running.spool.wait_until(lambda: running.spool.empty), 10)
    ids = [int(r.event_id.split("/")[1]) for r in publisher.records]
    assert ids == sorted(ids)
    assert len(ids) == len(set(ids)) == 1020
    assert len(list(tmp_path.glob("*.wal"))) == 1  # only the active segment is left


async def test_drain_waits_out_kafka_failures(running: Running) -> None:
    publisher = InMemoryPublisher()
    publisher.fail_with = PublishError("down")
    await asyncio.gather(*(running.spool.append(record(i)) for i in range(10)))
    running.drain_to(publisher)
    # two failed rounds of the whole batch (a condition with a deadline, not a sleep)
    async with asyncio.timeout(10):
        while publisher.calls < 20:  # noqa: ASYNC110 - polls a plain counter under a deadline
            await asyncio.sleep(0.01)
    assert running.spool.pending == 10
    publisher.fail_with = None
    await asyncio.wait_for(running.spool.wait_until(lambda: running.spool.empty), 15)
    assert [r.event_id for r in publisher.records] == [f"message/{i}" for i in range(10)]


async def test_new_session_resends_at_once(running: Running, monkeypatch) -> None:
    """Issue 16: a backoff grown while Kafka was away must not delay the drain after its
    return. A new producer session cuts the wait short; without one the backoff holds."""
    monkeypatch.setattr(drain_module, "Backoff", lambda base, cap: Backoff(5.0, 10.0))
    publisher = InMemoryPublisher()
    await asyncio.gather(*(running.spool.append(record(i)) for i in range(10)))
    publisher.fail_with = PublishError("no Kafka producer session (connecting)")
    running.drain_to(publisher)
    await asyncio.wait_for(
        running.spool.wait_until(lambda: publisher.calls == 10), 5
    )  # one failed attempt
    publisher.fail_with = None
    await asyncio.sleep(0.5)
    assert publisher.calls == 10  # the same session: the drain waits out its 5 s backoff
    publisher.new_session()  # the producer was replaced (Kafka is back)
    await asyncio.wait_for(running.spool.wait_until(lambda: running.spool.empty), 2)
    assert [r.event_id for r in publisher.records] == [f"message/{i}" for i in range(10)]


async def test_full_spool_refuses(tmp_path: Path) -> None:
    spool = spool_at(tmp_path, max_bytes=20_000, segment_bytes=8192)
    spool.open()
    run = Running(spool)
    run.tasks.append(asyncio.create_task(spool.run_writer()))
    try:
        accepted, refused = 0, None
        for i in range(1000):
            try:
                await spool.append(record(i, size=1000))
            except SpoolError as exc:
                refused = exc
                break
            accepted += 1
        assert refused is not None
        assert "full" in str(refused)
        assert 10 <= accepted <= 20
        assert not spool.writable or spool.bytes > 18_000
    finally:
        await run.stop()


async def reopen_and_drain(path: Path) -> tuple[Spool, list[str]]:
    spool = spool_at(path)
    spool.open()
    run = Running(spool)
    publisher = InMemoryPublisher()
    run.tasks.append(asyncio.create_task(spool.run_writer()))
    run.drain_to(publisher)
    await asyncio.wait_for(spool.wait_until(lambda: spool.empty), 10)
    await run.stop()
    return spool, [r.event_id for r in publisher.records]


async def test_restart_drains_what_was_left(running: Running, tmp_path: Path) -> None:
    await asyncio.gather(*(running.spool.append(record(i)) for i in range(30)))
    await running.stop()  # like a crash: nothing drained
    _, ids = await reopen_and_drain(tmp_path)
    assert ids == [f"message/{i}" for i in range(30)]
    _, again = await reopen_and_drain(tmp_path)
    assert again == []  # drained marks: not sent a second time


async def test_torn_tail_is_cut_and_counted(running: Running, tmp_path: Path) -> None:
    await asyncio.gather(*(running.spool.append(record(i)) for i in range(20)))
    await running.stop()
    [segment] = sorted(tmp_path.glob("*.wal"))
    data = segment.read_bytes()
    segment.write_bytes(data[: len(data) - 37])  # power loss in the middle of the last write
    spool, ids = await reopen_and_drain(tmp_path)
    assert ids == [f"message/{i}" for i in range(19)]
    assert spool._metrics.spool_corruptions._value.get() == 1


async def test_corruption_in_the_middle_skips_only_the_bad_frame(
    running: Running, tmp_path: Path
) -> None:
    await asyncio.gather(*(running.spool.append(record(i)) for i in range(20)))
    await running.stop()
    [segment] = sorted(tmp_path.glob("*.wal"))
    data = bytearray(segment.read_bytes())
    frame = len(encode(record(0), 0.0))
    data[5 * frame + 30] ^= 0xFF  # a bit flip inside record 5's payload
    segment.write_bytes(bytes(data))
    _, ids = await reopen_and_drain(tmp_path)
    assert ids == [f"message/{i}" for i in range(20) if i != 5]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(0, 5000), flips=st.lists(st.integers(0, 5000), max_size=3))
def test_property_damage_never_crashes_and_keeps_every_intact_frame(
    cut: int, flips: list[int]
) -> None:
    frames = [encode(record(i, size=random.randint(0, 200)), 1.0) for i in range(20)]
    data = bytearray(b"".join(frames))
    cut = min(cut, len(data))
    damaged = set()
    for flip in flips:
        if flip < cut:
            data[flip] ^= 0x5A
            damaged.add(flip)
    data = data[:cut]
    found, valid, _ = scan(bytes(data))
    ids = {decode(p)[0].event_id for _, p in found}
    start = 0
    for i, frame in enumerate(frames):
        end = start + len(frame)
        intact = end <= cut and not any(start <= d < end for d in damaged)
        if intact:
            assert f"message/{i}" in ids  # a good record is never skipped
        start = end
    assert valid <= cut
    assert valid == (found[-1][0] if found else 0)  # the valid prefix ends at the last good frame


async def test_drain_reads_large_segments_piecewise(tmp_path: Path) -> None:
    """A segment bigger than one read, and a record bigger than the first read, drain whole."""
    spool = spool_at(tmp_path, segment_bytes=8 * 1024 * 1024)
    spool.open()
    run = Running(spool)
    run.tasks.append(asyncio.create_task(spool.run_writer()))
    try:
        await asyncio.gather(*(spool.append(record(i, size=1000)) for i in range(3000)))
        await spool.append(record(3000, size=1_500_000))  # larger than the first 1 MiB read
        await spool.append(record(3001))
        assert len(list(tmp_path.glob("*.wal"))) == 1  # all in one ~4.6 MB segment
        publisher = InMemoryPublisher()
        run.drain_to(publisher)
        await asyncio.wait_for(spool.wait_until(lambda: spool.empty), 20)
        assert [r.event_id for r in publisher.records] == [f"message/{i}" for i in range(3002)]
    finally:
        await run.stop()
