"""The spool under faults: a failing disk, a record Kafka refuses for good, a stalled drain,
and gauges that tell the truth between writes (issues 9.1, 15.1, 15.13, 16)."""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from bridge.contract.records import Record
from bridge.core.errors import PublishError, RecordRejected, SpoolError
from bridge.ingress import drain as drain_module
from bridge.ingress import segments
from bridge.ingress import spool as spool_module
from bridge.ingress.spool import REJECT_LIMIT, ROLL_DRAINED_BYTES, Spool
from bridge.ingress.store import Durable
from tests.fakes import InMemoryPublisher
from tests.unit.ingress.test_spool import Running, record, running, spool_at

__all__ = ["running"]  # the fixture, shared with test_spool.py


def sample(spool: Spool, name: str, *labels: str) -> float:
    value = spool._metrics.registry.get_sample_value(
        name, dict(zip(("op",) if "disk" in name else ("outcome",), labels, strict=False))
    )
    return value or 0.0


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class Picky(InMemoryPublisher):
    """Refuses some event ids for good; fails everything retriably while ``down``."""

    def __init__(self, refuse: set[str]) -> None:
        super().__init__()
        self.refuse = refuse
        self.down = False
        self.calls = 0

    async def publish(self, record: Record, *, timeout: float | None = None) -> None:
        self.calls += 1
        if self.down:
            raise PublishError("down")
        if record.event_id in self.refuse:
            raise RecordRejected("MessageSizeTooLargeError: too large")
        self.records.append(record)


async def test_fsync_failure_answers_503_keeps_tasks_and_recovers(
    running: Running, monkeypatch
) -> None:
    """EIO on fsync: the appends fail, the writer lives, the state shows on a gauge and one
    log line, and the disk is used again once it works."""
    spool = running.spool
    real = segments.write_all

    def broken(fd: int | None, data: bytes) -> None:
        raise segments.DiskFault("fsync", OSError(errno.EIO, "I/O error"))

    await spool.append(record(0))
    monkeypatch.setattr(spool_module, "_write_all", broken)
    results = await asyncio.gather(
        *(spool.append(record(i)) for i in range(1, 6)), return_exceptions=True
    )
    assert all(isinstance(r, SpoolError) for r in results)
    assert sample(spool, "spotler_bridge_spool_disk_errors_total", "fsync") == 1
    assert sample(spool, "spotler_bridge_spool_unwritable") == 1
    assert not spool.writable
    assert not any(t.done() for t in running.tasks)
    monkeypatch.setattr(spool_module, "_write_all", real)

    def writable_again() -> bool:
        spool.check(connected=True)
        return spool.writable

    await until(writable_again, timeout=5)
    await spool.append(record(6))
    assert sample(spool, "spotler_bridge_spool_unwritable") == 0
    publisher = InMemoryPublisher()
    running.drain_to(publisher)
    await asyncio.wait_for(spool.wait_until(lambda: spool.empty), 10)
    assert [r.event_id for r in publisher.records] == ["message/0", "message/6"]


