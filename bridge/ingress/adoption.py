"""Spool ownership and adoption: who drains which spool directory under ``BRIDGE_SPOOL_DIR``.

Owns the root that ingress processes which may adopt each other's spools share (issue 21).
Each process spools into ``<root>/<BRIDGE_INSTANCE>`` and holds an exclusive ``flock`` on its
``.lock`` file for as long as it lives; the kernel releases it when the process dies, however it
dies (no lease to tune). Every ``BRIDGE_SPOOL_ADOPT_INTERVAL`` seconds (and at start) the
:class:`Adopter` looks for sibling directories whose lock it can take (their owner is gone),
and drains each to Kafka with the spool's own drain (same order, same at-least-once), then
removes what the bridge wrote there and the directory. Segments laid out the old way, directly
in the root, are adopted the same way under ``<root>/.lock``.

An adopter that dies mid-adoption releases the lock with its life: the marks it wrote say how
far it got, the next adopter sends the rest (and at most the last chunk again, with its ids).
An adoption that makes no progress for one interval is given back, so an owner restarting under
the same name gets its directory.

Anything else under the root (foreign files or directories, symlinks, a file where a directory
should be, a directory it may not read) is logged once, counted and skipped: the bridge deletes
only files it wrote, in directories it holds the lock of.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import re
import time
from dataclasses import replace
from pathlib import Path

import structlog

from bridge.core.config import SpoolSettings
from bridge.ingress import segments
from bridge.ingress.spool import Spool
from bridge.kafka.publisher import SessionPublisher
from bridge.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)

LOCK = ".lock"
#: An instance name, as a directory name under the root (never hidden, never a path).
INSTANCE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
#: Files the bridge writes in a spool directory besides segments and marks.
_OWN_FILES = (segments.LAST, LOCK, ".probe")


class Busy(Exception):
    """The directory's lock is held by a live process."""


def lock(directory: Path, *, create: bool) -> int:
    """Take the exclusive lock of ``directory`` (its ``.lock`` file); the descriptor that holds
    it. Busy when a live process holds it; OSError when it cannot be taken (no lock file without
    ``create``, permissions). A lock file unlinked while we waited is not a lock: Busy."""
    path = directory / LOCK
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    fd = os.open(path, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Busy(str(directory)) from None
    except OSError:
        os.close(fd)
        raise
    try:
        same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        same = False
    if not same:  # removed by the adopter that held it: the directory is not there any more
        os.close(fd)
        raise Busy(str(directory))
    return fd


def unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)  # closing the descriptor releases the flock


def owner_alive(directory: Path) -> bool | None:
    """True when a live process holds ``directory``'s lock, False when none does, None when
    there is no lock to test."""
    try:
        fd = lock(directory, create=False)
    except Busy:
        return True
    except OSError:
        return None
    unlock(fd)
    return False


async def claim(
    root: Path, instance: str, *, retry: float = 1.0, attempts: int | None = None
) -> tuple[Path, int]:
    """Create and lock this process's own directory under ``root``; wait while an adopter still
    drains a directory of the same name (a pod back under its old name). A volume that refuses
    (read-only, full, a file in the directory's place) is logged once and tried again; after
    ``attempts`` tries the last OSError is raised."""
    own = root / instance
    reported: str | None = None
    tries = 0
    while True:
        tries += 1
        try:
            await asyncio.to_thread(own.mkdir, parents=True, exist_ok=True)
            return own, await asyncio.to_thread(lock, own, create=True)
        except Busy:
            if reported != "busy":
                log.warning("spool.waiting_for_adopter", dir=str(own))
                reported = "busy"
        except FileNotFoundError:  # removed by its adopter between mkdir and open: again
            pass
        except OSError as exc:
            if reported != "unusable":
                log.error("spool.dir_unusable", dir=str(own), error=str(exc))
                reported = "unusable"
            if attempts is not None and tries >= attempts:
                raise
        await asyncio.sleep(retry)


