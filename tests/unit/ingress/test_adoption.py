"""Spool ownership and adoption under one root (issue 21): a spool whose owner is gone is
drained in order and removed; a live owner's is never touched; the old layout is adopted; bad
entries under the root are counted once and never deleted. The lock is a real flock (a lock
held through another descriptor is a live owner, as another process's would be)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from bridge.core.config import SpoolSettings
from bridge.ingress import adoption
from bridge.ingress.adoption import Adopter, claim, lock, owner_alive, unlock
from bridge.telemetry.metrics import Metrics
from tests.fakes import InMemoryPublisher
from tests.unit.ingress.test_spool import Running, record, spool_at


async def _spool(directory: Path, ids: range) -> None:
    """A spool left by a process that is gone: records in it, its lock file free."""
    directory.mkdir(parents=True, exist_ok=True)
    unlock(lock(directory, create=True))
    spool = spool_at(directory)
    spool.open()
    run = Running(spool)
    run.tasks.append(asyncio.create_task(spool.run_writer()))
    for i in ids:
        await spool.append(record(i))
    await run.stop()


def _adopter(root: Path, own: str = "me") -> Adopter:
    settings = SpoolSettings(dir=str(root), max_bytes=64 * 1024 * 1024, segment_bytes=64 * 1024)
    return Adopter(settings, root, root / own, Metrics(), interval=5.0)


def _metric(adopter: Adopter, name: str, **labels: str) -> float:
    return adopter._metrics.registry.get_sample_value(name, labels) or 0.0


def _ids(publisher: InMemoryPublisher) -> list[int]:
    return [int(r.event_id.split("/")[1]) for r in publisher.records]


async def test_an_orphan_is_drained_in_order_and_removed(tmp_path: Path) -> None:
    await _spool(tmp_path / "gone", range(1500))  # several segments
    adopter = _adopter(tmp_path)
    assert adopter.candidates() == [(tmp_path / "gone", False)]
    publisher = InMemoryPublisher()
    assert await adopter.adopt(tmp_path / "gone", publisher)
    assert _ids(publisher) == list(range(1500))
    assert not (tmp_path / "gone").exists()
    assert _metric(adopter, "spotler_bridge_spool_adopted_total") == 1
    assert _metric(adopter, "spotler_bridge_spool_adopted_records_total") == 1500


async def test_a_live_owners_spool_is_not_touched(tmp_path: Path) -> None:
    await _spool(tmp_path / "alive", range(10))
    held = lock(tmp_path / "alive", create=False)  # its owner lives
    try:
        before = sorted(p.name for p in (tmp_path / "alive").iterdir())
        publisher = InMemoryPublisher()
        assert not await _adopter(tmp_path).adopt(tmp_path / "alive", publisher)
        assert publisher.records == []
        assert sorted(p.name for p in (tmp_path / "alive").iterdir()) == before
        assert owner_alive(tmp_path / "alive") is True
    finally:
        unlock(held)
    assert owner_alive(tmp_path / "alive") is False


async def test_the_old_layout_in_the_root_is_adopted(tmp_path: Path) -> None:
    """Segments directly in the root (a spool from before issue 21): drained, then deleted;
    the root and the instance directories in it stay."""
    await _spool(tmp_path, range(20))
    (tmp_path / "other").mkdir()
    adopter = _adopter(tmp_path)
    found = adopter.candidates()
    assert found[0] == (tmp_path, True)
    publisher = InMemoryPublisher()
    assert await adopter.adopt(tmp_path, publisher, legacy=True)
    assert _ids(publisher) == list(range(20))
    assert not list(tmp_path.glob("*.wal"))
    assert (tmp_path / "other").is_dir()


async def test_bad_entries_are_counted_once_and_never_deleted(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not ours")
    (tmp_path / "has space").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a-file")
    adopter = _adopter(tmp_path)
    for _ in range(3):
        assert adopter.candidates() == []
    for reason in ("not_a_directory", "foreign", "symlink"):
        assert _metric(adopter, "spotler_bridge_spool_set_aside_total", reason=reason) == 1
    assert (tmp_path / "a-file").read_text() == "not ours"
    assert (tmp_path / "has space").is_dir()
    assert (tmp_path / "link").is_symlink()


async def test_a_directory_without_a_lock_file_is_left_alone(tmp_path: Path) -> None:
    """An owner between mkdir and creating its lock file."""
    (tmp_path / "starting").mkdir()
    assert not await _adopter(tmp_path).adopt(tmp_path / "starting", InMemoryPublisher())
    assert (tmp_path / "starting").is_dir()


async def test_foreign_files_in_an_orphan_stay_with_their_directory(tmp_path: Path) -> None:
    await _spool(tmp_path / "gone", range(5))
    (tmp_path / "gone" / "notes.txt").write_text("someone's")
    adopter = _adopter(tmp_path)
    publisher = InMemoryPublisher()
    assert await adopter.adopt(tmp_path / "gone", publisher)
    assert _ids(publisher) == list(range(5))
    assert (tmp_path / "gone" / "notes.txt").read_text() == "someone's"
    assert not list((tmp_path / "gone").glob("*.wal"))
    reason = "foreign_files_inside"
    assert _metric(adopter, "spotler_bridge_spool_set_aside_total", reason=reason) == 1


async def test_an_owner_back_under_its_name_waits_for_the_adopter(tmp_path: Path) -> None:
    (tmp_path / "pod-0").mkdir()
    held = lock(tmp_path / "pod-0", create=True)  # an adopter drains it
    task = asyncio.create_task(claim(tmp_path, "pod-0", retry=0.02))
    done, _ = await asyncio.wait({task}, timeout=0.2)  # many tries meanwhile, none taken
    assert not done
    unlock(held)
    own, fd = await asyncio.wait_for(task, 5)
    assert own == tmp_path / "pod-0"
    assert owner_alive(own) is True
    unlock(fd)


def test_an_unlinked_lock_is_no_lock(tmp_path: Path) -> None:
    """A lock file removed by the adopter that held it does not make a second owner."""
    (tmp_path / "d").mkdir()
    fd = os.open(tmp_path / "d" / adoption.LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    os.unlink(tmp_path / "d" / adoption.LOCK)
    os.close(fd)
    assert owner_alive(tmp_path / "d") is None


async def test_the_first_look_comes_when_kafka_is_reached_not_an_interval_later(
    tmp_path: Path,
) -> None:
    await _spool(tmp_path / "gone", range(3))
    settings = SpoolSettings(dir=str(tmp_path), max_bytes=64 * 1024 * 1024, segment_bytes=65536)
    adopter = Adopter(settings, tmp_path, tmp_path / "me", Metrics(), interval=600.0)
    publisher = InMemoryPublisher()
    publisher.connected = False
    task = asyncio.create_task(adopter.run(publisher))
    done, _ = await asyncio.wait({task}, timeout=0.3)
    assert not done
    assert (tmp_path / "gone").is_dir()  # nothing is adopted before Kafka is reached
    publisher.connected = True
    async with asyncio.timeout(10):
        while (tmp_path / "gone").exists():  # noqa: ASYNC110 - a plain condition, bounded
            await asyncio.sleep(0.02)
    assert _ids(publisher) == [0, 1, 2]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_an_owner_taking_its_name_back_during_removal_is_left_alone(
    tmp_path: Path, monkeypatch
) -> None:
    """The owner comes back between the adopter's unlink of the lock and its rmdir: the
    directory stays (its new owner's), and nothing is counted as foreign."""
    await _spool(tmp_path / "pod-0", range(3))
    held: list[int] = []
    real_rmdir = Path.rmdir

    def owner_returns(path: Path) -> None:
        held.append(lock(path, create=True))
        real_rmdir(path)

    monkeypatch.setattr(Path, "rmdir", owner_returns)
    adopter = _adopter(tmp_path)
    assert await adopter.adopt(tmp_path / "pod-0", InMemoryPublisher())
    assert (tmp_path / "pod-0").is_dir()
    assert owner_alive(tmp_path / "pod-0") is True
    reason = "foreign_files_inside"
    assert _metric(adopter, "spotler_bridge_spool_set_aside_total", reason=reason) == 0
    unlock(held[0])
