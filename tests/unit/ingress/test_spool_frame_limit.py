"""The spool's frame limit (issue 26.2): a record the spool could not read back is never
acknowledged, and a frame the drain cannot send is counted, set aside, and leaves ``pending``
true (readiness follows it)."""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path

import orjson
import pytest

from bridge.contract.records import Record, Topics
from bridge.core.errors import PublishError, SpoolError
from bridge.core.limits import SPOOL_FRAME_LIMIT, largest_record
from bridge.ingress.intake import decode_and_normalize
from bridge.ingress.spool import Spool, encode
from bridge.ingress.store import Durable
from tests import samples
from tests.fakes import InMemoryPublisher
from tests.unit.ingress.test_spool import Running, record, spool_at

TOPICS = Topics("spotler")


def _worst_bodies(size: int) -> list[tuple[bytes, str]]:
    """Bodies of ``size`` bytes that grow most on their way to a record: control characters
    (a dead letter JSON-escapes each into six bytes), a message whose text is all escapes (kept
    twice: as text and in the payload), bytes that are not UTF-8 (base64)."""
    message = samples.message_body("text")
    message["message"]["body"] = ""
    shell = len(orjson.dumps(message))
    message["message"]["body"] = "\x01" * ((size - shell) // 6)
    return [
        (b"\x01" * size, ""),
        (orjson.dumps(message), ""),
        (b"\xff" * size, ""),
        (zlib.compress(b"\x01" * size)[: size // 2], "deflate"),
    ]


def test_every_record_fits_its_bound() -> None:
    """largest_record() is the bound config checks against the frame limit: measured."""
    for size in (1024, 65_536, 1024 * 1024):
        for body, encoding in _worst_bodies(size):
            rec = decode_and_normalize(body, encoding, TOPICS, size)
            assert len(encode(rec, 0.0)) <= largest_record(max(size, len(body)))


async def test_append_refuses_a_frame_the_scan_would_reject(tmp_path: Path) -> None:
    """Never acknowledged: append raises, nothing is written, nothing is pending."""
    spool = spool_at(tmp_path, max_bytes=1024**3)
    spool.open()
    run = Running(spool)
    run.tasks.append(asyncio.create_task(spool.run_writer()))
    big = Record(topic="t.events.message", key=b"k", value=b"x" * SPOOL_FRAME_LIMIT,
                 event_id="message/big", label="message")  # fmt: skip
    with pytest.raises(SpoolError, match="frame limit"):  # not acknowledged
        await spool.append(big)
    assert spool.pending == 0
    assert spool.bytes == 0
    await spool.append(record(1))  # the spool goes on
    assert spool.pending == 1
    await run.stop()


async def test_ingress_sets_aside_a_record_too_large_for_the_spool(tmp_path: Path) -> None:
    """Kafka down and a record over the frame limit: its small dead letter is spooled."""
    spool = spool_at(tmp_path, max_bytes=1024**3)
    spool.open()
    run = Running(spool)
    run.tasks.append(asyncio.create_task(spool.run_writer()))
    publisher = InMemoryPublisher()
    publisher.connected = False
    publisher.fail_with = PublishError("down")
    durable = Durable(publisher, spool, publish_timeout=0.1)
    big = Record(topic="t.events.message", key=b"k", value=b"x" * SPOOL_FRAME_LIMIT,
                 event_id="message/big", label="message")  # fmt: skip
    assert await durable(big) == "deadletter"
    assert spool.pending == 1
    assert spool.bytes < 64 * 1024
    await run.stop()


def _segment(directory: Path, frames: list[bytes]) -> Path:
    path = directory / f"{5:020d}.wal"
    path.write_bytes(b"".join(frames))
    return path


async def _drain(spool: Spool) -> InMemoryPublisher:
    run = Running(spool)
    run.tasks.append(asyncio.create_task(spool.run_writer()))
    publisher = InMemoryPublisher()
    run.drain_to(publisher)
    await asyncio.wait_for(spool.wait_until(lambda: spool.empty), 20)
    await run.stop()
    return publisher


def _metric(spool: Spool, name: str, **labels: str) -> float:
    return spool._metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_frame_over_the_limit_on_disk_is_set_aside_not_skipped(tmp_path: Path) -> None:
    """A spool written by a version without the bound: the oversized frame is neither cut at
    start-up nor skipped silently; its dead letter takes its place, in order."""
    big = Record(topic="t.events.message", key=b"c/1", value=b"x" * SPOOL_FRAME_LIMIT,
                 event_id="message/big", label="message")  # fmt: skip
    _segment(tmp_path, [encode(record(0), 1.0), encode(big, 1.0), encode(record(2), 1.0)])
    spool = spool_at(tmp_path)
    spool.open()
    assert spool.pending == 3
    publisher = await _drain(spool)
    ids = [r.event_id for r in publisher.records]
    assert ids[0] == "message/0"
    assert ids[1].startswith("deadletter/")
    assert ids[2] == "message/2"
    assert orjson.loads(publisher.records[1].value)["data"]["eventId"] == "message/big"
    assert _metric(spool, "spotler_bridge_records_set_aside_total", outcome="deadletter") == 1
    assert spool.pending == 0


async def test_a_frame_damaged_after_start_up_is_counted_and_pending_drops(
    tmp_path: Path,
) -> None:
    """A frame that rots between the start-up scan and the drain: counted as corruption, the
    records around it are sent, and ``pending`` reaches 0 (before: it never dropped, and the
    spool showed stalled)."""
    frames = [encode(record(i), 1.0) for i in range(3)]
    path = _segment(tmp_path, frames)
    spool = spool_at(tmp_path)
    spool.open()
    assert spool.pending == 3
    data = bytearray(path.read_bytes())
    data[len(frames[0]) + 20] ^= 0xFF  # inside the second frame's payload
    path.write_bytes(bytes(data))
    publisher = await _drain(spool)
    assert [r.event_id for r in publisher.records] == ["message/0", "message/2"]
    assert _metric(spool, "spotler_bridge_spool_corruptions_total") == 1
    assert spool.pending == 0