class Adopter:
    """Adopts the spools under ``root`` that no live process owns, one at a time."""

    def __init__(
        self,
        settings: SpoolSettings,
        root: Path,
        own: Path,
        metrics: Metrics,
        *,
        interval: float,
    ) -> None:
        self._settings = settings
        self._root = root
        self._own = own
        self._metrics = metrics
        self._interval = interval
        self._reported: set[tuple[str, str]] = set()
        self._found_at: dict[str, float] = {}  # ownerless spools seen and not yet drained

    async def run(self, publisher: SessionPublisher) -> None:
        """Look for orphans at start and every interval, for as long as the process lives."""
        while True:
            if not publisher.connected:  # the first look comes as soon as Kafka is reached
                await asyncio.sleep(min(self._interval, 0.5))
                continue
            try:
                for directory, legacy in await asyncio.to_thread(self.candidates):
                    await self.adopt(directory, publisher, legacy=legacy)
            except Exception as exc:  # a bad entry must not end adoption
                log.error("spool.adoption_failed", error=repr(exc))
            self._age_gauge()
            await asyncio.sleep(self._interval)

    def _age_gauge(self) -> None:
        now = time.monotonic()
        oldest = min(self._found_at.values(), default=now)
        self._metrics.spool_orphan_age.set(now - oldest)

    def _skip(self, path: Path, reason: str, exc: OSError | None = None) -> None:
        """Log once and count an entry under the root that is not a spool to adopt."""
        if (path.name, reason) in self._reported:
            return
        self._reported.add((path.name, reason))
        self._metrics.child(self._metrics.spool_set_aside, reason).inc()
        log.error("spool.root_entry_skipped", entry=path.name, reason=reason,
                  error=None if exc is None else str(exc))  # fmt: skip

    def candidates(self) -> list[tuple[Path, bool]]:
        """Sibling spool directories (and the root itself when segments lie in it the old
        way), in name order. Runs in a worker thread."""
        found: list[tuple[Path, bool]] = []
        legacy = False
        try:
            entries = sorted(self._root.iterdir())
        except OSError as exc:
            self._skip(self._root, "unreadable", exc)
            return found
        for path in entries:
            if path == self._own or path.name.startswith("."):
                continue
            if segments.number(path) is not None or path.name == segments.LAST:
                legacy = legacy or path.suffix == segments.SUFFIX
                continue
            if path.is_symlink():
                self._skip(path, "symlink")
            elif not path.is_dir():
                self._skip(path, "not_a_directory")
            elif not INSTANCE.fullmatch(path.name):
                self._skip(path, "foreign")
            else:
                found.append((path, False))
        if legacy:
            found.insert(0, (self._root, True))
        return found

    async def adopt(
        self, directory: Path, publisher: SessionPublisher, *, legacy: bool = False
    ) -> bool:
        """Drain ``directory`` if no live process owns it, then remove it; True when done."""
        lock_dir = directory if not legacy else self._root
        try:
            fd = await asyncio.to_thread(lock, lock_dir, create=legacy)
        except Busy:
            self._found_at.pop(str(directory), None)
            return False
        except FileNotFoundError:
            return False  # no lock file: being created by its owner, or being removed
        except OSError as exc:
            self._skip(directory, "unlockable", exc)
            return False
        try:
            return await self._drain(directory, fd, publisher, legacy)
        finally:
            unlock(fd)

    async def _drain(
        self, directory: Path, fd: int, publisher: SessionPublisher, legacy: bool
    ) -> bool:
        self._found_at.setdefault(str(directory), time.monotonic())
        spool = Spool(replace(self._settings, dir=str(directory)), self._metrics, gauges=False)
        await asyncio.to_thread(spool.open, write=False)
        if not spool.recovered:  # logged by the spool; counted here once
            self._skip(directory, "unreadable")
            return False
        records = spool.pending
        log.warning("spool.adopting", dir=directory.name, records=records, old_layout=legacy)
        drain = asyncio.create_task(spool.run_drain(publisher), name=f"adopt-{directory.name}")
        try:
            while not spool.empty:
                before = spool.pending
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval):
                        await spool.wait_until(lambda: spool.empty)
                if 0 < before <= spool.pending:  # no progress in an interval: give it back
                    log.warning("spool.adoption_paused", dir=directory.name, left=spool.pending)
                    return False
        finally:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
            spool.close()
        self._metrics.spool_adopted.inc()
        self._metrics.spool_adopted_records.inc(records)
        self._found_at.pop(str(directory), None)
        await asyncio.to_thread(self._remove, directory, legacy)
        log.warning("spool.adopted", dir=directory.name, records=records)
        return True

    def _remove(self, directory: Path, legacy: bool) -> None:
        """Delete what the bridge wrote in a drained directory, then the directory (the lock
        is still held). Foreign files stay, and so does the directory then."""
        found = segments.recover(directory, delete_drained=False)
        for segment in found.segments:
            segments.delete(segment)
        for name in _OWN_FILES:
            if legacy and name == LOCK:
                continue
            with contextlib.suppress(OSError):
                (directory / name).unlink(missing_ok=True)
        if legacy:
            return
        try:
            directory.rmdir()
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and owner_alive(directory):
                log.info("spool.owner_returned", dir=directory.name)  # it took its name back
            elif exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                self._skip(directory, "foreign_files_inside")
            else:
                log.error("spool.remove_failed", dir=directory.name, error=str(exc))
