"""A spool directory the volume refuses (issue 21, bad input): a file where the directory
should be stands in for a read-only or full volume (the tests run as root, which permissions do
not stop). Never a crash: appends get 503 until the directory works, then the spool goes on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bridge.core.errors import SpoolError
from bridge.ingress import spool as spool_module
from bridge.ingress.spool import Spool
from tests.unit.ingress.test_spool import Running, record, spool_at


def writable(spool: Spool) -> bool:
    return spool.writable  # read through a call: each pass of the loop looks again


async def test_a_directory_that_cannot_be_created_refuses_appends_then_recovers(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(spool_module, "DISK_RETRY_SECONDS", 0.0)
    blocker = tmp_path / "root"
    blocker.write_text("a file where the spool root should be")
    spool = spool_at(blocker / "me")
    spool.open()  # does not raise
    assert not spool.writable
    run = Running(spool)
    run.tasks.append(asyncio.create_task(spool.run_writer()))
    with pytest.raises(SpoolError):
        await spool.append(record(1))
    blocker.unlink()  # the volume works again
    deadline = time.monotonic() + 5
    while not writable(spool):
        assert time.monotonic() < deadline, "the spool did not recover"
        spool.check(connected=False)
        await asyncio.sleep(0.01)
    await spool.append(record(2))
    assert spool.pending == 1
    assert sorted(p.name for p in (blocker / "me").glob("*.wal"))
    await run.stop()


async def test_no_segment_is_written_before_the_lock_is_held(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(spool_module, "DISK_RETRY_SECONDS", 0.0)
    spool = spool_at(tmp_path / "me")
    spool.locked = False
    spool.open()
    run = Running(spool)
    run.tasks.append(asyncio.create_task(spool.run_writer()))
    with pytest.raises(SpoolError):
        await spool.append(record(1))
    spool.check(connected=False)
    assert not spool.writable  # the disk works, the lock is not held: still refusing
    assert not list((tmp_path / "me").glob("*.wal"))
    spool.locked = True
    spool.check(connected=False)
    await spool.append(record(2))
    assert spool.pending == 1
    await run.stop()
