"""Issue 22's scenario: delivery status through SIGKILLs and a rebalance, against the simulator.

1,000 send-message commands over 50 conversations; one ingress and one egress process, the
egress SIGKILLed once and restarted, a second egress joining (a rebalance of both the command
consumer and the status worker; the last 400 commands are produced once it is ready, so it has
work: it must send some), the ingress SIGKILLed once and restarted. The simulator fails
some messages, leaves some unread, sends receipts late, reversed and twice. Expectations come
from the simulator's truth (GET /_sim/receipts) and issue 22: every command's final status is
the simulator's truth for its message, every command's status records are monotone
(sent < failed < delivered < read), and every receipt the simulator sent reaches the receipt
topic.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from bridge.contract.records import Topics
from tests.integration.procs import (
    TOKEN,
    BridgeProcess,
    ProcessFactory,
    consume,
    eventually,
    produce,
    start_simulator,
    value,
)
from tests.integration.test_egress import CHANNEL, contact, send

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ORDER = {"sent": 0, "failed": 1, "delivered": 2, "read": 3}
COMMANDS, CONVERSATIONS = 1000, 50


async def count_results(kafka: str, prefix: str) -> int:
    records = await consume(kafka, [Topics(prefix).results], count=COMMANDS, timeout=2)
    return len({value(r)["data"]["commandId"] for r in records})


async def wait_results(kafka: str, prefix: str, at_least: int, timeout: float) -> None:
    async def enough() -> bool:
        return await count_results(kafka, prefix) >= at_least

    await eventually(enough, timeout=timeout)


@pytest.mark.timeout(900)
async def test_status_through_sigkills_and_a_second_egress(procs: ProcessFactory, kafka, prefix):
    common = {
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": kafka,
        "BRIDGE_TOPIC_PREFIX": prefix,
        "BRIDGE_STATUS_GROUP_ID": f"{prefix}-status",
    }
    ingress = procs.make("ingress", **common, BRIDGE_WEBHOOK_TOKENS=TOKEN, BRIDGE_CHANNELS=CHANNEL)
    sim = await start_simulator(
        procs,
        SIMULATOR_WEBHOOK_URL=f"{ingress.url}/webhooks",
        SIMULATOR_WEBHOOK_HEADERS=orjson.dumps({"Authorization": f"Bearer {TOKEN}"}).decode(),
    )
    await sim.admin("POST", "receipts", {
        "delay": 0.5, "jitter": 1.5, "failRate": 0.1, "readRate": 0.7, "shuffleRate": 0.2,
        "duplicateRate": 0.1, "seed": 2222,
    })  # fmt: skip
    egress_env = {
        **common,
        "BRIDGE_SPOTLER_API_URL": sim.api_url,
        "BRIDGE_SPOTLER_API_KEY": "sim-key",
        "BRIDGE_EGRESS_GROUP_ID": f"{prefix}-egress",
        "BRIDGE_EGRESS_RATE_LIMIT": "40",
        "BRIDGE_EGRESS_CHANNEL_RATE_LIMIT": "0",
    }
    await ingress.start()
    await ingress.wait_ready(timeout=60)
    first = procs.make("egress", **egress_env)
    await first.start()
    await first.wait_ready(timeout=60)

    commands = [send(f"big-{n}", contact(n % CONVERSATIONS)) for n in range(COMMANDS)]
    started = time.monotonic()
    await produce(kafka, Topics(prefix).send_message, commands[:600])

    await wait_results(kafka, prefix, 200, timeout=180)
    await first.kill()  # SIGKILL egress mid-run
    await restart(first)
    await wait_results(kafka, prefix, 350, timeout=180)
    second = procs.make("egress", **egress_env)  # a second egress joins: rebalance
    await second.start()
    await second.wait_ready(timeout=90)
    await produce(kafka, Topics(prefix).send_message, commands[600:])
    await wait_results(kafka, prefix, 650, timeout=180)
    await ingress.kill()  # SIGKILL ingress while receipts keep coming
    await asyncio.sleep(1.0)
    await restart(ingress)
    await wait_results(kafka, prefix, COMMANDS, timeout=300)
    done_by_second = sent_by(await second.metrics())
    assert done_by_second > 0, "the second egress sent nothing: no rebalance under load"

    plan = await sim.admin("GET", "receipts")
    by_command: dict[str, list[str]] = {}
    for message_id, command_id in plan["requests"].items():
        by_command.setdefault(command_id, []).append(message_id)
    assert set(by_command) == {c["id"] for c in commands}
    # A command the crash window sent twice has two messages: it ends in one of their truths.
    allowed = {command: {plan["truth"][m][-1] for m in ids} for command, ids in by_command.items()}

    async def settled() -> bool:
        latest = await latest_states(kafka, prefix)
        return len(latest) == COMMANDS and all(latest[c] in allowed[c] for c in allowed)

    try:
        await eventually(settled, timeout=240)
    finally:
        latest = await latest_states(kafka, prefix)
        wrong = {c: (latest.get(c), allowed[c]) for c in allowed if latest.get(c) not in allowed[c]}
        print(f"status settled after {time.monotonic() - started:.0f} s; wrong: {len(wrong)}")
        print(dict(list(wrong.items())[:10]))
    once = [c for c, ids in by_command.items() if len(ids) == 1]
    assert len(once) > COMMANDS * 0.9
    records = await status_records(kafka, prefix)
    for command, events in records.items():
        ranks = [ORDER[e["state"]] for e in events]
        assert ranks == sorted(ranks), (command, [e["state"] for e in events])

    receipts = await read_all(kafka, Topics(prefix).event("receipt"))
    seen = {
        (value(r)["data"]["receipt"]["messageId"], value(r)["data"]["receipt"]["status"])
        for r in receipts
    }
    sent = {(m, s) for m, statuses in plan["truth"].items() for s in statuses}
    assert sent <= seen, f"{len(sent - seen)} receipts never reached the receipt topic"


def sent_by(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(
            'spotler_bridge_commands_total{command="send-message",outcome="succeeded"}'
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def restart(proc: BridgeProcess) -> None:
    await proc.start()
    await proc.wait_ready(timeout=90)


async def read_all(kafka: str, topic: str) -> list[Any]:
    """Every record of ``topic`` up to its end now, in partition and offset order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        consumer.subscribe([topic])
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=200)
        parts = list(consumer.assignment())
        ends = await consumer.end_offsets(parts)
        await consumer.seek_to_beginning(*parts)
        records: list[Any] = []
        async with asyncio.timeout(60):
            while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(
                        r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)]
                    )
    finally:
        await consumer.stop()
    records.sort(key=lambda r: (r.partition, r.offset))
    return records


async def status_records(kafka: str, prefix: str) -> dict[str, list[dict[str, Any]]]:
    records = await read_all(kafka, Topics(prefix).status)
    found: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        data = value(record)["data"]
        found.setdefault(data["commandId"], []).append(data)
    return found


async def latest_states(kafka: str, prefix: str) -> dict[str, str]:
    return {c: events[-1]["state"] for c, events in (await status_records(kafka, prefix)).items()}
