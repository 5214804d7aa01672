"""The Durable store without a broker: the in-memory publisher and a real spool on disk.

Expectations from DESIGN.md, "Ingress" step 4: a record is durable once Kafka acknowledged it
or, when Kafka is slow or down, once it is in the spool; while the spool holds records new ones
queue behind them (order per conversation); only when neither can take it does ingress fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.contract.records import Record
from bridge.core.config import SpoolSettings
from bridge.core.errors import PublishError, PublishTimeout
from bridge.ingress.spool import Spool
from bridge.ingress.store import Durable
from bridge.telemetry.metrics import Metrics
from tests.fakes import InMemoryPublisher


def record(n: int) -> Record:
    return Record(
        topic="t.events.message", key=b"c/1", value=b"v%d" % n, event_id=f"m/{n}", label="message"
    )


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[Spool]:
    settings = SpoolSettings(dir=str(tmp_path), max_bytes=1024 * 1024, segment_bytes=64 * 1024)
    s = Spool(settings, Metrics())
    s.open()
    writer = asyncio.create_task(s.run_writer())  # appends complete once the writer fsyncs
    yield s
    writer.cancel()
    await asyncio.gather(writer, return_exceptions=True)
    s.close()


async def test_published_while_kafka_takes_records(spool: Spool) -> None:
    """Connected and an empty spool: the record goes to Kafka, the spool stays empty."""
    publisher = InMemoryPublisher()
    store = Durable(publisher, spool, publish_timeout=1.0)
    assert await store(record(1)) == "published"
    assert publisher.records == [record(1)]
    assert spool.empty
    assert store.ready


async def test_spooled_when_kafka_does_not_acknowledge(spool: Spool) -> None:
    """A publish that fails or times out puts the record in the spool instead."""
    publisher = InMemoryPublisher()
    publisher.fail_with = PublishTimeout("no ack")
    store = Durable(publisher, spool, publish_timeout=1.0)
    assert await store(record(1)) == "spooled"
    assert publisher.records == []
    assert spool.pending == 1


async def test_new_records_queue_behind_the_spool(spool: Spool) -> None:
    """While the spool holds records, new ones go behind them even if Kafka is back."""
    publisher = InMemoryPublisher()
    publisher.failures.append(PublishError("down"))
    store = Durable(publisher, spool, publish_timeout=1.0)
    assert await store(record(1)) == "spooled"
    assert await store(record(2)) == "spooled"
    assert publisher.calls == 1  # the second never tried Kafka: it would overtake the first
    assert spool.pending == 2


async def test_spooled_without_trying_when_not_connected(spool: Spool) -> None:
    """Not connected: straight to the spool; not ready before the first connection."""
    publisher = InMemoryPublisher()
    publisher.connected = False
    store = Durable(publisher, spool, publish_timeout=1.0)
    assert not store.ready
    assert await store(record(1)) == "spooled"
    assert publisher.calls == 0


async def test_the_timeout_is_passed_to_the_publisher(spool: Spool) -> None:
    """The configured publish timeout is the one Kafka gets."""
    seen: list[float | None] = []

    class Recording(InMemoryPublisher):
        async def publish(self, record: Record, *, timeout: float | None = None) -> None:
            seen.append(timeout)
            await super().publish(record, timeout=timeout)

    await Durable(Recording(), spool, publish_timeout=2.5)(record(1))
    assert seen == [2.5]
