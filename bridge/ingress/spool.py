"""The spool: a local write-ahead log that keeps ingress answering 200 while Kafka is away.

Owns the files under ``BRIDGE_SPOOL_DIR``. A record is appended as one frame::

    b"SBW1" | length: u32 | crc32(payload): u32 | payload

into numbered segment files (``00000000000000000001.wal``...). Concurrent appends share one
``write`` and one ``fsync`` (group commit); :meth:`Spool.append` returns only after the fsync.
A drain task publishes the frames to Kafka in order, remembers how far it got in a small
``.drained`` file beside each segment, and deletes a segment once every record in it was
acknowledged and it is no longer written to.

Opening after a crash scans every segment. A frame whose magic, length or checksum is wrong is
counted as corruption; the scan looks for the next valid frame after it (so no good record
behind a damaged one is skipped) and cuts the file where nothing valid follows (a torn tail).
Nothing here ever stops start-up. Writes always go to a fresh segment after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from bridge.contract.records import Record
from bridge.core.backoff import Backoff
from bridge.core.config import SpoolSettings
from bridge.core.errors import PublishError, SpoolError
from bridge.kafka.producer import Publisher
from bridge.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)

MAGIC = b"SBW1"
_FRAME = struct.Struct(">4sII")  # magic, payload length, crc32
_MAX_PAYLOAD = 64 * 1024 * 1024
_SUFFIX = ".wal"


def encode(record: Record, spooled_at: float) -> bytes:
    """One frame holding ``record`` and the time it was spooled."""
    parts = [
        struct.pack(">d", spooled_at),
        _field(record.topic.encode()),
        _field(record.key) if record.key is not None else struct.pack(">i", -1),
        _field(record.event_id.encode()),
        _field(record.label.encode()),
        struct.pack(">H", len(record.headers)),
        *(_field(k.encode()) + _field(v) for k, v in record.headers),
        _field(record.value),
    ]
    payload = b"".join(parts)
    return _FRAME.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode(payload: bytes) -> tuple[Record, float]:
    (spooled_at,) = struct.unpack_from(">d", payload, 0)
    pos = 8
    topic, pos = _read(payload, pos)
    key, pos = _read(payload, pos)
    event_id, pos = _read(payload, pos)
    event, pos = _read(payload, pos)
    (count,) = struct.unpack_from(">H", payload, pos)
    pos += 2
    headers = []
    for _ in range(count):
        name, pos = _read(payload, pos)
        val, pos = _read(payload, pos)
        headers.append(((name or b"").decode(), val or b""))
    value, pos = _read(payload, pos)
    record = Record(
        topic=(topic or b"").decode(),
        key=key,
        value=value or b"",
        event_id=(event_id or b"").decode(),
        label=(event or b"").decode(),
        headers=tuple(headers),
    )
    return record, spooled_at


def _field(data: bytes) -> bytes:
    return struct.pack(">i", len(data)) + data


def _read(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    (size,) = struct.unpack_from(">i", buf, pos)
    pos += 4
    if size < 0:
        return None, pos
    if pos + size > len(buf):
        raise ValueError("field runs past the frame")
    return buf[pos : pos + size], pos + size


def scan(data: bytes) -> tuple[list[tuple[int, bytes]], int, int]:
    """Valid frames as (end offset, payload), the length of the valid prefix, corruptions seen.

    After a bad frame the scan resumes at the next magic that starts a valid frame; the valid
    length is where the last valid frame ends (a torn or damaged tail is not part of it).
    """
    frames: list[tuple[int, bytes]] = []
    pos, good_end, corruptions = 0, 0, 0
    while pos + _FRAME.size <= len(data):
        magic, size, crc = _FRAME.unpack_from(data, pos)
        end = pos + _FRAME.size + size
        if magic == MAGIC and size <= _MAX_PAYLOAD and end <= len(data):
            payload = data[pos + _FRAME.size : end]
            if zlib.crc32(payload) == crc:
                frames.append((end, payload))
                pos = good_end = end
                continue
        corruptions += 1
        nxt = data.find(MAGIC, pos + 1)
        if nxt < 0:
            break
        pos = nxt
    if good_end < len(data) and not corruptions:
        corruptions = 1  # bytes after the last frame that are not a whole frame: a torn write
    return frames, good_end, corruptions


@dataclass
class _Segment:
    seq: int
    path: Path
    size: int  # durable bytes (fsync'd)
    drained: int  # bytes already acknowledged by Kafka
    sealed: bool

    @property
    def mark(self) -> Path:
        return self.path.with_suffix(".drained")


class Spool:
    """The write-ahead log: :meth:`open`, then run :meth:`run_writer` and :meth:`run_drain`."""

    def __init__(self, settings: SpoolSettings, metrics: Metrics) -> None:
        self._dir = Path(settings.dir)
        self._max_bytes = settings.max_bytes
        self._segment_bytes = settings.segment_bytes
        self._metrics = metrics
        self._segments: list[_Segment] = []
        self._fd: int | None = None
        self._queue: list[tuple[bytes, asyncio.Future[None]]] = []
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._appended = asyncio.Event()
        self._changed = asyncio.Event()  # set after every write batch and drained chunk
        self.pending = 0  # records written and not yet acknowledged by Kafka
        self._oldest: float | None = None

    # -- state -----------------------------------------------------------------------------

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
        return self._fd is not None and self.bytes < self._max_bytes

    def _gauges(self) -> None:
        self._metrics.spool_records.set(self.pending)
        self._metrics.spool_bytes.set(sum(s.size for s in self._segments))
        age = time.time() - self._oldest if self._oldest is not None and self.pending else 0.0
        self._metrics.spool_oldest_age.set(max(0.0, age))

    # -- open / recovery -------------------------------------------------------------------

    def open(self) -> None:
        """Recover what a previous process left and start a fresh segment for writing."""
        self._dir.mkdir(parents=True, exist_ok=True)
        for path in sorted(self._dir.glob("*" + _SUFFIX)):
            try:
                seq = int(path.stem)
            except ValueError:
                continue
            self._recover(seq, path)
        self._roll()
        self._gauges()
        if self.pending:
            log.warning("spool.recovered", records=self.pending, segments=len(self._segments) - 1)

    def _recover(self, seq: int, path: Path) -> None:
        data = path.read_bytes()
        frames, valid, corruptions = scan(data)
        if corruptions:
            self._metrics.spool_corruptions.inc(corruptions)
            log.error("spool.corruption", segment=path.name, found=corruptions,
                      kept_frames=len(frames), cut_bytes=len(data) - valid)  # fmt: skip
            if valid < len(data):
                with path.open("r+b") as f:
                    f.truncate(valid)
                    os.fsync(f.fileno())
        drained = min(valid, _read_mark(path.with_suffix(".drained")))
        segment = _Segment(seq, path, valid, drained, True)
        left = [end for end, _ in frames if end > segment.drained]
        if not left:
            self._delete(segment)
            return
        self._segments.append(segment)
        self.pending += len(left)

    def _roll(self) -> None:
        """Seal the current segment and start the next."""
        if self._fd is not None:
            os.close(self._fd)
            self._segments[-1].sealed = True
        seq = self._segments[-1].seq + 1 if self._segments else 1
        path = self._dir / f"{seq:020d}{_SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        _fsync_dir(self._dir)
        self._segments.append(_Segment(seq, path, 0, 0, False))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- writing ---------------------------------------------------------------------------

    async def append(self, record: Record) -> None:
        """Write ``record`` durably (fsync'd); raise SpoolError if the spool cannot take it."""
        if self._fd is None:
            raise SpoolError("spool is closed")
        frame = encode(record, time.time())
        if self.bytes + len(frame) > self._max_bytes:
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
                try:
                    await asyncio.to_thread(_write_all, self._fd, data)
                except OSError as exc:
                    self._queued_bytes -= len(data)
                    log.error("spool.write_failed", error=str(exc))
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(SpoolError(f"spool write failed: {exc}"))
                    continue
                self._queued_bytes -= len(data)
                self._segments[-1].size += len(data)
                if self._segments[-1].size >= self._segment_bytes:
                    self._roll()
                now = time.time()
                if not self.pending:
                    self._oldest = now
                self.pending += len(batch)
                self._metrics.spool_spooled.inc(len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
                self._appended.set()
                self._changed.set()
                self._gauges()

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
    ) -> tuple[list[tuple[int, Record, float]], int, int]:
        """Up to ``limit`` records after the drained mark, reading only as much of the file as
        they need (1 MiB, doubled while no whole frame fits). Runs in a worker thread.

        Returns the records (end offset, record, spooled at), how many frames could not be
        decoded, and the offset the drained mark may move to once the records are in Kafka.
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
        records: list[tuple[int, Record, float]] = []
        bad = 0
        for end, payload in frames[:limit]:
            try:
                record, spooled_at = decode(payload)
            except (ValueError, struct.error, UnicodeDecodeError):
                bad += 1  # passed its checksum yet does not decode: a bug, not a disk fault
                continue
            records.append((segment.drained + end, record, spooled_at))
        return records, bad, segment.drained + frames[:limit][-1][0]

    async def run_drain(
        self, publisher: Publisher, *, batch: int = 500, timeout: float | None = None
    ) -> None:
        """Publish spooled records to Kafka in order, for as long as the process lives.

        ``timeout=None`` waits for the producer's own answer (acknowledged, or failed within its
        delivery bound), so a chunk is never resent while the producer still holds it."""
        retry = Backoff(0.2, 10.0)
        while True:
            segment = next((s for s in self._segments if s.drained < s.size), None)
            if segment is None or not publisher.connected:
                await self._idle()
                continue
            chunk, bad, upto = await asyncio.to_thread(self._read_batch, segment, batch)
            if bad:
                self._metrics.spool_corruptions.inc(bad)
                self.pending -= bad
                log.error("spool.undecodable_frames", segment=segment.path.name, count=bad)
            if chunk:
                self._oldest = chunk[0][2]
                try:
                    await asyncio.gather(
                        *(publisher.publish(r, timeout=timeout) for _, r, _ in chunk)
                    )
                except PublishError as exc:
                    delay = retry.next()
                    log.warning("spool.drain_failed", error=str(exc), retry_in=round(delay, 1))
                    await asyncio.sleep(delay)
                    continue
                retry.reset()
            segment.drained = upto
            _write_mark(segment.mark, segment.drained)
            self.pending -= len(chunk)
            self._metrics.spool_drained.inc(len(chunk))
            self._oldest = None if not self.pending else self._oldest
            self._collect()
            self._changed.set()
            self._gauges()

    async def _idle(self) -> None:
        self._appended.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                await self._appended.wait()
        self._gauges()

    def _collect(self) -> None:
        """Delete sealed segments that were drained completely."""
        for segment in [s for s in self._segments if s.sealed and s.drained >= s.size]:
            self._delete(segment)
            self._segments.remove(segment)

    @staticmethod
    def _delete(segment: _Segment) -> None:
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        with contextlib.suppress(FileNotFoundError):
            segment.mark.unlink()


def _write_all(fd: int | None, data: bytes) -> None:
    """Write and fsync (in a worker thread: the event loop never waits on the disk)."""
    if fd is None:
        raise OSError("spool is closed")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def _read_mark(path: Path) -> int:
    try:
        return max(0, int(path.read_text().strip() or 0))
    except (FileNotFoundError, ValueError):
        return 0


def _write_mark(path: Path, offset: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(offset))
    tmp.replace(path)  # atomic; not fsync'd: a lost mark only means records sent again


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
