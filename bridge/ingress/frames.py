"""Spool framing: how one record is laid out on disk, and how damaged bytes are read back.

Owns the byte format of the spool's segment files (:mod:`bridge.ingress.spool` owns the files).
A record is one frame::

    b"SBW1" | length: u32 | crc32(payload): u32 | payload

The payload holds the time it was spooled and the record's fields. The spool writes no payload
over :data:`MAX_PAYLOAD` (``SPOOL_FRAME_LIMIT``); the scan still reads back any intact frame,
so one written by an older version is never cut away. Pure functions, no I/O.
"""

from __future__ import annotations

import struct
import zlib

from bridge.contract.records import Record
from bridge.core.limits import SPOOL_FRAME_LIMIT

MAGIC = b"SBW1"
_FRAME = struct.Struct(">4sII")  # magic, payload length, crc32
HEADER = _FRAME.size
MAX_PAYLOAD = SPOOL_FRAME_LIMIT


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
    """The record and spooled-at time of one frame's payload; ValueError/struct.error if bad."""
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
        if magic == MAGIC and end <= len(data):
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