async def test_mark_that_cannot_be_written_never_stops_the_drain(
    running: Running, monkeypatch, tmp_path: Path
) -> None:
    """ENOSPC on the progress mark: counted, and the drain goes on; a restart sends again."""

    def full(path: Path, offset: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(drain_module, "write_mark", full)
    await asyncio.gather(*(running.spool.append(record(i)) for i in range(10)))
    publisher = InMemoryPublisher()
    running.drain_to(publisher)
    await asyncio.wait_for(running.spool.wait_until(lambda: running.spool.empty), 10)
    await asyncio.gather(*(running.spool.append(record(i)) for i in range(10, 20)))
    await asyncio.wait_for(running.spool.wait_until(lambda: running.spool.empty), 10)
    assert len(publisher.records) == 20
    assert sample(running.spool, "spotler_bridge_spool_disk_errors_total", "mark") >= 2
    assert not any(t.done() for t in running.tasks)


async def test_drained_active_segment_gives_its_space_back(tmp_path: Path) -> None:
    """A large active segment, once drained, is sealed and deleted without a restart."""
    spool = spool_at(tmp_path, segment_bytes=64 * 1024 * 1024)
    spool.open()
    run = Running(spool)
    run.tasks.append(asyncio.create_task(spool.run_writer()))
    try:
        await asyncio.gather(*(spool.append(record(i, size=2000)) for i in range(700)))
        size = sum(p.stat().st_size for p in tmp_path.glob("*.wal"))
        assert size > ROLL_DRAINED_BYTES
        run.drain_to(InMemoryPublisher())
        await asyncio.wait_for(spool.wait_until(lambda: spool.empty), 10)
        await until(lambda: sum(p.stat().st_size for p in tmp_path.glob("*.wal")) == 0)
        await spool.append(record(999))  # the spool still takes records
    finally:
        await run.stop()


async def test_refused_record_is_set_aside_and_the_rest_drains(running: Running) -> None:
    """A spooled record Kafka refuses for good becomes a small dead letter after a few tries;
    the records behind it are published; attempts are counted per chunk, not per record."""
    spool = running.spool
    await asyncio.gather(*(spool.append(record(i)) for i in range(50)))
    await spool.append(record(50, size=200_000))
    await asyncio.gather(*(spool.append(record(i)) for i in range(51, 60)))
    publisher = Picky({"message/50"})
    running.drain_to(publisher)
    await asyncio.wait_for(spool.wait_until(lambda: spool.empty), 30)
    published = [r for r in publisher.records if r.label == "message"]
    assert len({r.event_id for r in published}) == 59
    letters = [r for r in publisher.records if r.label == "deadletter"]
    assert len(letters) == 1
    letter = orjson.loads(letters[0].value)
    assert letters[0].topic == "t.events.deadletter"
    assert letter["data"]["eventId"] == "message/50"
    assert letter["data"]["size"] == 200_006
    assert letter["data"]["truncated"] is True
    assert len(letters[0].value) < 10_000
    failed = sample(spool, "spotler_bridge_spool_drain_attempts_total", "failed")
    assert failed == REJECT_LIMIT - 1
    assert sample(spool, "spotler_bridge_records_set_aside_total", "deadletter") == 1
    webhooks = spool._metrics.registry.get_sample_value(
        "spotler_bridge_webhooks_total", {"event": "message", "outcome": "unavailable"}
    )
    assert webhooks == 0  # drain retries never count as webhook outcomes


class SessionEnding(Picky):
    """Like Kafka with the bridge's producer: a refusal ends the session, so the next publish
    fails retriably ("no session") before a new one starts (bridge/kafka/producer.py)."""

    def __init__(self, refuse: set[str]) -> None:
        super().__init__(refuse)
        self.session_down = False

    async def publish(self, record: Record, *, timeout: float | None = None) -> None:
        if self.session_down:
            self.session_down = False
            raise PublishError("no Kafka producer session (connecting)")
        try:
            await super().publish(record, timeout=timeout)
        except RecordRejected:
            self.session_down = True
            raise


async def test_refused_record_is_set_aside_though_each_refusal_ends_the_session(
    running: Running,
) -> None:
    """The dead letter's first try meets no session: the drain must not send the refused record
    again (it would be refused, end the session again, and jam the spool for good)."""
    spool = running.spool
    await spool.append(record(1, size=200_000))
    await spool.append(record(2))
    publisher = SessionEnding({"message/1"})
    running.drain_to(publisher)
    await asyncio.wait_for(spool.wait_until(lambda: spool.empty), 30)
    assert [r.label for r in publisher.records] == ["deadletter", "message"]
    assert orjson.loads(publisher.records[0].value)["data"]["eventId"] == "message/1"


async def test_oldest_age_is_true_after_a_restart_and_kept_by_a_timer(
    running: Running, tmp_path: Path
) -> None:
    """A jammed spool reopened: the oldest record's age is its real age, and it grows."""
    await asyncio.gather(*(running.spool.append(record(i)) for i in range(5)))
    await running.stop()
    spool = spool_at(tmp_path)
    spool.open()
    first = sample(spool, "spotler_bridge_spool_oldest_age_seconds")
    assert first > 0
    publisher = Picky(set())
    publisher.down = True
    monitor = asyncio.create_task(spool.run_monitor(publisher, interval=0.05))
    try:
        await until(lambda: sample(spool, "spotler_bridge_spool_oldest_age_seconds") > first + 0.2)
    finally:
        monitor.cancel()
        spool.close()


async def test_spool_that_does_not_drain_turns_ingress_not_ready(tmp_path: Path) -> None:
    """Records held past BRIDGE_SPOOL_STALL_SECONDS while Kafka is connected: stalled, not
    ready; once the drain moves again, ready."""
    spool = spool_at(tmp_path, stall_seconds=1)
    spool.open()
    run = Running(spool)
    run.tasks.append(asyncio.create_task(spool.run_writer()))
    publisher = Picky(set())
    publisher.down = True
    durable = Durable(publisher, spool, publish_timeout=0.1)
    run.tasks.append(asyncio.create_task(spool.run_monitor(publisher, interval=0.05)))
    run.drain_to(publisher)
    try:
        ready: Callable[[], bool] = lambda: durable.ready  # noqa: E731
        assert await durable(record(1)) == "spooled"
        assert ready()
        await until(lambda: spool.stalled, timeout=5)
        assert not ready()
        assert sample(spool, "spotler_bridge_spool_stalled") == 1
        publisher.down = False
        await until(lambda: spool.empty and not spool.stalled, timeout=20)
        assert ready()
        assert sample(spool, "spotler_bridge_spool_stalled") == 0
    finally:
        await run.stop()


async def test_direct_publish_refused_for_good_becomes_a_dead_letter(tmp_path: Path) -> None:
    """Kafka refuses a record at once: its dead letter is published, nothing is spooled."""
    spool = spool_at(tmp_path)
    spool.open()
    publisher = Picky({"message/7"})
    durable = Durable(publisher, spool, publish_timeout=1)
    try:
        assert await durable(record(7, size=300_000)) == "deadletter"
        assert await durable(record(8)) == "published"
    finally:
        spool.close()
    assert spool.empty
    assert [r.label for r in publisher.records] == ["deadletter", "message"]
    assert orjson.loads(publisher.records[0].value)["data"]["eventId"] == "message/7"
