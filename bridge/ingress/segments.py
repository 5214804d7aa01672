"""Spool segments: the files of one spool directory, their numbers, marks and recovery.

Owns what lies in one spool directory (:mod:`bridge.ingress.spool` writes to it, the frame
format is :mod:`bridge.ingress.frames`'s): numbered segment files ``00000000000000000001.wal``,
beside each a ``.drained`` mark (how many bytes of it Kafka acknowledged), and ``last-segment``,
the highest number ever given out.

A mark must only ever describe its own segment (issue 26.1), so:

* numbers are never reused: the next one is past every ``.wal``, ``.drained`` and the
  ``last-segment`` record, which is written before a segment is created, so a restart that
  keeps nothing still counts on;
* a segment is deleted mark first, and a segment whose mark could not be deleted is kept;
* at open, a mark without its segment is deleted, and a mark that is not the end of one of the
  segment's frames (past its end, or between frames) is not trusted: the records are sent again
  with their ids (at least once), never taken as sent.
"""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from bridge.ingress.frames import decode, scan

log = structlog.get_logger(__name__)

SUFFIX = ".wal"
MARK = ".drained"
LAST = "last-segment"


class DiskFault(Exception):
    """A disk operation that failed, with the operation's name (a metric label)."""

    def __init__(self, op: str, exc: OSError) -> None:
        self.op = op
        super().__init__(f"{op}: {exc}")


@dataclass
class Segment:
    seq: int
    path: Path
    size: int  # durable bytes (fsync'd)
    drained: int  # bytes already acknowledged by Kafka
    sealed: bool
    left: int = 0  # records written and not yet acknowledged (or found unreadable)

    @property
    def mark(self) -> Path:
        return self.path.with_suffix(MARK)


@dataclass
class Recovered:
    """What :func:`recover` found in a directory."""

    segments: list[Segment] = field(default_factory=list)
    pending: int = 0  # records not yet acknowledged by Kafka
    oldest: float | None = None  # when the oldest of them was spooled
    corruptions: int = 0  # damaged frames and torn tails
    faults: list[DiskFault] = field(default_factory=list)
    last: int = 0  # the highest segment number seen


def number(path: Path) -> int | None:
    """The segment number in a ``.wal`` or ``.drained`` file name, else None."""
    if path.suffix not in (SUFFIX, MARK) or not path.stem.isdigit() or len(path.stem) != 20:
        return None
    return int(path.stem)


def segment_path(directory: Path, seq: int) -> Path:
    return directory / f"{seq:020d}{SUFFIX}"


def recover(directory: Path, *, delete_drained: bool = True) -> Recovered:
    """Scan every segment in ``directory``; cut torn tails, delete orphan marks and (unless
    ``delete_drained`` is False) segments with nothing left to send."""
    found = Recovered(last=read_last(directory))
    wal: dict[int, Path] = {}
    marks: dict[int, Path] = {}
    for path in directory.iterdir():
        seq = number(path)
        if seq is None:
            continue
        found.last = max(found.last, seq)
        (wal if path.suffix == SUFFIX else marks)[seq] = path
    for seq in sorted(set(marks) - set(wal)):
        log.warning("spool.orphan_mark_deleted", mark=marks[seq].name)
        try:
            marks[seq].unlink(missing_ok=True)
        except OSError as exc:  # a number is never reused: the mark can do no harm
            found.faults.append(DiskFault("delete", exc))
    for seq in sorted(wal):
        _recover_segment(found, Segment(seq, wal[seq], 0, 0, True), delete_drained)
    return found


