"""The spool: a local write-ahead log that keeps ingress answering 200 while Kafka is away.

Owns writing to and draining one spool directory (its files, numbers and marks are
:mod:`bridge.ingress.segments`'s, the frame format :mod:`bridge.ingress.frames`'s). Records are
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
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from bridge.contract.records import Record
from bridge.core.backoff import Backoff
from bridge.core.config import SpoolSettings
from bridge.core.errors import PublishError, RecordRejected, SpoolError
from bridge.ingress import segments
from bridge.ingress.frames import HEADER, MAGIC, MAX_PAYLOAD, decode, encode, scan
from bridge.ingress.segments import DiskFault as _DiskFault
from bridge.ingress.segments import Segment as _Segment
from bridge.ingress.segments import write_all as _write_all
from bridge.ingress.segments import write_file as _write_file
from bridge.ingress.segments import write_mark as _write_mark
from bridge.ingress.setaside import set_aside
from bridge.kafka.producer import Publisher, SessionPublisher
from bridge.telemetry.metrics import Metrics

__all__ = ["MAGIC", "FrameTooLarge", "Spool", "decode", "encode", "scan"]

log = structlog.get_logger(__name__)

#: A fully drained active segment at least this large is sealed so that its space is freed.
ROLL_DRAINED_BYTES = 1024 * 1024
#: Times Kafka may refuse a spooled record for good before it is set aside.
REJECT_LIMIT = 3
#: While the disk fails, appends fail at once and the disk is tried again this often.
DISK_RETRY_SECONDS = 1.0


class FrameTooLarge(SpoolError):
    """A record over the spool's frame limit: never written, so never acknowledged."""


#: Why a frame over the limit found on disk (written by an older version) is set aside.
OVERSIZED = f"larger than the spool's frame limit ({MAX_PAYLOAD} bytes), not sent"


