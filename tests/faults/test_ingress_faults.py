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


async def spool_records(bridge: BridgeProcess) -> float:
    """The spool depth the bridge exports (-1 while /metrics does not answer)."""
    found = await metric(bridge.ops_url, "spotler_bridge_spool_records")
    return -1.0 if found is None else found


async def spool_empty(bridge: BridgeProcess) -> bool:
    return await spool_records(bridge) == 0.0


async def until_acked(stream: Stream, more: int, timeout: float = 60) -> float:
    """Wait until ``more`` deliveries beyond those acknowledged now got their 200."""
    target = len(stream.acked) + more

    async def enough() -> bool:
        return len(stream.acked) >= target

    return await wait_for(enough, timeout, interval=0.05)


async def until_spooled(bridge: BridgeProcess, at_least: float, timeout: float = 60) -> float:
    """Wait until the bridge reports at least ``at_least`` records in its spool."""

    async def spooling() -> bool:
        return await spool_records(bridge) >= at_least

    return await wait_for(spooling, timeout)


# Stopping and starting the broker (a JVM) and draining take tens of seconds on a loaded
# machine: each phase below waits on its own condition with its own deadline, and the test as a
# whole gets a larger budget than the suite's 120 s (docs/testing.md, "Fault tests").
@pytest.mark.timeout(420)
async def test_kafka_stopped_during_stream(procs, own_kafka, prefix, report) -> None:
    """Scenario 1: Kafka goes away mid-stream and comes back; every delivery still gets 200."""
    bridge = make_ingress(procs, own_kafka, prefix)
    await bridge.start()
    await bridge.wait_ready()
    stream = Stream(bridge.url + "/webhooks").start()
    phases: dict[str, float] = {}
    clock = time.monotonic()

    def phase(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        phases[name] = round(now - clock, 1)
        clock = now

    await until_acked(stream, 300)
    phase("stream_300_acked")
    await own_kafka.stop()
    phase("kafka_stop")
    await until_spooled(bridge, 300)
    phase("spool_300")
    spooled = await spool_records(bridge)
    await own_kafka.start()  # returns once the broker is ready again
    phase("kafka_start")
    returned = time.monotonic()

    async def draining() -> bool:  # the bridge publishes again: the spool shrinks
        return 0 <= await spool_records(bridge) < spooled

    await wait_for(draining, timeout=90)
    phase("drain_started")
    await until_acked(stream, 150)
    await stream.stop()
    phase("stream_stopped")
    await wait_for(lambda: spool_empty(bridge), timeout=90)
    after_return = time.monotonic() - returned
    phase("spool_empty")
    figures = await conservation(own_kafka.bootstrap, prefix, stream)
    phase("conservation")
    assert stream.statuses == {"200": len(stream.acked)}, stream.statuses  # all 200s
    assert spooled >= 300
    # Issue 16: the drain resumes within seconds of Kafka's return (measured 5 s; 10 s to over
    # 18 s before, when it slept out the reconnect and drain backoffs grown while Kafka was away).
    # The bound leaves room for a loaded 2-core CI.
    assert after_return < DRAIN_BOUND, f"spool drained {after_return:.1f}s after Kafka returned"
    assert await bridge.stop() == 0
    report["1-kafka-stopped"] = {
        **figures,
        "spooled_at_peak": spooled,
        "seconds_per_phase": phases,
        "seconds_to_drain_after_return": round(after_return, 1),
    }


@pytest.mark.timeout(420)
async def test_bridge_killed_during_stream(procs, own_kafka, prefix, report) -> None:
    """Scenario 2: SIGKILL the bridge three times (once while spooling); nothing acked is lost."""
    bridge = make_ingress(procs, own_kafka, prefix)
    kills = 0
    spool_at_kill: dict[str, float] = {}
    stream = Stream("", rate=120)

    async def restart() -> None:
        await bridge.start()
        await bridge.wait_ready()

    await restart()
    stream.url = bridge.url + "/webhooks"
    stream.start()
    for phase in ("kafka up", "kafka down", "after restart"):
        if phase == "kafka down":
            await own_kafka.stop()
            await until_spooled(bridge, 100)
        else:
            await until_acked(stream, 200)
        spool_at_kill[phase] = await spool_records(bridge)  # read just before the SIGKILL
        await bridge.kill()
        kills += 1
        if phase == "kafka down":
            await own_kafka.start()
        await restart()
        await until_acked(stream, 50)  # the restarted bridge takes deliveries again
    # the kill "while spooling" really was: the bridge had records in its spool at that moment
    assert spool_at_kill["kafka down"] >= 100, spool_at_kill
    await until_acked(stream, 200)
    await stream.stop()
    await wait_for(lambda: spool_empty(bridge), timeout=90)
    figures = await conservation(own_kafka.bootstrap, prefix, stream)
    corrupt = await metric(bridge.ops_url, "spotler_bridge_spool_corruptions_total")
    assert await bridge.stop() == 0
    report["2-bridge-sigkill"] = {
        **figures,
        "kills": kills,
        "spool_records_at_each_kill": spool_at_kill,
        "statuses": stream.statuses,
        "corrupt_tails_cut_last_start": corrupt,
    }


async def test_sigterm_during_stream(procs, own_kafka, prefix, report) -> None:
    """Scenario 3: SIGTERM mid-stream: in-flight deliveries finish, exit 0, nothing lost."""
    bridge = make_ingress(procs, own_kafka, prefix)
    await bridge.start()
    await bridge.wait_ready()
    stream = Stream(bridge.url + "/webhooks", rate=200).start()
    await until_acked(stream, 300)
    await bridge.signal(signal.SIGTERM)
    assert bridge.proc is not None
    code = await asyncio.wait_for(bridge.proc.wait(), timeout=20)
    await stream.stop()
    figures = await conservation(own_kafka.bootstrap, prefix, stream)
    assert code == 0
    assert "deadline_exceeded" not in bridge.logs()
    report["3-sigterm"] = {**figures, "exit_code": code, "statuses": stream.statuses}