def _recover_segment(found: Recovered, segment: Segment, delete_drained: bool) -> None:
    path = segment.path
    data = path.read_bytes()
    frames, valid, corruptions = scan(data)
    if corruptions:
        found.corruptions += corruptions
        log.error("spool.corruption", segment=path.name, found=corruptions,
                  kept_frames=len(frames), cut_bytes=len(data) - valid)  # fmt: skip
        if valid < len(data):
            try:
                with path.open("r+b") as f:
                    f.truncate(valid)
                    os.fsync(f.fileno())
            except OSError as exc:  # the scan cuts the tail again next time
                found.faults.append(DiskFault("write", exc))
    segment.size = valid
    mark = read_mark(segment.mark)
    if mark and mark not in {end for end, _ in frames}:
        log.warning("spool.mark_rejected", segment=path.name, mark=mark, size=valid)
        mark = 0  # not this segment's: its records are sent again, with their ids
    segment.drained = mark
    left = [payload for end, payload in frames if end > segment.drained]
    if not left:
        segment.drained = segment.size
        if delete_drained and not delete(segment):
            found.faults.append(DiskFault("delete", OSError("segment kept")))
        if not delete_drained:
            found.segments.append(segment)
        return
    if found.oldest is None:
        with contextlib.suppress(ValueError, struct.error, UnicodeDecodeError):
            found.oldest = decode(left[0])[1]
    segment.left = len(left)
    found.segments.append(segment)
    found.pending += len(left)


@dataclass
class Summary:
    """What a spool directory holds, read without changing anything (``bridge spool status``)."""

    records: int = 0  # records not yet acknowledged by Kafka
    bytes: int = 0  # bytes of segment files
    oldest: float | None = None  # when the oldest of those records was spooled
    damaged: int = 0  # damaged frames and torn tails


def inspect(directory: Path) -> Summary:
    """Count what ``directory`` holds, as :func:`recover` would find it, changing nothing."""
    found = Summary()
    for path in sorted(directory.glob("*" + SUFFIX)):
        if number(path) is None:
            continue
        data = path.read_bytes()
        frames, _, damaged = scan(data)
        found.bytes += len(data)
        found.damaged += damaged
        mark = read_mark(path.with_suffix(MARK))
        mark = mark if mark in {end for end, _ in frames} else 0
        left = [payload for end, payload in frames if end > mark]
        found.records += len(left)
        if left and found.oldest is None:
            with contextlib.suppress(ValueError, struct.error, UnicodeDecodeError):
                found.oldest = decode(left[0])[1]
    return found


def delete(segment: Segment) -> bool:
    """Delete ``segment``: its mark first, then the file (kept if the mark stays)."""
    for path in (segment.mark, segment.path):
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.error("spool.delete_failed", file=path.name, error=str(exc))
            return False
    return True


def create(directory: Path, seq: int) -> tuple[int, Path]:
    """Record ``seq`` as given out, create its segment for appending and make both durable;
    the open descriptor and path. Runs in a worker thread."""
    path = segment_path(directory, seq)
    try:
        write_file(directory / LAST, str(seq).encode(), atomic=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as exc:
        raise DiskFault("segment", exc) from exc
    try:
        fsync_dir(directory)
    except OSError as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        raise DiskFault("segment", exc) from exc
    return fd, path


def read_last(directory: Path) -> int:
    return read_mark(directory / LAST)


def write_all(fd: int | None, data: bytes) -> None:
    """Write and fsync (in a worker thread: the event loop never waits on the disk)."""
    if fd is None:
        raise DiskFault("write", OSError("spool is closed"))
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        raise DiskFault("write", exc) from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        raise DiskFault("fsync", exc) from exc


def write_file(path: Path, data: bytes, *, atomic: bool = False) -> None:
    target, path = path, (path.with_name(path.name + ".tmp") if atomic else path)
    try:
        with path.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if atomic:
            path.replace(target)
    except OSError:
        if atomic:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        raise


def read_mark(path: Path) -> int:
    try:
        return max(0, int(path.read_text().strip() or 0))
    except (OSError, ValueError):
        return 0


def write_mark(path: Path, offset: int) -> None:
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(str(offset))
        tmp.replace(path)  # atomic; not fsync'd: a lost mark only means records sent again
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
