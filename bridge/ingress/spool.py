"""The spool: a local write-ahead log that keeps ingress answering 200 while Kafka is away.

Owns writing to one spool directory, its state and gauges (its files, numbers and marks are
:mod:`bridge.ingress.segments`'s, the drain :mod:`bridge.ingress.drain`'s, the frame format
:mod:`bridge.ingress.frames`'s, adoption of other processes' spools
:mod:`bridge.ingress.adoption`'s). Records are
appended to numbered segment files (``00000000000000000001.wal``...). Concurrent
appends share one ``write`` and one ``fsync`` (group commit); :meth:`Spool.append` returns only
after the fsync. A drain task publishes the frames to Kafka in order, remembers how far it got in
a small ``.drained`` file beside each segment, and deletes a segment once every record in it was
acknowledged and it is no longer written to; a fully drained active segment of some size is
sealed and deleted too, so a drained spool gives its disk space back.

Opening after a crash scans every segment. A frame whose magic, length or checksum is wrong is
counted as corruption; the scan looks for the next valid frame after it (so no good record
behind a damaged one is skipped) and cuts the file where nothing valid follows (a torn tail).
Writes always go to a fresh segment after a restart.

Disk faults (ENOSPC, EIO on write, fsync, read or a progress mark) never end a task: a failed
write is cut back off the segment and its appends fail (ingress answers 503), the disk is tried
again at most once a second, a mark that cannot be written only means records sent again with
their ids, and each change of state is logged once. A record Kafka refuses for good is set
aside (:mod:`bridge.ingress.setaside`) after a few tries instead of blocking the records behind.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import os
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from bridge.contract.records import Record
from bridge.core.config import SpoolSettings
from bridge.core.errors import SpoolError
from bridge.ingress import segments
from bridge.ingress.drain import REJECT_LIMIT, ROLL_DRAINED_BYTES, Drain
from bridge.ingress.frames import HEADER, MAGIC, MAX_PAYLOAD, decode, encode, scan
from bridge.ingress.segments import DiskFault as _DiskFault
from bridge.ingress.segments import Segment as _Segment
from bridge.ingress.segments import write_all as _write_all
from bridge.ingress.segments import write_file as _write_file
from bridge.kafka.publisher import Publisher
from bridge.telemetry.metrics import Metrics

__all__ = [
    "MAGIC",
    "REJECT_LIMIT",
    "ROLL_DRAINED_BYTES",
    "FrameTooLarge",
    "Spool",
    "decode",
    "encode",
    "scan",
]

log = structlog.get_logger(__name__)

#: While the disk fails, appends fail at once and the disk is tried again this often.
DISK_RETRY_SECONDS = 1.0


class FrameTooLarge(SpoolError):
    """A record over the spool's frame limit: never written, so never acknowledged."""


