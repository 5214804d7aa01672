"""Recovery after the broker goes away: ``bridge serve`` under steady mixed load (issue 16).

A stream of ~100 webhooks/s of four event types and ~20 commands/s to egress (through the
simulator) runs while the test's own broker is stopped for 45 s and started again, or frozen
with SIGSTOP for 20 s and resumed with SIGCONT; three times in a row, so that an intermittent
failure shows. After each return of the broker the spool must be empty within 60 s; at the end
every delivery answered 200 is in Kafka and every command that Kafka took has its result.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bridge.contract.records import Topics
from tests import samples
from tests.faults.conftest import Background, OwnKafka, metric, paced, wait_for
from tests.integration.procs import (
    TOKEN,
    BridgeProcess,
    ProcessFactory,
    Simulator,
    consume,
    start_simulator,
    value,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(900)]

REPETITIONS = 3
EVENTS = ("message", "receipt", "echo", "revoke")


@dataclass
class MixedStream(Background):
    """Posts webhooks of several event types at ``rate``; remembers the ids answered 200."""

    url: str
    rate: float = 100.0
    acked: set[str] = field(default_factory=set)
    statuses: dict[str, int] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def _body(self, n: int) -> dict[str, Any]:
        kind = EVENTS[n % len(EVENTS)]
        contact = f"316{n % 25:08d}@whatsapp.eazy.im"
        if kind == "message":
            return samples.message_body("text", contact=contact)
        body = samples.other_events()[kind]
        if "from" in body and kind != "echo":
            body["from"] = {"jid": contact}
        return body

    async def _post(self, http: aiohttp.ClientSession, n: int) -> None:
        status = "connection-error"
        try:
            async with http.post(
                self.url,
                data=orjson.dumps(self._body(n)),
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as resp:
                status = str(resp.status)
                if resp.status == 200:
                    self.acked.add((await resp.json())["id"])
        except (TimeoutError, aiohttp.ClientError):
            pass
        self.statuses[status] = self.statuses.get(status, 0) + 1

    async def _run(self) -> None:
        await paced(self.rate, 32, self._stop, self._post)


@dataclass
class CommandFeed(Background):
    """Produces ~``rate`` send-message commands/s, tagged with the current phase.

    The test's own producer is not idempotent (a Kafka restart cannot break its session) and
    keeps records for 120 s, so commands written while the broker is away are delivered when it
    returns. Only commands Kafka acknowledged count as produced.
    """

    bootstrap: str
    topic: str
    rate: float = 20.0
    phase: str = "before"
    produced: dict[str, str] = field(default_factory=dict)  # command id -> phase
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", request_timeout_ms=120_000
        )
        await producer.start()
        pending: set[asyncio.Future[Any]] = set()
        try:
            n, start = 0, time.monotonic()
            while not self._stop.is_set():
                command_id, phase = f"cmd-{n}-{self.phase}", self.phase
                contact = f"316{n % 10:08d}@whatsapp.eazy.im"
                command = {
                    "id": command_id,
                    "channelJid": samples.CHANNEL,
                    "contactJid": contact,
                    "message": {"type": "text", "body": command_id},
                }
                future = await producer.send(
                    self.topic,
                    orjson.dumps(command),
                    key=f"{samples.CHANNEL}/{contact}".encode(),
                )

                def done(f: asyncio.Future[Any], cid: str = command_id, ph: str = phase) -> None:
                    if not f.cancelled() and f.exception() is None:
                        self.produced[cid] = ph

                future.add_done_callback(done)
                pending.add(future)
                future.add_done_callback(pending.discard)
                n += 1
                await asyncio.sleep(max(0.0, start + n / self.rate - time.monotonic()))
            await asyncio.wait(pending, timeout=130) if pending else None
        finally:
            await producer.stop()


def make_serve(
    procs: ProcessFactory, broker: OwnKafka, prefix: str, sim: Simulator
) -> BridgeProcess:
    return procs.make(
        "serve",
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap,
        BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_WEBHOOK_TOKENS=TOKEN,
        BRIDGE_SPOTLER_API_URL=sim.api_url,
        BRIDGE_SPOTLER_API_KEY="sim-key",
        BRIDGE_CHANNELS=samples.CHANNEL,
        BRIDGE_EGRESS_GROUP_ID=f"{prefix}-egress",
        BRIDGE_EGRESS_RATE_LIMIT="0",
        BRIDGE_EGRESS_CHANNEL_RATE_LIMIT="0",
        BRIDGE_SHUTDOWN_TIMEOUT="20",
        BRIDGE_LOG_LEVEL="warning",
    )


async def found_events(bootstrap: str, prefix: str, ids: set[str]) -> set[str]:
    """The event ids on the event topics, read until all of ``ids`` are there or 120 s passed
    (a count is not enough: repeats with the same id are allowed)."""
    consumer = AIOKafkaConsumer(
        *Topics(prefix).all_event_topics(),
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: set[str] = set()
    deadline = time.monotonic() + 120
    try:
        while not ids <= found and time.monotonic() < deadline:
            for part in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                found.update(value(r)["id"] for r in part)
    finally:
        await consumer.stop()
    return found


async def results_for(bootstrap: str, prefix: str, ids: set[str], timeout: float) -> set[str]:
    """Command ids with a result, once all of ``ids`` have one or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while True:
        records = await consume(bootstrap, [Topics(prefix).results], count=10**9, timeout=4)
        have = {value(r)["data"]["commandId"] for r in records}
        if have >= ids or time.monotonic() > deadline:
            return have