class Spool:
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
        segment is tried again on the next write.
        """
        self._dir.mkdir(parents=True, exist_ok=True)
        found = segments.recover(self._dir)
        if found.corruptions:
            self._metrics.spool_corruptions.inc(found.corruptions)
        for fault in found.faults:  # a file that could not be deleted is kept: only counted
            if fault.op == "delete":
                self._metrics.child(self._metrics.spool_disk_errors, "delete").inc()
            else:
                self._disk_fault(fault)
        self._segments, self.pending, self._oldest = found.segments, found.pending, found.oldest
        self._last = found.last
        self._closed = not write
        self._progress_at = time.monotonic()
        try:
            if write:
                self._roll()
        except _DiskFault as exc:
            self._disk_fault(exc)
        self._gauges()
        if self.pending:
            log.warning("spool.recovered", records=self.pending, segments=len(self._segments))

    def _roll(self) -> None:
        """Seal the current segment and start the next; _DiskFault if the new one fails."""
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

    # -- draining --------------------------------------------------------------------------

    @staticmethod
    def _read_batch(
        segment: _Segment, limit: int
    ) -> tuple[list[tuple[int, Record, float, bool]], int, int]:
        """Up to ``limit`` records after the drained mark, reading only as much of the file as
        they need (1 MiB, doubled while no whole frame fits). Runs in a worker thread.

        Returns the records (end offset, record, spooled at, over the frame limit), how many
        frames could not be decoded, and the offset the drained mark may move to once the
        records are in Kafka.
        """
        remaining = segment.size - segment.drained
        size = min(remaining, 1024 * 1024)
        with segment.path.open("rb") as f:
            while True:
                f.seek(segment.drained)
                data = f.read(size)
                frames, _, _ = scan(data)
                if frames or size >= remaining:
                    break
                size = min(remaining, size * 2)
        if not frames:  # nothing valid left in this segment
            return [], 0, segment.size
        records: list[tuple[int, Record, float, bool]] = []
        bad = 0
        for end, payload in frames[:limit]:
            try:
                record, spooled_at = decode(payload)
            except (ValueError, struct.error, UnicodeDecodeError):
                bad += 1  # passed its checksum yet does not decode: a bug, not a disk fault
                continue
            oversized = len(payload) > MAX_PAYLOAD
            records.append((segment.drained + end, record, spooled_at, oversized))
        return records, bad, segment.drained + frames[:limit][-1][0]

    async def run_drain(
        self, publisher: SessionPublisher, *, batch: int = 500, timeout: float | None = None
    ) -> None:
        """Publish spooled records to Kafka in order, for as long as the process lives.

        ``timeout=None`` waits for the producer's own answer (acknowledged, or failed within its
        delivery bound), so a chunk is never resent while the producer still holds it. After a
        failed attempt the drain waits out its backoff, or less: a new producer session (Kafka
        is back, or the failed session was replaced) resends at once with the backoff reset, so
        a backoff grown while Kafka was away never delays the drain after its return."""
        retry = Backoff(0.2, 10.0)
        while True:
            segment = next((s for s in self._segments if s.drained < s.size), None)
            if segment is None or not publisher.connected:
                await self._idle()
                continue
            try:
                chunk, bad, upto = await asyncio.to_thread(self._read_batch, segment, batch)
            except OSError as exc:
                self._metrics.child(self._metrics.spool_disk_errors, "read").inc()
                delay = retry.next()
                log.warning("spool.read_failed", error=str(exc), retry_in=round(delay, 1))
                await asyncio.sleep(delay)
                continue
            if bad:
                self._metrics.spool_corruptions.inc(bad)
                self.pending -= bad
                segment.left -= bad
                log.error("spool.undecodable_frames", segment=segment.path.name, count=bad)
            if chunk:
                self._oldest = chunk[0][2]
            for end, record, _, oversized in chunk:
                if oversized:  # written by a version without the bound: its dead letter only
                    self._refused[(segment.seq, end)] = OVERSIZED
                    log.error("spool.frame_over_limit", segment=segment.path.name,
                              event_id=record.event_id, size=len(record.value))  # fmt: skip
            todo = [(segment.seq, end, record) for end, record, _, _ in chunk]
            while todo:
                seen = publisher.session
                todo = await self._publish(publisher, todo, timeout)
                outcome = "failed" if todo else "ok"
                self._metrics.child(self._metrics.spool_drain_attempts, outcome).inc()
                if todo and await publisher.until_new_session(seen, retry.next()):
                    retry.reset()
            retry.reset()
            segment.drained = upto
            self._save_mark(segment)
            self.pending -= len(chunk)
            segment.left -= len(chunk)
            self._skipped(segment)
            self._progress_at = time.monotonic()
            self._metrics.spool_drained.inc(len(chunk))
            self._oldest = None if not self.pending else self._oldest
            await self._free_space()
            self._changed.set()
            self._gauges()

    def _skipped(self, segment: _Segment) -> None:
        """Records of a segment read to its end that were neither sent nor undecodable: frames
        damaged after start-up, skipped by the read. Counted, and no longer pending."""
        if segment.drained < segment.size or segment.left <= 0:
            return
        self._metrics.spool_corruptions.inc(segment.left)
        log.error("spool.frames_skipped", segment=segment.path.name, count=segment.left)
        self.pending -= segment.left
        segment.left = 0

    async def _publish(
        self, publisher: Publisher, todo: list[tuple[int, int, Record]], timeout: float | None
    ) -> list[tuple[int, int, Record]]:
        """One attempt at ``todo``; returns what must be tried again (acknowledged records and
        records set aside are done)."""
        results = await asyncio.gather(
            *(self._attempt(publisher, item, timeout) for item in todo), return_exceptions=True
        )
        again: list[tuple[int, int, Record]] = []
        first_error: BaseException | None = None
        for item, result in zip(todo, results, strict=True):
            key = item[:2]
            if result is None:
                if self._rejections or self._refused:
                    self._rejections.pop(key, None)
                    self._refused.pop(key, None)
                continue
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, RecordRejected) and key not in self._refused:
                tries = self._rejections[key] = self._rejections.get(key, 0) + 1
                if tries >= REJECT_LIMIT:
                    self._refused[key] = str(result)
                    if await self._set_aside(publisher, item[2], str(result), timeout):
                        del self._rejections[key], self._refused[key]
                        continue
            elif not isinstance(result, PublishError):  # a bug must not end the drain
                log.error("spool.publish_crashed", error=repr(result))
            first_error = first_error or result
            again.append(item)
        if again:
            log.warning("spool.drain_failed", error=str(first_error), records=len(again))
        return again

    async def _attempt(
        self, publisher: Publisher, item: tuple[int, int, Record], timeout: float | None
    ) -> None:
        """Send one spooled record, or, once Kafka refused it for good, only its dead letter."""
        reason = self._refused.get(item[:2])
        if reason is None:
            await publisher.publish(item[2], timeout=timeout)
        elif not await self._set_aside(publisher, item[2], reason, timeout):
            raise PublishError("the dead letter of a refused record is not taken yet")

    async def _set_aside(
        self, publisher: Publisher, record: Record, reason: str, timeout: float | None
    ) -> bool:
        """Publish the dead letter of a refused record; False if Kafka must be asked again."""
        letter = set_aside(record, reason)
        try:
            await publisher.publish(letter, timeout=timeout)
        except RecordRejected as again:
            self._metrics.child(self._metrics.records_set_aside, "dropped").inc()
            log.error("spool.record_dropped", event_id=record.event_id, size=len(record.value),
                      reason=reason, deadletter_error=str(again))  # fmt: skip
            return True
        except PublishError:
            return False
        self._metrics.child(self._metrics.records_set_aside, "deadletter").inc()
        log.warning("spool.record_set_aside", event_id=record.event_id, size=len(record.value),
                    reason=reason, deadletter=letter.event_id)  # fmt: skip
        return True

    def _save_mark(self, segment: _Segment) -> None:
        try:
            _write_mark(segment.mark, segment.drained)
        except OSError as exc:  # a stale mark only sends records again, with their ids
            self._metrics.child(self._metrics.spool_disk_errors, "mark").inc()
            if not self._mark_failing:
                log.error("spool.mark_failed", segment=segment.path.name, error=str(exc))
            self._mark_failing = True
            return
        if self._mark_failing:
            log.warning("spool.mark_written", segment=segment.path.name)
        self._mark_failing = False

    async def _free_space(self) -> None:
        """Delete drained sealed segments; seal the active one when it is drained and large
        (or the disk is failing), so that its space comes back without a restart."""
        active = self._segments[-1] if self._segments and self._fd is not None else None
        if (
            active is not None
            and active.size
            and active.drained >= active.size
            and (active.size >= ROLL_DRAINED_BYTES or not self._disk_ok)
        ):
            async with self._io:  # the writer may have added to it meanwhile: look again
                if (
                    active is self._segments[-1]
                    and self._fd is not None
                    and active.drained >= active.size
                ):
                    try:
                        await asyncio.to_thread(self._roll)
                    except _DiskFault as fault:
                        self._disk_fault(fault)
        self._collect()

    async def _idle(self) -> None:
        self._appended.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                await self._appended.wait()

    def _collect(self) -> None:
        """Delete sealed segments that were drained completely."""
        for segment in [s for s in self._segments if s.sealed and s.drained >= s.size]:
            if not segments.delete(segment):  # kept with its mark; deleted at the next start
                self._metrics.child(self._metrics.spool_disk_errors, "delete").inc()
            self._segments.remove(segment)

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
        if recovered:
            self._accepting()
        self._gauges()

    def _probe(self) -> bool:
        """Whether the disk takes a small write and fsync again (tried once a second)."""
        if time.monotonic() - self._refused_at < DISK_RETRY_SECONDS:
            return False
        path = self._dir / ".probe"
        try:
            _write_file(path, b"\0" * 4096)
            path.unlink()
        except OSError:
            self._refused_at = time.monotonic()
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            return False
        return True
