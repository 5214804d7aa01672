"""Ingress loads its channel list from the platform (GET /channels) and uses it; readiness never
waits on the platform's API (DESIGN.md, Ingress 6 and "bridge doctor")."""

from __future__ import annotations

import orjson
import pytest

from tests.integration.lifecycle_env import KEY_AB, A, simulator
from tests.integration.procs import consume, eventually, free_port, post

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