Fault = Callable[[OwnKafka], Awaitable[None]]


async def stop_for_45s(broker: OwnKafka) -> None:
    await broker.stop()
    await asyncio.sleep(45)  # the fault's length, not a synchronisation
    await broker.start()


async def freeze_for_20s(broker: OwnKafka) -> None:
    pid = int((broker.work / "kafka.pid").read_text().strip())
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(20)  # the fault's length, not a synchronisation
    finally:
        os.kill(pid, signal.SIGCONT)


async def run_faults(
    procs: ProcessFactory, broker: OwnKafka, prefix: str, fault: Fault
) -> dict[str, Any]:
    sim = await start_simulator(procs)
    bridge = make_serve(procs, broker, prefix, sim)
    await bridge.start()
    await bridge.wait_ready(timeout=60)
    stream = MixedStream(bridge.url + "/webhooks").start()
    feed = CommandFeed(broker.bootstrap, Topics(prefix).send_message).start()
    drains: list[float] = []
    spool_after_return: list[float] = []

    async def spool_empty() -> bool:
        return await metric(bridge.ops_url, "spotler_bridge_spool_records") == 0.0

    async def spooled() -> float:
        return await metric(bridge.ops_url, "spotler_bridge_spool_records") or 0.0

    try:
        for rep in range(REPETITIONS):
            feed.phase = f"r{rep}-before"
            await asyncio.sleep(5)  # steady traffic before the fault
            feed.phase = f"r{rep}-during"
            await fault(broker)
            returned = time.monotonic()
            feed.phase = f"r{rep}-after"
            await asyncio.sleep(5)  # traffic after the broker's return
            spool_after_return.append(await spooled())
            drains.append(round(await wait_for(spool_empty, timeout=55) + 5, 1))
            assert time.monotonic() - returned <= 60 + 1
    finally:
        await stream.stop()
        await feed.stop()
    await wait_for(spool_empty, timeout=60)  # fails the test when it stays non-empty
    found = await found_events(broker.bootstrap, prefix, stream.acked)
    missing = stream.acked - found
    assert not missing, f"{len(missing)} deliveries answered 200 are not in Kafka"
    produced = set(feed.produced)
    phases = set(feed.produced.values())
    for rep in range(REPETITIONS):  # commands were really produced in every phase
        assert {f"r{rep}-before", f"r{rep}-during", f"r{rep}-after"} <= phases, phases
    have = await results_for(broker.bootstrap, prefix, produced, timeout=120)
    lost = produced - have
    assert not lost, f"{len(lost)} commands without a result, e.g. {sorted(lost)[:5]}"
    recreations = await metric(bridge.ops_url, "spotler_bridge_kafka_producer_recreations_total")
    assert await bridge.stop() == 0, bridge.logs()[-3000:]
    return {
        "acknowledged": len(stream.acked),
        "statuses": stream.statuses,
        "commands_produced": len(produced),
        "seconds_to_empty_spool_after_return": drains,
        "spool_records_5s_after_return": spool_after_return,
        "producer_recreations": recreations,
    }


async def test_kafka_stopped_45s_three_times(procs, own_kafka, prefix, report) -> None:
    """Kafka stopped for 45 s and restarted, three times, under mixed load: nothing stalls."""
    figures = await run_faults(procs, own_kafka, prefix, stop_for_45s)
    assert figures["statuses"].get("200", 0) == figures["acknowledged"] > 0
    report["recovery-kafka-stop-45s-x3"] = figures


async def test_broker_frozen_20s_three_times(procs, own_kafka, prefix, report) -> None:
    """A broker that stops answering (SIGSTOP 20 s, SIGCONT), three times: nothing stalls."""
    figures = await run_faults(procs, own_kafka, prefix, freeze_for_20s)
    assert figures["statuses"].get("200", 0) == figures["acknowledged"] > 0
    report["recovery-broker-frozen-20s-x3"] = figures
