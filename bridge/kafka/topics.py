"""``bridge topics ensure``: the bridge's topics, created once with settings that fit.

Owns the Kafka admin side of a deployment: which topics the bridge uses (:func:`wanted`), the
settings each needs (``BRIDGE_TOPIC_PARTITIONS``, ``BRIDGE_TOPIC_REPLICATION``, a
``max.message.bytes`` that fits the body limit and a ``min.insync.replicas`` that makes
``acks=all`` mean more than one copy: README.md, "Topics and records"), creating the missing
ones and reporting the existing ones that fall short. It never changes or deletes an
existing topic: too few partitions or too small a replication are an operator's decision
(more partitions move keys to other partitions, so conversations would lose their order).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from bridge.contract.records import Topics
from bridge.core.config import Settings
from bridge.kafka.connect import client_options

#: Headroom beyond twice the body: the CloudEvent envelope, the normalized data, headers.
RECORD_OVERHEAD = 64 * 1024


def min_insync(replication: int) -> int | None:
    """``min.insync.replicas`` for a topic with ``replication`` copies: 2 once there are 2 or
    more (an acknowledged record is then on at least two brokers, and one broker may be down
    without stopping writes), None (the broker's default, 1) for a single copy."""
    return min(2, replication) if replication > 1 else None


def record_limit(max_body_bytes: int) -> int:
    """``max.message.bytes`` a topic carrying a body needs: 2 x the body limit + 64 KiB."""
    return 2 * max_body_bytes + RECORD_OVERHEAD


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic as the bridge wants it; ``max_message_bytes`` and ``min_insync`` None leave the
    broker's default."""

    name: str
    partitions: int
    replication: int
    max_message_bytes: int | None
    min_insync: int | None = None
    configs: tuple[tuple[str, str], ...] = ()  # further topic configs, e.g. cleanup.policy


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report: ``action`` is create, ok, short or error."""

    topic: str
    action: str
    detail: str

    def line(self) -> str:
        return f"{self.action:<7} {self.topic}  {self.detail}".rstrip()


def wanted(settings: Settings) -> list[TopicSpec]:
    """Every topic the bridge reads or writes, with the settings it should have.

    Event topics, results and the command dead letters carry a body (webhook or command) plus an
    envelope, so they get :func:`record_limit`; the command topics keep the broker's limit, which
    is what their producers (other services) were written against.
    """
    topics = Topics(settings.kafka.topic_prefix)
    p = settings.platform
    large = record_limit(settings.ingress.max_body_bytes)
    carrying = [*topics.all_event_topics(), topics.results, topics.commands_deadletter]
    commands = [topics.send_message, topics.update_conversation]
    rf, insync = p.topic_replication, min_insync(p.topic_replication)
    specs = [TopicSpec(n, p.topic_partitions, rf, large, insync) for n in carrying]
    specs += [TopicSpec(n, p.topic_partitions, rf, None, insync) for n in commands]
    # Delivery status (docs/status.md): the send log keeps a day more than the status window;
    # the status topic is compacted (latest record per command = its state).
    keep = str(int((settings.status.window + 86400) * 1000))
    specs.append(
        TopicSpec(topics.sent, p.topic_partitions, rf, None, insync,
                  (("cleanup.policy", "delete"), ("retention.ms", keep)))
    )  # fmt: skip
    specs.append(
        TopicSpec(topics.status, p.topic_partitions, rf, None, insync,
                  (("cleanup.policy", "compact"),))
    )  # fmt: skip
    return specs


def admin_client(settings: Settings, timeout_ms: int = 10_000) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(request_timeout_ms=timeout_ms, **client_options(settings.kafka))


async def inspect(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> list[Finding]:
    """Compare ``specs`` with the cluster: create (missing), ok, or short (and what falls short)."""
    existing = set(await admin.list_topics())
    present = [s.name for s in specs if s.name in existing]
    # an empty list would ask for every topic of the cluster
    metadata = await admin.describe_topics(present) if present else []
    described = {t["topic"]: t for t in metadata}
    configs = await _configs(admin, present)
    findings = []
    for spec in specs:
        if spec.name not in existing:
            findings.append(Finding(spec.name, "create", _describe(spec)))
            continue
        parts = described.get(spec.name, {}).get("partitions", [])
        replication = min((len(p["replicas"]) for p in parts), default=0)
        short = []
        if len(parts) < spec.partitions:
            short.append(f"partitions {len(parts)} < {spec.partitions}")
        if replication < spec.replication:
            short.append(f"replication {replication} < {spec.replication}")
        limit = configs.get(spec.name, {}).get("max.message.bytes")
        if spec.max_message_bytes and limit is not None and limit < spec.max_message_bytes:
            short.append(f"max.message.bytes {limit} < {spec.max_message_bytes}")
        insync = configs.get(spec.name, {}).get("min.insync.replicas")
        if spec.min_insync and insync is not None and insync < spec.min_insync:
            short.append(f"min.insync.replicas {insync} < {spec.min_insync}")
        have = (
            f"partitions {len(parts)}, replication {replication}, max.message.bytes {limit}, "
            f"min.insync.replicas {insync}"
        )
        findings.append(Finding(spec.name, "short" if short else "ok", "; ".join(short) or have))
    return findings


async def _configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, int]]:
    """``{topic: {"max.message.bytes": n, "min.insync.replicas": n}}`` as the brokers have
    them (the topic's own value, or the broker default it inherits)."""
    if not names:
        return {}
    wanted_config = {"max.message.bytes": None, "min.insync.replicas": None}
    resources = [ConfigResource(ConfigResourceType.TOPIC, n, wanted_config) for n in names]
    found: dict[str, dict[str, int]] = {n: {} for n in names}
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            for entry in resource["config_entries"]:
                if entry["config_names"] in wanted_config and entry["config_value"]:
                    value = int(entry["config_value"])
                    found[resource["resource_name"]][entry["config_names"]] = value
    return found


def _describe(spec: TopicSpec) -> str:
    limit = spec.max_message_bytes or "broker default"
    insync = spec.min_insync or "broker default"
    extra = "".join(f", {name} {value}" for name, value in spec.configs if name != "retention.ms")
    return (
        f"partitions {spec.partitions}, replication {spec.replication}, max.message.bytes {limit}"
        f"{extra}, min.insync.replicas {insync}"
    )


async def create(admin: AIOKafkaAdminClient, specs: Iterable[TopicSpec]) -> list[Finding]:
    """Create ``specs``; a topic someone else created meanwhile counts as created."""
    findings = []
    for spec in specs:
        configs: dict[str, Any] = {}
        if spec.max_message_bytes:
            configs["max.message.bytes"] = str(spec.max_message_bytes)
        if spec.min_insync:
            configs["min.insync.replicas"] = str(spec.min_insync)
        configs.update(spec.configs)
        topic = NewTopic(spec.name, spec.partitions, spec.replication, topic_configs=configs)
        try:
            response = await admin.create_topics([topic])
        except TopicAlreadyExistsError:
            findings.append(Finding(spec.name, "exists", "created meanwhile by someone else"))
            continue
        except KafkaError as exc:
            findings.append(Finding(spec.name, "error", f"{type(exc).__name__}: {exc}"))
            continue
        # (topic, error_code) in v0, (topic, error_code, error_message) from v1 on
        entry: tuple[Any, ...] = tuple(response.topic_errors[0]) if response.topic_errors else ()
        code = entry[1] if len(entry) > 1 else 0
        message = entry[2] if len(entry) > 2 else None
        if code == TopicAlreadyExistsError.errno:
            findings.append(Finding(spec.name, "exists", "created meanwhile by someone else"))
        elif code:
            findings.append(Finding(spec.name, "error", f"error {code}: {message}"))
        else:
            findings.append(Finding(spec.name, "created", _describe(spec)))
    return findings


async def ensure(settings: Settings, *, dry_run: bool, out: Any) -> int:
    """``bridge topics ensure``: print one line per topic; exit 1 on an error, else 0."""
    admin = admin_client(settings)
    try:
        await admin.start()
    except (KafkaError, OSError) as exc:
        await admin.close()
        print(f"error   kafka  {settings.kafka.bootstrap_servers}: {exc!r}", file=out)
        return 1
    try:
        findings = await inspect(admin, wanted(settings))
        missing = {f.topic for f in findings if f.action == "create"}
        specs = [s for s in wanted(settings) if s.name in missing]
        done = [] if dry_run else await create(admin, specs)
        if not dry_run and specs:
            await _wait_for_metadata(admin, [s.name for s in specs])
    except (KafkaError, OSError) as exc:
        print(f"error   kafka  {type(exc).__name__}: {exc}", file=out)
        return 1
    finally:
        await admin.close()
    by_topic = {f.topic: f for f in done}
    report = [by_topic.get(f.topic, f) for f in findings]
    for finding in report:
        print(finding.line(), file=out)
    short = sum(f.action == "short" for f in report)
    errors = sum(f.action == "error" for f in report)
    made = len(specs) if dry_run else sum(f.action == "created" for f in report)
    verb = "would create" if dry_run else "created"
    print(
        f"{len(report)} topics: {verb} {made}, {short} short of the wanted settings "
        f"(left unchanged), {errors} errors",
        file=out,
    )
    return 1 if errors else 0


async def _wait_for_metadata(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    """Wait (bounded) until the new topics have leaders, so a client started next finds them."""
    async with asyncio.timeout(30):
        while True:
            topics = await admin.describe_topics(names)
            if all(t["error_code"] == 0 and t["partitions"] for t in topics):
                return
            await asyncio.sleep(0.2)
