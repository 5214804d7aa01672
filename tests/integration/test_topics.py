"""``bridge topics ensure`` against the real broker: creates, reports, never changes or deletes.

Expected settings come from README.md ("Topics and records": max.message.bytes >= 2 x
BRIDGE_MAX_BODY_BYTES + 64 KiB on the event topics) and DESIGN.md's topic table.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.integration.procs import free_port, post

pytestmark = pytest.mark.kafka

EVENT_TYPES = (
    "message", "echo", "receipt", "postback", "handover", "label", "note", "template_pack",
    "typing", "custom", "revoke", "unknown", "deadletter",
)  # fmt: skip
COMMAND_TOPICS = ("send-message", "update-conversation", "results", "deadletter", "sent", "status")


def all_topics(prefix: str) -> set[str]:
    events = {f"{prefix}.events.{t}" for t in EVENT_TYPES}
    return events | {f"{prefix}.commands.{t}" for t in COMMAND_TOPICS}


async def bridge(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def environment(kafka: str, prefix: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    return {
        **base,
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": kafka,
        "BRIDGE_TOPIC_PREFIX": prefix,
        "BRIDGE_TOPIC_PARTITIONS": "2",
        "BRIDGE_TOPIC_REPLICATION": "1",
        "BRIDGE_MAX_BODY_BYTES": "100000",
        **extra,
    }


async def describe(kafka: str, prefix: str) -> dict[str, dict[str, Any]]:
    """``{topic: {"partitions", "replication", "max.message.bytes"}}`` of the prefix's topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix + ".")]
        if not names:
            return {}
        found = {
            t["topic"]: {
                "partitions": len(t["partitions"]),
                "replication": min(len(p["replicas"]) for p in t["partitions"]),
            }
            for t in await admin.describe_topics(names)
        }
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        for response in await admin.describe_configs(resources):
            for res in response.to_object()["resources"]:
                for entry in res["config_entries"]:
                    if entry["config_names"] == "max.message.bytes":
                        found[res["resource_name"]]["max.message.bytes"] = int(
                            entry["config_value"]
                        )
                    if entry["config_names"] == "cleanup.policy":
                        found[res["resource_name"]]["cleanup.policy"] = entry["config_value"]
        return found
    finally:
        await admin.close()


async def test_dry_run_then_create_then_nothing_to_do(kafka, prefix) -> None:
    """Dry run creates nothing; ensure creates every topic as configured; a rerun is a no-op."""
    env = environment(kafka, prefix)
    code, out = await bridge("topics", "ensure", "--dry-run", env=env)
    assert code == 0, out
    assert "would create 19" in out
    assert await describe(kafka, prefix) == {}

    code, out = await bridge("topics", "ensure", env=env)
    assert code == 0, out
    topics = await describe(kafka, prefix)
    assert set(topics) == all_topics(prefix)
    body_limit = 2 * 100_000 + 64 * 1024  # README: 2 x BRIDGE_MAX_BODY_BYTES + 64 KiB
    for name, found in topics.items():
        assert (found["partitions"], found["replication"]) == (2, 1), name
        if ".events." in name:
            assert found["max.message.bytes"] == body_limit, name
    # DESIGN.md: P.commands.status is compacted; docs/status.md: the send log is not
    assert topics[f"{prefix}.commands.status"]["cleanup.policy"] == "compact"
    assert topics[f"{prefix}.commands.sent"]["cleanup.policy"] == "delete"
    code, out = await bridge("topics", "ensure", env=env)
    assert code == 0, out
    assert "created 0" in out
    assert "0 short" in out


async def test_existing_topic_that_falls_short_is_reported_and_left_alone(kafka, prefix) -> None:
    """Fewer partitions and a too small max.message.bytes are reported, never changed."""
    name = f"{prefix}.events.message"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, 1, 1, topic_configs={"max.message.bytes": "5000"})]
        )
    finally:
        await admin.close()
    code, out = await bridge("topics", "ensure", env=environment(kafka, prefix))
    assert code == 0, out
    line = next(x for x in out.splitlines() if name in x)
    assert line.startswith("short"), out
    assert "partitions 1 < 2" in line, out
    assert "max.message.bytes 5000 < 265536" in line, out
    found = (await describe(kafka, prefix))[name]
    assert found["partitions"] == 1
    assert found["max.message.bytes"] == 5000


async def test_errors_exit_non_zero(kafka, prefix) -> None:
    """A replication the cluster cannot give, and an unreachable broker, exit 1 with the cause."""
    code, out = await bridge(
        "topics", "ensure", env=environment(kafka, prefix, BRIDGE_TOPIC_REPLICATION="3")
    )
    assert code == 1, out
    assert "error" in out
    assert prefix in out
    code, out = await bridge(
        "topics", "ensure", env=environment(f"127.0.0.1:{free_port()}", prefix)
    )
    assert code == 1, out


async def test_first_start_after_ensure_logs_no_missing_topic(kafka, prefix, procs) -> None:
    """With the topics ensured first (as procs does), a first delivery logs no topic errors."""
    bridge_proc = procs.make(
        "ingress",
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS=kafka,
        BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_WEBHOOK_TOKENS="tok-0123456789abcdef",
    )
    await bridge_proc.start()
    await bridge_proc.wait_ready()
    body = b'{"type": "message", "message": {"id": "m1", "type": "text", "body": "hi"}}'
    status, _ = await post(bridge_proc.url + "/webhooks", body)
    assert status == 200
    assert set(await describe(kafka, prefix)) == all_topics(prefix)
    logs = bridge_proc.logs()
    assert "not found in cluster metadata" not in logs
    assert "UnknownTopicOrPartition" not in logs


async def test_min_insync_replicas_below_two_is_short_once_replication_is_two(
    kafka, prefix
) -> None:
    """Issue 26, item 11, on the single test broker (a dry run: replication 2 cannot be
    created here; tests/faults/test_cluster.py creates with replication 3): with replication
    2 or more ensure wants min.insync.replicas 2 on every topic, and an existing topic with
    less is reported short."""
    name = f"{prefix}.events.message"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, 2, 1, topic_configs={"min.insync.replicas": "1"})]
        )
    finally:
        await admin.close()
    env = environment(kafka, prefix, BRIDGE_TOPIC_REPLICATION="2")
    code, out = await bridge("topics", "ensure", "--dry-run", env=env)
    assert code == 0, out
    line = next(x for x in out.splitlines() if name in x)
    assert line.startswith("short"), out
    assert "min.insync.replicas 1 < 2" in line, out
    creates = [x for x in out.splitlines() if x.startswith("create")]
    assert len(creates) == len(all_topics(prefix)) - 1, out
    assert all(x.endswith("min.insync.replicas 2") for x in creates), out
