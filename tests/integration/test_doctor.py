"""``bridge doctor`` with everything right (exit 0), then with each check failing once.

The checks and what they need come from DESIGN.md ("bridge doctor") and issue 12: Kafka with the
configured security settings, the topics, the key and its scope (assistant for
update-conversation, the reference's "Scopes"), the channels, each channel's webhook, and the
public URL answering an unauthenticated POST with 401.
"""

from __future__ import annotations

import pytest

from tests.integration.lifecycle_env import (
    KEY_CHANNEL,
    NEW,
    OLD,
    A,
    C,
    add_hook,
    api,
    bridge,
    env,
    hooks,
    simulator,
)
from tests.integration.procs import free_port

pytestmark = pytest.mark.kafka


def lines(out: str, status: str) -> dict[str, str]:
    """``{check name: line}`` of the checks with ``status`` (ok or FAIL)."""
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == status:
            found[parts[1]] = line
    return found


async def test_doctor_passes_then_each_check_fails_once(kafka, prefix, procs) -> None:
    sim = await simulator(procs)
    ingress = procs.make(
        "ingress", BRIDGE_KAFKA_BOOTSTRAP_SERVERS=kafka, BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_WEBHOOK_TOKENS=NEW,
    )  # fmt: skip
    await ingress.start()
    await ingress.wait_ready()
    good = env(
        sim,
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS=kafka,
        BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_TOPIC_PARTITIONS="3",
        BRIDGE_TOPIC_REPLICATION="1",
        BRIDGE_PUBLIC_URL=ingress.url + "/webhooks",
        BRIDGE_CHANNELS=A,
    )
    code, out = await bridge("webhooks", "sync", env=good)
    assert code == 0, out
    code, out = await bridge("doctor", env=good)
    assert code == 0, out
    assert set(lines(out, "ok")) == {"kafka", "topics", "api", "channels", "webhooks", "public"}
    assert "0 failed" in out

    async def fails(check: str, advice: str, **change: str) -> None:
        code, out = await bridge("doctor", env={**good, **change})
        assert code == 1, out
        failed = lines(out, "FAIL")
        assert check in failed, out
        assert advice in out, out
        assert NEW not in out
        assert OLD not in out

    await fails(
        "kafka",
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS",
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
    )
    await fails("topics", "bridge topics ensure", BRIDGE_TOPIC_PREFIX=prefix + "x")
    await fails("topics", "max.message.bytes", BRIDGE_MAX_BODY_BYTES=str(4 * 1024 * 1024))
    await fails("api", "ASSISTANT scope", BRIDGE_SPOTLER_API_KEY=KEY_CHANNEL)
    await fails("api", "valid key", BRIDGE_SPOTLER_API_KEY="not-a-key-0000")
    await fails("channels", "BRIDGE_CHANNELS", BRIDGE_CHANNELS=f"{A},{C}")
    await fails("public", "answered", BRIDGE_PUBLIC_URL=sim.url + "/_sim/faults")
    await fails("public", "Ingress", BRIDGE_PUBLIC_URL=f"http://127.0.0.1:{free_port()}/webhooks")

    # the webhook drifts: an old token in its header
    (hook,) = await hooks(sim, A)
    await api(
        sim,
        "PATCH",
        f"/channels/{A}/webhooks/{hook['id']}",
        {"headers": {"Authorization": f"Bearer {OLD}"}},
    )
    await fails("webhooks", "bridge webhooks sync")
    # a second webhook of the bridge
    code, out = await bridge("webhooks", "sync", env=good)
    assert code == 0, out
    await add_hook(sim, A, url=ingress.url + "/webhooks/", events=["custom"])
    await fails("webhooks", "--prune")
    code, out = await bridge("webhooks", "sync", "--prune", env=good)
    assert code == 0, out

    code, out = await bridge("doctor", env=good)
    assert code == 0, out