class Spool(Drain):
    """The write-ahead log: :meth:`open`, then run :meth:`run_writer`, :meth:`run_drain` and
    :meth:`run_monitor`."""

    def __init__(self, settings: SpoolSettings, metrics: Metrics, *, gauges: bool = True) -> None:
        self._dir = Path(settings.dir)
        self._gauges_on = gauges  # False for a spool being adopted: the gauges are the owner's
        self._max_bytes = settings.max_bytes
        self._segment_bytes = settings.segment_bytes
        self._stall_seconds = settings.stall_seconds
        self._metrics = metrics
        self._segments: list[_Segment] = []
        self._last = 0  # the highest segment number given out
        self.recovered = False  # the directory was read (segments may be created)
        self.locked = True  # this process holds the directory's lock (see adoption.claim)
        self._fd: int | None = None
        self._closed = True
        self._io = asyncio.Lock()  # the active segment's file: writes and rolls
        self._queue: list[tuple[bytes, asyncio.Future[None]]] = []
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._appended = asyncio.Event()
        self._changed = asyncio.Event()  # set after every write batch and drained chunk
        self.pending = 0  # records written and not yet acknowledged by Kafka
        self._oldest: float | None = None
        self._progress_at = time.monotonic()  # last drained chunk, or when records arrived
        self._refusing: str | None = None  # why appends are refused now (disk fault, full)
        self._refused_at = 0.0
        self._mark_failing = False
        self._rejections: dict[tuple[int, int], int] = {}
        # Records Kafka refused REJECT_LIMIT times, with the reason: from then on only their dead
        # letter is sent. (A refusal also ends the producer session, so the dead letter's first
        # try often meets no session; the original must not be sent again meanwhile.)
        self._refused: dict[tuple[int, int], str] = {}
        self.stalled = False

    # -- state -----------------------------------------------------------------------------

    @property
    def directory(self) -> str:
        return str(self._dir)

    @property
    def bytes(self) -> int:
        return sum(s.size for s in self._segments) + self._queued_bytes

    @property
    def queued(self) -> bool:
        """Appends waiting for the next write."""
        return bool(self._queue)

    @property
    def empty(self) -> bool:
        return self.pending == 0 and not self._queue

    @property
    def writable(self) -> bool:
        """Open, below its size bound, and its disk not failing."""
        return not self._closed and self._disk_ok and self.bytes < self._max_bytes

    @property
    def _disk_ok(self) -> bool:
        return self._refusing is None or self._refusing == "full"

    def _gauges(self) -> None:
        if not self._gauges_on:
            return
        self._metrics.spool_records.set(self.pending)
        self._metrics.spool_bytes.set(sum(s.size for s in self._segments))
        age = time.time() - self._oldest if self._oldest is not None and self.pending else 0.0
        self._metrics.spool_oldest_age.set(max(0.0, age))
        self._metrics.spool_unwritable.set(0 if self._refusing is None else 1)
        self._metrics.spool_stalled.set(1 if self.stalled else 0)

    def _refuse(self, reason: str) -> None:
        """Enter (or stay in) the refusing state; logged once per change."""
        self._refused_at = time.monotonic()
        if self._refusing is None or (self._refusing == "full") != (reason == "full"):
            log.error("spool.unwritable", reason=reason, records=self.pending, bytes=self.bytes)
        self._refusing = reason
        self._gauges()

    def _accepting(self) -> None:
        if self._refusing is not None:
            log.warning("spool.writable", was=self._refusing, bytes=self.bytes)
            self._refusing = None
            self._gauges()

    # -- open / recovery -------------------------------------------------------------------

    def open(self, *, write: bool = True) -> None:
        """Recover what a previous process left and start a fresh segment for writing (unless
        ``write`` is False: a spool being adopted is only drained).

        A disk that refuses the new segment does not stop start-up: appends fail (503) and the
        segment is tried again on the next write. Neither does a directory that cannot be
        created or read (a read-only or full volume, a file in its place): appends fail until
        the disk probe succeeds and the directory is recovered then.
        """
        self._closed = not write
        self._progress_at = time.monotonic()
        self._recover()
        try:
            if write:
                self._roll()
        except _DiskFault as exc:
            self._disk_fault(exc)
        self._gauges()
        if self.pending:
            log.warning("spool.recovered", records=self.pending, segments=len(self._segments))

    def _recover(self) -> None:
        """Read what the directory holds; until this succeeds no segment is created (a number
        could be reused otherwise)."""
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            found = segments.recover(self._dir)
        except OSError as exc:
            self._disk_fault(_DiskFault("segment", exc))
            return
        self.recovered = True
        if found.corruptions:
            self._metrics.spool_corruptions.inc(found.corruptions)
        for fault in found.faults:  # a file that could not be deleted is kept: only counted
            if fault.op == "delete":
                self._metrics.child(self._metrics.spool_disk_errors, "delete").inc()
            else:
                self._disk_fault(fault)
        self._segments, self.pending, self._oldest = found.segments, found.pending, found.oldest
        self._last = found.last

    def _roll(self) -> None:
        """Seal the current segment and start the next; _DiskFault if the new one fails."""
        if not (self.recovered and self.locked):
            why = "not recovered yet" if not self.recovered else "not locked yet"
            raise _DiskFault("segment", OSError(errno.ENOLCK, f"spool directory {why}"))
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self._segments[-1].sealed = True
            with contextlib.suppress(OSError):
                os.close(fd)
        seq = max(self._last, self._segments[-1].seq if self._segments else 0) + 1
        fd, path = segments.create(self._dir, seq)
        self._last = seq
        self._segments.append(_Segment(seq, path, 0, 0, False))
        self._fd = fd

    def close(self) -> None:
        self._closed = True
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    # -- writing ---------------------------------------------------------------------------

    async def append(self, record: Record) -> None:
        """Write ``record`` durably (fsync'd); raise SpoolError if the spool cannot take it."""
        if self._closed:
            raise SpoolError("spool is closed")
        if not self._disk_ok and time.monotonic() - self._refused_at < DISK_RETRY_SECONDS:
            raise SpoolError(f"spool disk failing ({self._refusing})")
        frame = encode(record, time.time())
        if len(frame) - HEADER > MAX_PAYLOAD:  # the reader would not take it back
            raise FrameTooLarge(f"record of {len(frame)} bytes is over the spool frame limit")
        if self.bytes + len(frame) > self._max_bytes:
            self._refuse("full")
            raise SpoolError(f"spool full ({self._max_bytes} bytes)")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((frame, future))
        self._queued_bytes += len(frame)
        self._wake.set()
        await asyncio.shield(future)  # a cancelled request must not lose its place in the log

    async def run_writer(self) -> None:
        """Group commit: everything queued goes out in one write and one fsync."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                data = b"".join(frame for frame, _ in batch)
                async with self._io:
                    fault = await self._write(data, len(batch))
                self._queued_bytes -= len(data)
                if fault is not None:
                    self._disk_fault(fault)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(SpoolError(f"spool write failed: {fault}"))
                    continue
                self._accepting()
                now = time.time()
                if not self.pending:
                    self._oldest = now
                    self._progress_at = time.monotonic()
                self.pending += len(batch)
                self._metrics.spool_spooled.inc(len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
                self._appended.set()
                self._changed.set()
                self._gauges()

    async def _write(self, data: builtins.bytes, count: int) -> _DiskFault | None:
        """Append ``data`` to the active segment (holding ``_io``), or say what failed.

        A failed write or fsync is cut back off the file and the segment is sealed at its last
        durable size (after a failed fsync the page cache cannot be trusted); the next write
        starts a new segment.
        """
        try:
            if self._fd is None:
                await asyncio.to_thread(self._roll)
            segment = self._segments[-1]
            await asyncio.to_thread(_write_all, self._fd, data)
        except _DiskFault as fault:
            if self._fd is not None:
                fd, size = self._fd, self._segments[-1].size
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(os.ftruncate, fd, size)
                self._fd = None
                self._segments[-1].sealed = True
                with contextlib.suppress(OSError):
                    os.close(fd)
                self._collect()
            return fault
        segment.size += len(data)
        segment.left += count
        if segment.size >= self._segment_bytes:
            try:
                await asyncio.to_thread(self._roll)
            except _DiskFault as fault:  # written already; the next write tries again
                self._disk_fault(fault)
        return None

    def _disk_fault(self, fault: _DiskFault) -> None:
        self._metrics.child(self._metrics.spool_disk_errors, fault.op).inc()
        self._refuse(f"disk: {fault}")

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds, checked after each write batch and drained chunk."""
        while not condition():
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self._changed.wait()

    # -- monitoring ------------------------------------------------------------------------

    async def run_monitor(self, publisher: Publisher, *, interval: float = 1.0) -> None:
        """Keep the gauges true between writes and drains: the oldest record's age, a spool
        that does not drain while Kafka is connected (stalled), a disk that works again."""
        while True:
            await asyncio.sleep(interval)
            self.check(publisher.connected)

    def check(self, connected: bool) -> None:
        """One monitoring pass (see :meth:`run_monitor`)."""
        quiet = time.monotonic() - self._progress_at
        stalled = bool(self.pending) and connected and quiet > self._stall_seconds
        if stalled != self.stalled:
            if stalled:
                log.error("spool.stalled", records=self.pending, seconds=round(quiet))
            else:
                log.warning("spool.draining_again", records=self.pending)
            self.stalled = stalled
        if self._refusing == "full":
            recovered = self.empty or self.bytes < self._max_bytes * 0.9
        else:
            recovered = self._refusing is not None and self._probe()
        if recovered and not self.recovered and not self._closed:
            self._recover()
            recovered = self.recovered
        if recovered and not self.locked:  # the lock comes first (bridge.runtime.app)
            recovered = False
        if recovered:
            self._accepting()
        self._gauges()

    def _probe(self) -> bool:
        """Whether the disk takes a small write and fsync again (tried once a second)."""
        if time.monotonic() - self._refused_at < DISK_RETRY_SECONDS:
            return False
        path = self._dir / ".probe"
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            _write_file(path, b"\0" * 4096)
            path.unlink()
        except OSError:
            self._refused_at = time.monotonic()
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            return False
        return True
