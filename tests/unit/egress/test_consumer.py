"""CommandConsumer without a broker: its real dispatch, chains, trackers and runner, with a fake
of the one thing a unit test cannot have (the Kafka consumer: assignment, pause, commit).

Expectations from DESIGN.md, "Egress": commands of one conversation run strictly in order;
offsets are committed only past finished commands; shutdown finishes or leaves work for the next
consumer. Issue 26: a command whose predecessor did not finish must not run (3); revoked
partitions' commands never call the platform after the revocation returns (4); waits at the
breaker honour stop (7); the tracker behind a stuck head is bounded (8); lag series of revoked
partitions go away (9).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from prometheus_client import CollectorRegistry

from bridge.api.client import SpotlerClient
from bridge.core.config import Settings
from bridge.core.errors import ApiError
from bridge.egress.consumer import CommandConsumer
from bridge.egress.policy import CircuitState
from bridge.telemetry.metrics import Metrics
from tests.fakes import FakeApi, InMemoryPublisher

CHANNEL = "31612345678@whatsapp.eazy.im"
PREFIX = "t"
TOPIC = f"{PREFIX}.commands.send-message"
TP0 = TopicPartition(TOPIC, 0)
TP1 = TopicPartition(TOPIC, 1)


class FakeKafkaConsumer:
    """Stands in for AIOKafkaConsumer: records pauses, resumes and commits."""

    def __init__(self, assignment: set[TopicPartition]) -> None:
        self._assignment = set(assignment)
        self._paused: set[TopicPartition] = set()
        self.commits: list[dict[TopicPartition, OffsetAndMetadata]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self._assignment)

    def assign(self, tps: set[TopicPartition]) -> None:
        """A rebalance's outcome: pauses of partitions given away are gone with them."""
        self._assignment = set(tps)
        self._paused &= self._assignment

    def pause(self, *tps: TopicPartition) -> None:
        self._paused |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self._paused -= set(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self.commits.append(dict(offsets))

    def committed_offset(self, tp: TopicPartition) -> int | None:
        found = [c[tp].offset for c in self.commits if tp in c]
        return found[-1] if found else None


def unavailable() -> ApiError:
    return ApiError(503, 1004, "unavailable")


class Egress:
    def __init__(
        self, api: FakeApi, *, window: int | None = None, env: dict[str, str] | None = None
    ) -> None:
        egress = env or {}
        env = {
            "BRIDGE_TOPIC_PREFIX": PREFIX,
            "BRIDGE_SPOTLER_API_KEY": "k",
            "BRIDGE_EGRESS_RATE_LIMIT": "0",
            "BRIDGE_EGRESS_CHANNEL_RATE_LIMIT": "0",
            "BRIDGE_EGRESS_BACKOFF_BASE": "60",
            "BRIDGE_EGRESS_BACKOFF_MAX": "60",
            "BRIDGE_CIRCUIT_FAILURES": "1000",
            **egress,
        }
        self.api = api
        self.metrics = Metrics(CollectorRegistry())
        self.publisher = InMemoryPublisher()
        extra: dict[str, Any] = {} if window is None else {"window": window}
        self.consumer = CommandConsumer(
            Settings.from_env(env), self.metrics, self.publisher, cast(SpotlerClient, api), **extra
        )
        self.kafka = FakeKafkaConsumer({TP0, TP1})
        self.consumer._consumer = self.kafka
        self.offsets = {TP0: 0, TP1: 0}

    def take(self, tp: TopicPartition, command_id: str, contact: str) -> None:
        value = orjson.dumps(
            {
                "id": command_id,
                "channelJid": CHANNEL,
                "contactJid": contact,
                "message": {"type": "text", "body": command_id},
            }
        )
        offset = self.offsets[tp]
        self.offsets[tp] += 1
        key = f"{CHANNEL}/{contact}".encode()
        now = int(time.time() * 1000)
        record = ConsumerRecord(
            tp.topic, tp.partition, offset, now, 0, key, value, None, len(key), len(value), []
        )
        self.consumer._dispatch(tp, record)

    def sent(self) -> list[str]:
        return [call[4] for call in self.api.calls]

    def result_ids(self) -> list[str]:
        return [
            orjson.loads(r.value)["data"]["commandId"]
            for r in self.publisher.records
            if r.topic == f"{PREFIX}.commands.results"
        ]


def contact(n: int) -> str:
    return f"316{n:08d}@whatsapp.eazy.im"


async def settle() -> None:
    """Let new tasks run up to their first wait (loop turns, not time)."""
    for _ in range(20):
        await asyncio.sleep(0)


def waiting_at_breaker(e: Egress) -> bool:
    """A command waits for the open breaker to let a probe through."""
    return bool(e.consumer._runner.breaker._closed._waiters)


def retried(e: Egress) -> float:
    """Retries counted: a command that failed is in its backoff."""
    return (
        e.metrics.registry.get_sample_value(
            "spotler_bridge_command_retries_total", {"command": "send-message"}
        )
        or 0.0
    )


async def until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polls plain state under a deadline
            await asyncio.sleep(0.005)


async def test_stop_never_sends_a_command_after_its_aborted_predecessor() -> None:
    """Issue 26 (3): c1 is aborted in its backoff by stop; c2 of the same conversation must not
    be sent (it is redelivered after c1), and neither is committed."""
    api = FakeApi(unavailable(), default=lambda: {"id": "m"})
    e = Egress(api)
    e.take(TP0, "c1", contact(1))
    e.take(TP0, "c2", contact(1))
    await until(lambda: retried(e) == 1)  # c1 failed once and is in its 60 s backoff
    await e.consumer.stop()
    async with asyncio.timeout(5):
        await e.consumer._drain()
    assert e.sent() == ["c1"]
    assert e.result_ids() == []
    assert e.kafka.committed_offset(TP0) is None


async def test_other_conversations_still_finish_on_stop() -> None:
    """Stop aborts only what waits: a command of another conversation in its call finishes."""
    gate = asyncio.Event()

    class SlowApi(FakeApi):
        async def send_message(
            self, channel: str, contact: str, body: Any, *, request_id: str
        ) -> dict[str, Any]:
            if request_id == "other":
                self.calls.append(("send", channel, contact, body, request_id))
                await gate.wait()
                return {"id": "m"}
            return await super().send_message(channel, contact, body, request_id=request_id)

    api = SlowApi(unavailable())
    e = Egress(api)
    e.take(TP0, "c1", contact(1))
    e.take(TP1, "other", contact(2))
    await until(lambda: len(api.calls) == 2)
    await e.consumer.stop()
    gate.set()
    async with asyncio.timeout(5):
        await e.consumer._drain()
    assert e.result_ids() == ["other"]
    assert e.kafka.committed_offset(TP1) == 1


@pytest.mark.parametrize(
    "wait",
    ["backoff", "retry-after", "breaker", "rate-limit", "predecessor"],
)
async def test_revoked_partition_commands_never_call_after_revocation(wait: str) -> None:
    """Issue 26 (4): on_revoked returns only when no command of a revoked partition can still
    call the platform, whatever it waits in; and it does not wait out the wait."""
    overrides: dict[str, str] = {}
    if wait == "retry-after":
        api = FakeApi(ApiError(503, 1004, "busy", retry_after=60))
    elif wait == "breaker":
        overrides = {"BRIDGE_CIRCUIT_FAILURES": "1", "BRIDGE_CIRCUIT_OPEN_SECONDS": "20"}
        api = FakeApi(unavailable())
    elif wait == "rate-limit":  # a 429 pauses the global bucket for 60 s
        api = FakeApi(ApiError(429, 1003, "slow down", retry_after=60))
    else:
        api = FakeApi(unavailable())
    e = Egress(api, env=overrides)
    e.take(TP0, "c1", contact(1))
    if wait == "breaker":
        await until(lambda: len(api.calls) == 1)
        e.take(TP0, "c2", contact(2))  # another conversation: waits at the open breaker
        await until(lambda: waiting_at_breaker(e))
    else:
        if wait == "predecessor":
            e.take(TP0, "c2", contact(1))  # waits for c1 of its conversation
        await until(lambda: retried(e) == 1)  # c1 is in its backoff
        if wait == "rate-limit":
            e.take(TP0, "c2", contact(2))  # another conversation: waits in the rate limiter
            await settle()
    started = time.monotonic()
    await e.consumer.on_revoked({TP0})
    assert time.monotonic() - started < 5.0
    calls = len(api.calls)
    assert all(t.done() for t in list(e.consumer._tasks))  # nothing left that could call
    assert calls == 1
    assert e.result_ids() == []
    assert e.kafka.committed_offset(TP0) is None


async def test_revocation_leaves_other_partitions_running() -> None:
    """Only the revoked partitions' commands are interrupted."""
    api = FakeApi(unavailable(), unavailable(), default=lambda: {"id": "m"})
    fast = {"BRIDGE_EGRESS_BACKOFF_BASE": "0.01", "BRIDGE_EGRESS_BACKOFF_MAX": "0.01"}
    e = Egress(api, env=fast)
    e.take(TP1, "kept", contact(2))
    await e.consumer.on_revoked({TP0})
    await until(lambda: e.result_ids() == ["kept"])


async def test_stop_interrupts_a_wait_at_the_open_breaker() -> None:
    """Issue 26 (7): with the breaker open for 20 s, stop ends the drain at once, and what
    finished meanwhile is committed."""
    api = FakeApi(unavailable(), default=lambda: {"id": "m"})
    e = Egress(api, env={"BRIDGE_CIRCUIT_FAILURES": "1", "BRIDGE_CIRCUIT_OPEN_SECONDS": "20"})
    e.take(TP0, "c1", contact(1))
    await until(lambda: len(api.calls) == 1)  # the breaker is open now
    e.take(TP0, "c2", contact(2))
    await until(lambda: waiting_at_breaker(e))
    started = time.monotonic()
    await e.consumer.stop()
    async with asyncio.timeout(5):
        await e.consumer._drain()
    assert time.monotonic() - started < 2.0
    assert e.sent() == ["c1"]


async def test_commits_go_on_while_stop_drains() -> None:
    """Issue 26 (7): what finishes while a slow call holds the drain is committed at once, so
    a hard exit at the deadline does not send it again."""
    gate = asyncio.Event()

    class SlowApi(FakeApi):
        async def send_message(
            self, channel: str, contact: str, body: Any, *, request_id: str
        ) -> dict[str, Any]:
            self.calls.append(("send", channel, contact, body, request_id))
            if request_id == "slow":
                await gate.wait()
            return {"id": "m"}

    api = SlowApi()
    e = Egress(api)
    e.take(TP1, "slow", contact(1))
    await until(lambda: len(api.calls) == 1)
    e.take(TP0, "fast", contact(2))
    await until(lambda: e.result_ids() == ["fast"])
    await e.consumer.stop()
    commits = asyncio.create_task(e.consumer._commit_loop())
    drain = asyncio.create_task(e.consumer._drain(commits))
    await until(lambda: e.kafka.committed_offset(TP0) == 1)
    assert not drain.done()
    gate.set()
    async with asyncio.timeout(5):
        await drain
    assert e.kafka.committed_offset(TP1) == 1
    assert commits.done()


async def test_lag_series_of_revoked_partitions_are_removed() -> None:
    """Issue 26 (9): a revoked partition's lag is another pod's to report."""
    e = Egress(FakeApi())
    e.metrics.consumer_lag.labels(TOPIC, "0").set(5)
    e.metrics.consumer_lag.labels(TOPIC, "1").set(7)
    await e.consumer.on_revoked({TP0})
    samples = {
        s.labels["partition"]: s.value
        for m in e.metrics.registry.collect()
        if m.name == "spotler_bridge_consumer_lag"
        for s in m.samples
    }
    assert samples == {"1": 7}


async def test_a_stuck_head_pauses_its_partition_when_the_window_is_full() -> None:
    """Issue 26 (8): behind a command that does not finish, at most ``window`` records are
    tracked: the partition is paused then, and resumed once the head finishes."""
    release = asyncio.Event()

    class StuckApi(FakeApi):
        async def send_message(
            self, channel: str, contact: str, body: Any, *, request_id: str
        ) -> dict[str, Any]:
            if request_id == "head":
                await release.wait()
            return await super().send_message(channel, contact, body, request_id=request_id)

    api = StuckApi()
    e = Egress(api, window=10)
    e.take(TP0, "head", contact(0))
    for i in range(1, 10):
        e.take(TP0, f"c{i}", contact(i))
    assert TP0 in e.kafka.paused()  # the window behind "head" is full
    assert TP1 not in e.kafka.paused()
    await until(lambda: len(e.result_ids()) == 9)
    await e.consumer._commit()
    assert TP0 in e.kafka.paused()  # nothing committed: still full
    assert e.consumer._trackers[TP0].pending == 10
    assert (
        e.metrics.registry.get_sample_value(
            "spotler_bridge_commands_uncommitted", {"topic": TOPIC, "partition": "0"}
        )
        == 10
    )
    release.set()
    await until(lambda: len(e.result_ids()) == 10)
    await e.consumer._commit()
    assert TP0 not in e.kafka.paused()
    assert e.kafka.committed_offset(TP0) == 10
    assert (
        e.metrics.registry.get_sample_value(
            "spotler_bridge_commands_uncommitted", {"topic": TOPIC, "partition": "0"}
        )
        == 0
    )


async def test_an_open_breaker_with_nothing_in_flight_lets_a_record_in_to_probe() -> None:
    """A revocation aborts the commands that would probe the open breaker: the partitions kept
    must not stay paused with nothing left to probe (found by the rebalance fault test)."""
    api = FakeApi(unavailable(), default=lambda: {"id": "m"})
    e = Egress(api, env={"BRIDGE_CIRCUIT_FAILURES": "1", "BRIDGE_CIRCUIT_OPEN_SECONDS": "0.2"})
    e.take(TP0, "c1", contact(1))
    await until(lambda: retried(e) == 1)
    e.consumer._on_circuit(e.consumer._runner.breaker.state)  # as the breaker reported it
    assert e.kafka.paused() == {TP0, TP1}  # open, and c1 will probe
    await e.consumer.on_revoked({TP0, TP1})
    e.kafka.assign({TP1})
    e.consumer.on_assigned({TP1})
    assert e.kafka.paused() == set()  # nothing in flight: a record may come in and probe
    e.take(TP1, "c2", contact(2))
    assert e.kafka.paused() == {TP1}  # c2 probes; the rest waits
    await until(lambda: e.result_ids() == ["c2"])
    assert e.consumer._runner.breaker.state is CircuitState.CLOSED
    assert e.kafka.paused() == set()


class GatedApi(FakeApi):
    """Answers "slow" only once ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def send_message(
        self, channel: str, contact: str, body: Any, *, request_id: str
    ) -> dict[str, Any]:
        self.calls.append(("send", channel, contact, body, request_id))
        if request_id == "slow":
            await self.gate.wait()
        return {"id": "m"}


async def test_a_call_in_progress_at_revocation_finishes_and_is_committed() -> None:
    api = GatedApi()
    e = Egress(api)
    e.take(TP0, "slow", contact(1))
    await until(lambda: len(api.calls) == 1)
    revoking = asyncio.create_task(e.consumer.on_revoked({TP0}))
    await settle()
    assert not revoking.done()  # it waits for the call in progress
    api.gate.set()
    async with asyncio.timeout(5):
        await revoking
    assert e.result_ids() == ["slow"]
    assert e.kafka.committed_offset(TP0) == 1


async def test_a_call_still_running_after_the_grace_is_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The revocation is bounded (the group's rebalance timeout is 10 s): what still runs
    after the grace is cancelled, stays uncommitted, and is the new owner's to send."""
    monkeypatch.setattr("bridge.egress.consumer.REVOKE_GRACE", 0.2)
    api = GatedApi()
    e = Egress(api)
    e.take(TP0, "slow", contact(1))
    await until(lambda: len(api.calls) == 1)
    async with asyncio.timeout(5):
        await e.consumer.on_revoked({TP0})
    assert all(t.done() for t in list(e.consumer._tasks))
    assert e.result_ids() == []
    assert e.kafka.committed_offset(TP0) is None
