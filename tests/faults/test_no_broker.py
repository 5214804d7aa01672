"""Scenario 12 (docs/reliability.md): no broker at start-up. Ingress and egress start while nothing
listens on the bootstrap address; the broker appears later.

Ingress comes up (not ready), answers deliveries 200 from its spool, and publishes them once the
broker is there. Egress waits (retrying, alive, not ready) and works once the broker is there.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from bridge.contract.records import Topics
from tests.faults.conftest import Stream, conservation, metric, wait_for
from tests.faults.deploy import ScriptedKafka
from tests.faults.test_egress_faults import all_results, commands, make_egress
from tests.integration.procs import BridgeProcess, post, produce, start_simulator

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(300)]


async def ready(proc: BridgeProcess) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(proc.ops_url + "/readyz") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def test_broker_unreachable_at_start_up(procs, prefix, tmp_path, report) -> None:
    broker = ScriptedKafka(tmp_path / "kafka")  # its port is chosen, nothing listens there yet
    sim = await start_simulator(procs)
    ingress = procs.make(
        "ingress",
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap,
        BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_WEBHOOK_TOKENS="tok-0123456789abcdef",
        BRIDGE_LOG_LEVEL="info",
    )
    egress = make_egress(procs, broker.bootstrap, prefix, sim)
    await asyncio.gather(ingress.start(), egress.start())

    async def accepting() -> bool:  # the webhook port answers (401 without a token)
        try:
            status, _ = await post(ingress.url + "/webhooks", b"{}", token=None)
        except aiohttp.ClientError:
            return False
        return status == 401

    await wait_for(accepting, timeout=60)
    stream = Stream(ingress.url + "/webhooks", rate=50).start()

    async def spooled(n: int) -> bool:
        return len(stream.acked) >= n

    await wait_for(lambda: spooled(100), timeout=60)

    async def egress_retried() -> bool:
        return egress.logs().count("egress.connect_failed") >= 3

    await wait_for(egress_retried, timeout=60)
    for proc in (ingress, egress):
        assert proc.proc is not None
        assert proc.proc.returncode is None, proc.logs()  # alive: waiting, not crashed
        assert not await ready(proc)  # and says so
    in_spool = await metric(ingress.ops_url, "spotler_bridge_spool_records")
    assert in_spool is not None
    assert in_spool > 0

    try:
        await broker.up()
        appeared = time.monotonic()
        waits = await asyncio.gather(
            wait_for(lambda: ready(ingress), timeout=120),
            wait_for(lambda: ready(egress), timeout=120),
        )

        async def drained() -> bool:
            return await metric(ingress.ops_url, "spotler_bridge_spool_records") == 0.0

        await wait_for(drained, timeout=120)
        drain = time.monotonic() - appeared
        await stream.stop()
        figures = await conservation(broker.bootstrap, prefix, stream)
        assert stream.statuses == {"200": len(stream.sent)}, stream.statuses

        batch = commands(40, 8, "late")
        await produce(broker.bootstrap, Topics(prefix).send_message, batch)
        results = await all_results(broker.bootstrap, prefix, {c["id"] for c in batch})
        assert all(r["type"] == "im.eazy.command.succeeded" for r in results)

        assert await ingress.stop() == 0, ingress.logs()[-3000:]
        assert await egress.stop() == 0, egress.logs()[-3000:]
    finally:
        await stream.stop()  # a no-op when it stopped already
        await broker.down()
    report["12-no-broker-at-start"] = {
        **figures,
        "spooled_before_broker": in_spool,
        "seconds_broker_up_to_ingress_ready": round(waits[0], 1),
        "seconds_broker_up_to_egress_ready": round(waits[1], 1),
        "seconds_broker_up_to_spool_empty": round(drain, 1),
        "commands_after_broker_appeared": len(results),
    }
