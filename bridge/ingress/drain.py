"""The spool's drain: publish spooled records to Kafka in order, and free what is drained.

Owns the reading half of a spool directory (:class:`Drain`, which :class:`~bridge.ingress.spool.
Spool` is made of, for its own spool and for one being adopted): records are read a chunk at a
time after the segment's drained mark, published, and the mark moves once Kafka acknowledged
them; drained sealed segments are deleted (mark first). A record Kafka refuses for good is set
aside (:mod:`bridge.ingress.setaside`) after :data:`REJECT_LIMIT` tries instead of blocking the
records behind; a frame over the spool's frame limit (written by an older version) is set aside
at once, and frames damaged after start-up are counted, so ``pending`` stays true.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time

import structlog

from bridge.contract.records import Record
from bridge.core.backoff import Backoff
from bridge.core.errors import PublishError, RecordRejected
from bridge.ingress import segments
from bridge.ingress.frames import MAX_PAYLOAD, decode, scan
from bridge.ingress.segments import DiskFault, Segment, write_mark
from bridge.ingress.setaside import set_aside
from bridge.kafka.publisher import Publisher, SessionPublisher
from bridge.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)

#: A fully drained active segment at least this large is sealed so that its space is freed.
ROLL_DRAINED_BYTES = 1024 * 1024
#: Times Kafka may refuse a spooled record for good before it is set aside.
REJECT_LIMIT = 3
#: Why a frame over the limit found on disk (written by an older version) is set aside.
OVERSIZED = f"larger than the spool's frame limit ({MAX_PAYLOAD} bytes), not sent"


class Drain:
    """The drain half of :class:`~bridge.ingress.spool.Spool` (which sets these attributes)."""

    _segments: list[Segment]
    _metrics: Metrics
    pending: int
    _oldest: float | None
    _progress_at: float
    _refused: dict[tuple[int, int], str]
    _rejections: dict[tuple[int, int], int]
    _mark_failing: bool
    _io: asyncio.Lock
    _fd: int | None
    _changed: asyncio.Event
    _appended: asyncio.Event

    @property
    def _disk_ok(self) -> bool:
        raise NotImplementedError

    def _roll(self) -> None:
        raise NotImplementedError

    def _disk_fault(self, fault: DiskFault) -> None:
        raise NotImplementedError

    def _gauges(self) -> None:
        raise NotImplementedError

    @staticmethod
    def _read_batch(
        segment: Segment, limit: int
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

    def _skipped(self, segment: Segment) -> None:
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

    def _save_mark(self, segment: Segment) -> None:
        try:
            write_mark(segment.mark, segment.drained)
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
                    except DiskFault as fault:
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
