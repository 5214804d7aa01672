"""Egress phase: preloaded send-message commands run by ``bridge egress`` against the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bridge.contract.records import Topics
from tests.bench.bodies import CHANNEL
from tests.bench.harness import (
    PARTITIONS,
    SIM_KEY,
    Ctx,
    HarnessError,
    cpu_seconds,
    create_topics,
    peak_rss_mb,
    profile,
    wait_http,
)
from tests.integration.procs import BridgeProcess, free_port


def command_id(prefix: str, conversation: int, seq: int) -> str:
    return f"{prefix}-c{conversation}-{seq}"


async def preload(ctx: Ctx, topics: Topics) -> None:
    cfg = ctx.cfg
    producer = AIOKafkaProducer(
        bootstrap_servers=ctx.bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    per = max(1, cfg.commands // cfg.conversations)
    try:
        futures = []
        for seq in range(per):
            for conv in range(cfg.conversations):
                contact = f"316{30000000 + conv:08d}@whatsapp.eazy.im"
                cmd = {
                    "id": command_id(topics.prefix, conv, seq),
                    "channelJid": CHANNEL,
                    "contactJid": contact,
                    "message": {"type": "text", "body": f"Your order {conv}-{seq} has shipped"},
                }
                key = f"{CHANNEL}/{contact}".encode()
                fut = await producer.send(topics.send_message, orjson.dumps(cmd), key=key)
                futures.append(fut)
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


class ResultWatcher:
    """Reads the results topic from the beginning; notes when each new command id arrived."""

    def __init__(self, bootstrap: str, topic: str, expected: int) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.expected = expected
        self.ids: set[str] = set()
        self.records = 0
        self.statuses: dict[str, int] = {}
        self.out_of_order = 0
        self.first_at = 0.0
        self.last_at = 0.0
        self.first_ts = 0
        self.last_ts = 0
        self._last_seq: dict[str, int] = {}
        self.done = asyncio.Event()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            parts = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            while len(self.ids) < self.expected:
                batch = await consumer.getmany(timeout_ms=100, max_records=2000)
                now = time.perf_counter()
                for records in batch.values():
                    for rec in records:
                        self._one(rec, now)
            self.done.set()
        finally:
            await consumer.stop()

    def _one(self, rec: Any, now: float) -> None:
        self.records += 1
        data = orjson.loads(rec.value)["data"]
        cid = data["commandId"]
        status = data.get("status", "?")
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if cid in self.ids:
            return
        self.ids.add(cid)
        conv, _, seq = cid.rpartition("-")
        if self._last_seq.get(conv, -1) != int(seq) - 1:
            self.out_of_order += 1
        self._last_seq[conv] = int(seq)
        if not self.first_at:
            self.first_at, self.first_ts = now, rec.timestamp
        self.last_at, self.last_ts = now, rec.timestamp


async def egress_phase(
    ctx: Ctx, sim_url: str, sim_pid: int, latency_ms: float, label: str
) -> dict[str, Any]:
    cfg = ctx.cfg
    topics = Topics(f"{ctx.prefix}-{label}")
    await create_topics(
        ctx.bootstrap,
        [
            topics.send_message,
            topics.update_conversation,
            topics.results,
            topics.commands_deadletter,
        ],
    )
    ctx.say(
        f"egress {label}: preloading {cfg.commands} commands, {cfg.conversations} conversations"
    )
    await preload(ctx, topics)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sim_url}/_sim/faults", json={"latencyMs": latency_ms}) as resp:
            if resp.status >= 300:
                raise HarnessError(f"simulator faults: {resp.status} {await resp.text()}")
        async with http.delete(f"{sim_url}/_sim/requests"):
            pass
    per = max(1, cfg.commands // cfg.conversations)
    expected = per * cfg.conversations
    watcher = ResultWatcher(ctx.bootstrap, topics.results, expected)
    watch = asyncio.create_task(watcher.run())
    egress = ctx.procs.make(
        "egress",
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS=ctx.bootstrap,
        BRIDGE_TOPIC_PREFIX=topics.prefix,
        BRIDGE_SPOTLER_API_URL=sim_url + "/v3",
        BRIDGE_SPOTLER_API_KEY=SIM_KEY,
        BRIDGE_EGRESS_GROUP_ID=f"{topics.prefix}-egress",
        BRIDGE_EGRESS_CONCURRENCY=str(cfg.concurrency),
        BRIDGE_EGRESS_RATE_LIMIT="0",
        BRIDGE_EGRESS_CHANNEL_RATE_LIMIT="0",
        **cfg.bridge_env,
    )
    spawned = time.perf_counter()
    await egress.start()
    try:
        await _wait_ready_fast(egress)
        ready = time.perf_counter()
        assert egress.proc is not None
        pid = egress.proc.pid
        cpu0, sim_cpu0 = cpu_seconds(pid), cpu_seconds(sim_pid)
        ctx.say(f"egress {label}: ready after {ready - spawned:.1f}s (pid {pid}); running")
        spy = None
        if label == "nolatency":
            spy = await profile(ctx, pid, 8, "egress-nolatency")
        try:
            await asyncio.wait_for(watcher.done.wait(), cfg.egress_timeout_s)
        except TimeoutError:
            raise HarnessError(
                f"egress {label}: only {len(watcher.ids)} of {expected} results "
                f"after {cfg.egress_timeout_s}s"
            ) from None
        cpu, sim_cpu = cpu_seconds(pid) - cpu0, cpu_seconds(sim_pid) - sim_cpu0
        busy = watcher.last_at - ready
        if spy is not None:
            await spy
        rss = peak_rss_mb(pid)
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        code = await egress.stop()
    window = watcher.last_at - ready
    steady = (watcher.last_ts - watcher.first_ts) / 1000.0
    bound = cfg.concurrency / (latency_ms / 1000.0) if latency_ms else None
    rate = expected / window
    ctx.say(f"egress {label}: {expected} commands in {window:.2f}s = {rate:.0f}/s")
    return {
        "latency_ms": latency_ms,
        "commands": expected,
        "conversations": cfg.conversations,
        "concurrency": cfg.concurrency,
        "seconds_from_ready": round(window, 3),
        "seconds_from_spawn": round(watcher.last_at - spawned, 3),
        "commands_per_s": round(rate, 1),
        "commands_per_s_first_to_last_result": round((expected - 1) / steady, 1)
        if steady > 0
        else None,
        "bound_concurrency_over_latency": round(bound, 1) if bound else None,
        # How long each command held its concurrency slot on average (API call + result ack).
        "slot_ms_per_command": round(1000 * cfg.concurrency * window / expected, 1),
        "results": {
            "records": watcher.records,
            "unique_commands": len(watcher.ids),
            "statuses": watcher.statuses,
            "out_of_order": watcher.out_of_order,
        },
        "egress_cpu_pct": round(100 * cpu / busy, 1),
        "simulator_cpu_pct": round(100 * sim_cpu / busy, 1),
        "egress_cpu_us_per_command": round(1e6 * cpu / expected, 1),
        "rss_mb": rss,
        "exit_code": code,
    }


async def _wait_ready_fast(proc: BridgeProcess, timeout: float = 60.0) -> None:
    assert proc.proc is not None
    await wait_http(proc.ops_url + "/readyz", proc.proc, timeout)


async def egress(ctx: Ctx) -> dict[str, Any]:
    port = free_port()
    sim_proc = ctx.procs.make(
        "simulator",
        SIMULATOR_PORT=str(port),
        SIMULATOR_API_KEYS=SIM_KEY,
        SIMULATOR_RECEIPT_DELAY="3600",  # and no webhook URL: no receipts are sent anywhere
        BRIDGE_LOG_LEVEL="warning",
    )
    await sim_proc.start()
    assert sim_proc.proc is not None
    sim_url = f"http://127.0.0.1:{port}"
    await wait_http(sim_url + "/_sim/faults", sim_proc.proc)
    ctx.say(f"simulator ready (pid {sim_proc.proc.pid}, port {port})")
    try:
        pid = sim_proc.proc.pid
        fast = await egress_phase(ctx, sim_url, pid, 0.0, "nolatency")
        slow = await egress_phase(ctx, sim_url, pid, ctx.cfg.latency_ms, "latency")
    finally:
        await sim_proc.stop()
    return {"no_latency": fast, "with_latency": slow}


# ---------------------------------------------------------------- verdicts, output
