"""Drained marks and segment numbers (issue 26.1): a mark left behind by a failed unlink, a
SIGKILL between two unlinks or a power loss must never be applied to another segment.

Reproduced with the project's own classes: a restart that keeps nothing used to start numbering
at 1 again, so a leftover ``...0001.drained`` marked the next segment's records as sent, and
they were never published.
"""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

from bridge.ingress.spool import Spool, encode
from tests.fakes import InMemoryPublisher
from tests.unit.ingress.test_spool import Running, record, spool_at


async def _fill(spool: Spool, ids: range) -> None:
    """Open, append ``ids`` (fsync'd: answered 200), close, with Kafka away."""
    spool.open()
    run = Running(spool)
    run.tasks.append(asyncio.create_task(spool.run_writer()))
    for i in ids:
        await spool.append(record(i))
    await run.stop()


async def _drain(spool: Spool, expect: int | None = None) -> list[str]:
    """Open, drain to Kafka until empty, close; the event ids published."""
    spool.open()
    run = Running(spool)
    run.tasks.append(asyncio.create_task(spool.run_writer()))
    publisher = InMemoryPublisher()
    run.drain_to(publisher)
    await asyncio.wait_for(spool.wait_until(lambda: spool.empty), 10)
    await run.stop()
    return [r.event_id for r in publisher.records]


def _ids(ids: range) -> list[str]:
    return [f"message/{i}" for i in ids]


async def test_mark_left_by_a_failed_unlink_is_not_applied_to_the_next_segment(
    tmp_path: Path, monkeypatch
) -> None:
    """The review's reproduction: EIO on the mark's unlink when a drained segment is deleted,
    10 records answered 200 in the next segment, restart: all 10 reach Kafka."""
    await _fill(spool_at(tmp_path), range(10))
    real_unlink = Path.unlink

    def failing(path: Path, missing_ok: bool = False) -> None:
        if path.suffix == ".drained":
            raise OSError(errno.EIO, "Input/output error")
        real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", failing)
    assert await _drain(spool_at(tmp_path)) == _ids(range(10))  # deletes the drained segment
    monkeypatch.setattr(Path, "unlink", real_unlink)
    await _fill(spool_at(tmp_path), range(100, 110))
    assert await _drain(spool_at(tmp_path)) == _ids(range(100, 110))


async def test_orphan_mark_is_removed_at_open(tmp_path: Path) -> None:
    """A mark whose segment is gone (SIGKILL or power loss between the two unlinks)."""
    orphan = tmp_path / f"{1:020d}.drained"
    orphan.write_text("999999")
    await _fill(spool_at(tmp_path), range(10))
    assert not orphan.exists()
    assert await _drain(spool_at(tmp_path)) == _ids(range(10))


async def test_segment_numbers_are_never_reused(tmp_path: Path) -> None:
    """A restart that keeps nothing still starts a segment numbered past every earlier one."""
    await _fill(spool_at(tmp_path), range(3))
    first = max(int(p.stem) for p in tmp_path.glob("*.wal"))
    await _drain(spool_at(tmp_path))
    for _ in range(3):
        spool = spool_at(tmp_path)
        spool.open()  # keeps nothing: every segment is drained
        spool.close()
    numbers = [int(p.stem) for p in tmp_path.glob("*.wal")]
    assert numbers
    assert min(numbers) > first + 3


async def test_mark_past_the_end_is_rejected(tmp_path: Path) -> None:
    """A mark beyond the segment's last frame was not written for this segment: its records
    are sent again (at least once), never taken as sent."""
    segment = tmp_path / f"{7:020d}.wal"
    segment.write_bytes(b"".join(encode(record(i), 1.0) for i in range(3)))
    (tmp_path / f"{7:020d}.drained").write_text(str(segment.stat().st_size + 500))
    assert await _drain(spool_at(tmp_path)) == _ids(range(3))


async def test_mark_between_frames_is_rejected(tmp_path: Path) -> None:
    """A mark that does not fall on a frame boundary is not this segment's."""
    frames = [encode(record(i), 1.0) for i in range(3)]
    segment = tmp_path / f"{7:020d}.wal"
    segment.write_bytes(b"".join(frames))
    (tmp_path / f"{7:020d}.drained").write_text(str(len(frames[0]) + 5))
    assert await _drain(spool_at(tmp_path)) == _ids(range(3))


async def test_mark_on_a_frame_boundary_is_kept(tmp_path: Path) -> None:
    frames = [encode(record(i), 1.0) for i in range(3)]
    segment = tmp_path / f"{7:020d}.wal"
    segment.write_bytes(b"".join(frames))
    (tmp_path / f"{7:020d}.drained").write_text(str(len(frames[0])))
    assert await _drain(spool_at(tmp_path)) == _ids(range(1, 3))


async def test_mark_is_deleted_before_its_segment(tmp_path: Path, monkeypatch) -> None:
    """EIO on the segment's unlink leaves the segment and no mark (its records are sent again,
    with their ids), never a mark without its segment."""
    await _fill(spool_at(tmp_path), range(5))
    real_unlink = Path.unlink

    def failing(path: Path, missing_ok: bool = False) -> None:
        if path.suffix == ".wal":
            raise OSError(errno.EIO, "Input/output error")
        real_unlink(path, missing_ok=missing_ok)

    await _drain(spool_at(tmp_path))
    monkeypatch.setattr(Path, "unlink", failing)
    spool = spool_at(tmp_path)
    spool.open()  # deletes the drained segment: the mark goes first
    spool.close()
    monkeypatch.setattr(Path, "unlink", real_unlink)
    marks = {p.stem for p in tmp_path.glob("*.drained")}
    segments = {p.stem for p in tmp_path.glob("*.wal")}
    assert marks <= segments
