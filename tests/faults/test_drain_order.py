"""The spool drain keeps each key's order across a frozen broker (issue 26, item 5).

In-process, against a broker of the test's own: records are spooled for a handful of keys while
the drain publishes them; the broker is frozen (SIGSTOP) mid-drain for longer than the request
timeout, three times: batches stay in flight, the next batches get no slot in time. Every
record is in Kafka, and each key's records are in spool order (DESIGN.md, "Ordering"); before
the fix a batch that was not handed over in time was resent after the batches behind it.

What this test shows is the outcome (no key out of order, nothing lost across the freezes and
the session replacements); on this machine the freezes hit the lane's last batch of a chunk
and did not reproduce the reordering without the fix, which tests/unit/kafka/test_lane_order.py
shows with a ``send_batch`` that fails once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.contract.records import Record
from bridge.core.config import KafkaSettings, SpoolSettings
from bridge.ingress.spool import Spool
from bridge.kafka.producer import KafkaPublisher
from bridge.telemetry.metrics import Metrics
from tests.faults.conftest import OwnKafka, wait_for
from tests.integration.procs import consume

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TOTAL = 8000
FREEZE_AT = (1000, 3000, 5000)
KEYS = [f"conversation-{k}".encode() for k in range(8)]


def rec(topic: str, n: int) -> Record:
    key = KEYS[n % len(KEYS)]
    return Record(
        topic=topic, key=key, value=b"%08d" % n + b"x" * 8000, event_id=f"m/{n}", label="m"
    )


@pytest.mark.timeout(300)
async def test_each_keys_order_survives_a_broker_stop_mid_drain(
    own_kafka: OwnKafka, prefix: str, tmp_path: Path
) -> None:
    topic = f"{prefix}.scratch"  # raw test values: not a topic of the contract
    admin = AIOKafkaAdminClient(bootstrap_servers=own_kafka.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    metrics = Metrics()
    spool = Spool(
        SpoolSettings(dir=str(tmp_path / "spool"), segment_bytes=1024**2), metrics
    )  # the other settings are the defaults
    spool.open()
    # Request timeout 3 s (half the delivery bound): a frozen broker holds a batch in flight
    # past it, so the next batch of that partition gets no slot in time (the failure under
    # test), and answers before the session is overdue (6 s). A drain chunk (2000 records of
    # 8 kB, one partition) is about 64 batches of one lane.
    settings = KafkaSettings(bootstrap_servers=own_kafka.bootstrap, delivery_timeout=6.0)
    publisher = KafkaPublisher(settings, metrics)
    tasks = [asyncio.create_task(spool.run_writer())]
    # A backlog (as after an outage): the drain reads full chunks, several batches per lane.
    for first in range(0, TOTAL, 500):
        await asyncio.gather(*(spool.append(rec(topic, n)) for n in range(first, first + 500)))
    tasks.append(asyncio.create_task(spool.run_drain(publisher, batch=2000)))
    tasks.append(asyncio.create_task(publisher.run_connect()))

    def drained() -> float:
        return metrics.registry.get_sample_value("spotler_bridge_spool_drained_total") or 0.0

    def failed() -> float:
        name = "spotler_bridge_spool_drain_attempts_total"
        return metrics.registry.get_sample_value(name, {"outcome": "failed"}) or 0.0

    try:
        for at in FREEZE_AT:
            await until(functools.partial(lambda n: drained() >= n, at), timeout=90)
            await freeze(own_kafka, 5.0)  # batches in flight; the next ones' slots expire
        await until(lambda: spool.pending == 0, timeout=120)
        assert failed() >= 1, "the freezes made no hand-over or delivery fail"
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await publisher.close()
        spool.close()
    total = TOTAL
    records = await consume(own_kafka.bootstrap, [topic], count=total, timeout=60, settle=2)
    numbers = {int(r.value[:8]) for r in records}
    assert numbers == set(range(total)), f"{total - len(numbers)} records missing"
    for key in KEYS:
        seen = [int(r.value[:8]) for r in records if r.key == key]
        first_seen = list(dict.fromkeys(seen))  # a resend after a lost answer: a duplicate
        misplaced = [(i, n) for i, n in enumerate(first_seen) if i and n < first_seen[i - 1]]
        assert not misplaced, f"{key!r}: {len(misplaced)} out of order, first {misplaced[0]}"


async def freeze(broker: OwnKafka, seconds: float) -> None:
    pid = int((broker.work / "kafka.pid").read_text().strip())
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds)  # the fault's length, not a synchronisation
    finally:
        os.kill(pid, signal.SIGCONT)


async def until(condition: Callable[[], bool], timeout: float) -> None:
    async def check() -> bool:
        return condition()

    await wait_for(check, timeout)
