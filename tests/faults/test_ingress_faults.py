"""Fault scenarios for ingress: Kafka stopped mid-stream, the bridge killed, SIGTERM.

Each scenario streams webhooks like the platform, then checks conservation: every delivery
answered 200 is on its topic with its payload intact, and nothing appears that was not sent.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.faults.conftest import OwnKafka, Stream, conservation, metric, wait_for
from tests.integration.procs import BridgeProcess, ProcessFactory

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

#: Seconds from Kafka being ready again until the spool is empty (scenario 1).
DRAIN_BOUND = 20.0


def make_ingress(procs: ProcessFactory, broker: OwnKafka, prefix: str, **env: str) -> BridgeProcess:
    return procs.make(
        "ingress",
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap,
        BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_WEBHOOK_TOKENS="tok-0123456789abcdef",
        BRIDGE_PUBLISH_TIMEOUT="0.5",
        BRIDGE_SHUTDOWN_TIMEOUT="10",
        BRIDGE_LOG_LEVEL="warning",
        **env,
    )


async def spool_empty(bridge: BridgeProcess) -> bool:
    return await metric(bridge.ops_url, "spotler_bridge_spool_records") == 0.0


@pytest.mark.timeout(300)  # a broker stop and start: past the default 120 s on a loaded machine
async def test_kafka_stopped_during_stream(procs, own_kafka, prefix, report) -> None:
    """Scenario 1: Kafka goes away mid-stream and comes back; every delivery still gets 200."""
    bridge = make_ingress(procs, own_kafka, prefix)
    await bridge.start()
    await bridge.wait_ready()
    stream = Stream(bridge.url + "/webhooks").start()
    await asyncio.sleep(3)
    await own_kafka.stop()
    await asyncio.sleep(5)
    spooled = await metric(bridge.ops_url, "spotler_bridge_spool_records")
    restarted = time.monotonic()
    await own_kafka.start()  # returns once the broker is ready again
    returned = time.monotonic()
    await asyncio.sleep(3)
    await stream.stop()
    await wait_for(lambda: spool_empty(bridge), timeout=60)
    drain, after_return = time.monotonic() - restarted, time.monotonic() - returned
    figures = await conservation(own_kafka.bootstrap, prefix, stream)
    assert stream.statuses == {"200": len(stream.acked)}, stream.statuses  # all 200s
    assert spooled is not None
    assert spooled > 0
    # Issue 16: the drain resumes within seconds of Kafka's return (measured 5 s, 3 of them the
    # stream still running; 10 s to over 18 s before, when it slept out the reconnect and drain
    # backoffs grown while Kafka was away). The bound leaves room for a loaded 2-core CI.
    assert after_return < DRAIN_BOUND, f"spool drained {after_return:.1f}s after Kafka returned"
    assert await bridge.stop() == 0
    report["1-kafka-stopped"] = {
        **figures,
        "spooled_at_peak": spooled,
        "seconds_to_drain_after_restart": round(drain, 1),
        "seconds_to_drain_after_return": round(after_return, 1),
    }


async def test_bridge_killed_during_stream(procs, own_kafka, prefix, report) -> None:
    """Scenario 2: SIGKILL the bridge three times (once while spooling); nothing acked is lost."""
    bridge = make_ingress(procs, own_kafka, prefix)
    kills = 0
    stream = Stream("", rate=120)

    async def restart() -> None:
        await bridge.start()
        await bridge.wait_ready()

    await restart()
    stream.url = bridge.url + "/webhooks"
    stream.start()
    for phase in ("kafka up", "kafka down", "draining"):
        if phase == "kafka down":
            await own_kafka.stop()
        await asyncio.sleep(2.5)
        await bridge.kill()
        kills += 1
        if phase == "kafka down":
            await own_kafka.start()
        await restart()
        await asyncio.sleep(1.0)
    await asyncio.sleep(2)
    await stream.stop()
    await wait_for(lambda: spool_empty(bridge), timeout=60)
    figures = await conservation(own_kafka.bootstrap, prefix, stream)
    corrupt = await metric(bridge.ops_url, "spotler_bridge_spool_corruptions_total")
    assert await bridge.stop() == 0
    report["2-bridge-sigkill"] = {
        **figures,
        "kills": kills,
        "statuses": stream.statuses,
        "corrupt_tails_cut_last_start": corrupt,
    }


async def test_sigterm_during_stream(procs, own_kafka, prefix, report) -> None:
    """Scenario 3: SIGTERM mid-stream: in-flight deliveries finish, exit 0, nothing lost."""
    bridge = make_ingress(procs, own_kafka, prefix)
    await bridge.start()
    await bridge.wait_ready()
    stream = Stream(bridge.url + "/webhooks", rate=200).start()
    await asyncio.sleep(3)
    await bridge.signal(signal.SIGTERM)
    assert bridge.proc is not None
    code = await asyncio.wait_for(bridge.proc.wait(), timeout=20)
    await stream.stop()
    figures = await conservation(own_kafka.bootstrap, prefix, stream)
    assert code == 0
    assert "deadline_exceeded" not in bridge.logs()
    report["3-sigterm"] = {**figures, "exit_code": code, "statuses": stream.statuses}
