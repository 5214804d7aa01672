"""Ingress loads its channel list from the platform (GET /channels) and uses it; readiness never
waits on the platform's API (DESIGN.md, Ingress 6 and "bridge doctor")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.lifecycle_env import KEY_AB, A, simulator
from tests.integration.procs import BridgeProcess, consume, eventually, free_port, post

pytestmark = pytest.mark.kafka

CONTACT = "31611111111@whatsapp.eazy.im"
# A receipt shaped like the message it reports on (from the channel), with no direction.
RECEIPT = {
    "type": "receipt",
    "from": {"jid": A},
    "to": CONTACT,
    "message": {"id": "wamid-ch-1", "status": "delivered"},
}


async def test_channels_from_the_platform_decide_the_channel(kafka, prefix, procs) -> None:
    sim = await simulator(procs)
    ingress = procs.make(
        "ingress", BRIDGE_KAFKA_BOOTSTRAP_SERVERS=kafka, BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_WEBHOOK_TOKENS="tok-0123456789abcdef", BRIDGE_SPOTLER_API_URL=sim.api_url,
        BRIDGE_SPOTLER_API_KEY=KEY_AB,
    )  # fmt: skip
    await ingress.start()
    await ingress.wait_ready()

    async def loaded() -> bool:
        return "ingress.channels_loaded" in ingress.logs()

    await eventually(loaded, what="channel list loaded")
    status, _ = await post(ingress.url + "/webhooks", orjson.dumps(RECEIPT))
    assert status == 200
    (record,) = await consume(kafka, [f"{prefix}.events.receipt"], count=1)
    assert record.key == f"{A}/{CONTACT}".encode()


async def test_an_unreachable_api_leaves_ingress_ready_and_logs_once(kafka, prefix, procs) -> None:
    ingress = procs.make(
        "ingress", BRIDGE_KAFKA_BOOTSTRAP_SERVERS=kafka, BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_WEBHOOK_TOKENS="tok-0123456789abcdef",
        BRIDGE_SPOTLER_API_URL=f"http://127.0.0.1:{free_port()}/v3",
        BRIDGE_SPOTLER_API_KEY=KEY_AB,
    )  # fmt: skip
    await ingress.start()
    await ingress.wait_ready()

    async def failed() -> bool:
        return "ingress.channels_refresh_failed" in ingress.logs()

    await eventually(failed, what="refresh failure logged")
    status, _ = await post(ingress.url + "/webhooks", orjson.dumps(RECEIPT))
    assert status == 200
    assert ingress.logs().count("ingress.channels_refresh_failed") == 1
    assert await sample(ingress, REFRESHES, outcome="unreachable") >= 1  # issue 25 item 3


async def sample(process: BridgeProcess, name: str, **labels: str) -> float:
    """One sample of ``process``'s /metrics, parsed as Prometheus parses a scrape."""
    for family in text_string_to_metric_families(await process.metrics()):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    raise AssertionError(f"{name}{labels} not exported")


REFRESHES = "spotler_bridge_channel_list_refreshes_total"
AGE = "spotler_bridge_channel_list_age_seconds"
INTERVAL = "spotler_bridge_channel_list_refresh_interval_seconds"


async def test_a_failing_refresh_shows_in_metrics_until_it_recovers(kafka, prefix, procs) -> None:
    """Issue 25 item 3: GET /channels failing (auth error, 5xx, timeout) counts each refresh by
    outcome; the age of the last good list grows past 3 refresh intervals (the alert's
    condition) while the last list is kept; recovery counts ``ok`` and the age drops."""
    sim = await simulator(procs)
    await sim.faults(errorRate=1.0, errorStatus=401, endpoints=["read_channels"])
    ingress = procs.make(
        "ingress", BRIDGE_KAFKA_BOOTSTRAP_SERVERS=kafka, BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_WEBHOOK_TOKENS="tok-0123456789abcdef", BRIDGE_SPOTLER_API_URL=sim.api_url,
        BRIDGE_SPOTLER_API_KEY=KEY_AB, BRIDGE_CHANNELS_REFRESH_SECONDS="1",
        BRIDGE_SPOTLER_API_TIMEOUT="0.5",
    )  # fmt: skip
    await ingress.start()
    await ingress.wait_ready()
    assert await sample(ingress, INTERVAL) == 1.0

    def counted(outcome: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return await sample(ingress, REFRESHES, outcome=outcome) >= 1

        return check

    await eventually(counted("unauthorized"), what="an auth failure counted")

    async def stale() -> bool:
        return await sample(ingress, AGE) > 3 * await sample(ingress, INTERVAL)

    await eventually(stale, what="the list older than 3 refresh intervals")
    assert await sample(ingress, REFRESHES, outcome="ok") == 0
    await sim.faults(errorRate=1.0, errorStatus=503, endpoints=["read_channels"])
    await eventually(counted("server_error"), what="a 5xx counted")
    await sim.faults(latencyMs=1500, endpoints=["read_channels"])
    await eventually(counted("timeout"), what="a timeout counted")
    await sim.faults()  # the platform recovers
    await eventually(counted("ok"), what="a good refresh counted")
    assert await sample(ingress, AGE) < 3 * await sample(ingress, INTERVAL)
    status, _ = await post(ingress.url + "/webhooks", orjson.dumps(RECEIPT))
    assert status == 200
    (record,) = await consume(kafka, [f"{prefix}.events.receipt"], count=1)
    assert record.key == f"{A}/{CONTACT}".encode()  # the recovered list decides the channel
