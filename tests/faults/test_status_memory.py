"""Issue 22: memory stays under the cap with 200,000 sends in the window (real broker).

200,000 send-log entries (as egress writes them) over 50 conversations; a ``bridge egress``
process whose status worker may hold 100,000 (``BRIDGE_STATUS_MAX_ENTRIES``): it writes a
``sent`` status for every one, holds exactly the cap, counts the rest as evicted, and its
resident memory stays bounded (measured and printed).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from bridge.contract.records import Topics
from bridge.contract.status import SendEntry, send_log_record
from tests.integration.procs import ProcessFactory, eventually, start_simulator

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SENDS, CAP = 200_000, 100_000
CHANNEL = "31612345678@whatsapp.eazy.im"


def gauge(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return -1.0


@pytest.mark.timeout(900)
async def test_200000_sends_stay_under_the_cap(procs: ProcessFactory, kafka, prefix) -> None:
    sim = await start_simulator(procs)
    egress = procs.make(
        "egress",
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS=kafka,
        BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_SPOTLER_API_URL=sim.api_url,
        BRIDGE_SPOTLER_API_KEY="sim-key",
        BRIDGE_EGRESS_GROUP_ID=f"{prefix}-egress",
        BRIDGE_STATUS_GROUP_ID=f"{prefix}-status",
        BRIDGE_STATUS_MAX_ENTRIES=str(CAP),
        BRIDGE_LOG_LEVEL="warning",
    )
    await egress.start()
    await egress.wait_ready(timeout=90)
    topics = Topics(prefix)
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks=1, linger_ms=20)
    await producer.start()
    try:
        now = time.time()
        for n in range(SENDS):
            contact = f"316{n % 50:08d}@whatsapp.eazy.im"
            entry = SendEntry("send-message", f"mem-{n}", CHANNEL, contact, "sent",
                              f"{n:040x}", now, now - 1)  # fmt: skip
            record = send_log_record(topics, entry, None)
            await producer.send(topics.sent, record.value, key=record.key)
        await producer.flush()
    finally:
        await producer.stop()

    async def held() -> bool:
        text = await egress.metrics()
        return gauge(text, "spotler_bridge_status_evicted_total") == SENDS - CAP

    await eventually(held, timeout=600)
    text = await egress.metrics()
    assert gauge(text, "spotler_bridge_status_entries") == CAP
    assert egress.proc is not None
    status = Path(f"/proc/{egress.proc.pid}/status").read_text()
    rss_kb = int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])
    print(f"egress resident memory with {CAP} sends held: {rss_kb / 1024:.0f} MiB")
    assert rss_kb < 512 * 1024  # the chart's egress memory limit
