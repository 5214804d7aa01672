"""Ingress phase: the bridge against two baselines, in alternated rounds of one run.

Servers: ``bare`` (aiohttp reads the body and answers 200, no Kafka; bare.py), ``naive`` (the
30-line aiohttp + aiokafka handler; naive.py) and ``bridge`` (``bridge ingress`` with its
defaults: authentication, normalization, dedup, metrics, logs at info (not per delivery), spool
armed). For each topic partition count asked for, every server gets a warm-up, then ``repeat``
rounds of wrk saturation at ``wrk_connections`` and ``repeat`` rounds at ``latency_connections``
(closed loop), the order rotated each round so that drift of the machine hits every server
alike; then the open-loop fixed rates (first partition count only). CPU per request is the
server process's user + system time (``/proc/<pid>/stat``) over the requests it answered. For
the servers that write to Kafka, each run checks that the topics' end offsets grew by at least
the 200s it got, and at the end every topic is read: the bridge's unique event ids, the naive
handler's records, each at least its acknowledged deliveries.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bridge.contract.records import Topics
from tests.bench.bodies import write_templates
from tests.bench.harness import (
    BENCH,
    TOKEN,
    Counters,
    Ctx,
    HarnessError,
    Offsets,
    buckets,
    count_records,
    cpu_seconds,
    create_topics,
    ensure_wrk,
    median,
    metric_sum,
    peak_rss_mb,
    profile,
    quantiles,
    run_tool,
    start_extra,
    stop_extra,
    wait_http,
)
from tests.integration.procs import BridgeProcess, free_port


async def _no_counters() -> dict[str, float]:
    return {}


async def _no_settle() -> int:
    return 0


@dataclass
class Server:
    """One server under load: where to send, whose CPU to read, where its records go."""

    name: str
    url: str
    pid: int
    topics: list[str]
    partitions: int
    counters: Counters = _no_counters
    settle: Callable[[], Awaitable[int]] = _no_settle
    acked: int = 0
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


async def wrk_run(
    ctx: Ctx, url: str, seconds: float, connections: int, tpl: Path, nonce: str
) -> dict[str, Any]:
    argv = [ensure_wrk(), f"-t{ctx.cfg.wrk_threads}", f"-c{connections}"]
    argv += [f"-d{int(seconds)}s", "--timeout", "10s", "-s", str(BENCH / "webhooks.lua")]
    argv += [url, "--", str(tpl), nonce, TOKEN]
    out = await run_tool(ctx, argv, seconds + 60)
    match = re.search(r"BENCH_JSON (\{.*\})", out)
    if not match:
        raise HarnessError(f"wrk printed no BENCH_JSON line:\n{out[-2000:]}")
    raw = orjson.loads(match.group(1))
    seconds_run = raw["duration_us"] / 1e6
    return {
        "connections": connections,
        "rps": round(raw["requests"] / seconds_run, 1),
        "requests": raw["requests"],
        "ok": raw["requests"] - raw["status"],
        "non_2xx": raw["status"],
        "socket_errors": raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
        "seconds": round(seconds_run, 2),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
    }


async def loadgen_run(ctx: Ctx, url: str, rate: int, tpl: Path, nonce: str) -> dict[str, Any]:
    cfg = ctx.cfg
    argv = [sys.executable, "-m", "tests.bench.loadgen", "--url", url, "--rate", str(rate)]
    argv += ["--duration", str(cfg.rate_s), "--warmup", str(cfg.rate_warmup_s)]
    argv += ["--templates", str(tpl), "--nonce", nonce, "--token", TOKEN]
    # At most 2 s of traffic outstanding: past that the server is overloaded (reported as such).
    argv += ["--client", cfg.client, "--max-outstanding", str(max(1000, 2 * rate))]
    out = await run_tool(ctx, argv, cfg.rate_s + cfg.rate_warmup_s + 90)
    result: dict[str, Any] = orjson.loads(out.strip().splitlines()[-1])
    return result


def bridge_counters(bridge: BridgeProcess) -> Counters:
    """How the bridge made deliveries durable, from its /metrics (deltas go in the results)."""

    async def read() -> dict[str, float]:
        text = await bridge.metrics()
        hook, pub = "spotler_bridge_webhooks_total", "spotler_bridge_publish_duration_seconds_count"
        return {
            "published": metric_sum(text, hook, outcome="published"),
            "spooled": metric_sum(text, hook, outcome="spooled"),
            "unavailable": metric_sum(text, hook, outcome="unavailable"),
            "publish_timeouts": metric_sum(text, pub, outcome="timeout"),
            "publish_errors": metric_sum(text, pub, outcome="error"),
            "spool_drained": metric_sum(text, "spotler_bridge_spool_drained_total"),
            **buckets(
                text, "spotler_bridge_webhook_request_duration_seconds", "handler", status="200"
            ),
            **buckets(text, "spotler_bridge_publish_duration_seconds", "publish", outcome="ok"),
        }

    return read


def bridge_settle(bridge: BridgeProcess, tpl: Path) -> Callable[[], Awaitable[int]]:
    """Before and after a run: Kafka connected (a delivery comes back "published"), the spool
    empty, so that no run measures the spool path and the records of the last one are in Kafka.
    Returns the number of acknowledged probe deliveries (they count as acknowledged)."""
    body = tpl.read_bytes().splitlines()[0]

    async def settle() -> int:
        sent = 0
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while True:
                probe = body.replace(b"@ID@", f"probe-{uuid.uuid4().hex}".encode())
                headers = {"Authorization": f"Bearer {TOKEN}"}
                async with http.post(bridge.url + "/webhooks", data=probe, headers=headers) as r:
                    answer = orjson.loads(await r.read()) if r.status == 200 else {}
                    sent += r.status == 200
                spooled = metric_sum(await bridge.metrics(), "spotler_bridge_spool_records")
                if answer.get("status") == "published" and spooled == 0:
                    return sent
                if time.monotonic() > deadline:
                    raise HarnessError(f"bridge not publishing to Kafka directly: {answer}")
                await asyncio.sleep(0.2)

    return settle


async def _delta(counters: Counters, before: dict[str, float]) -> dict[str, Any]:
    after = await counters()
    diff = {k: v - before.get(k, 0.0) for k, v in after.items()}
    out: dict[str, Any] = {k: int(v) for k, v in diff.items() if v and not k.startswith("hist:")}
    hist = quantiles({k: v for k, v in diff.items() if k.startswith("hist:")})
    if hist:
        out["histograms"] = hist
    return out


async def measured(
    ctx: Ctx, srv: Server, offsets: Offsets, go: Callable[[], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """One run of ``go`` against ``srv``: its CPU, its own counters, and Kafka's record count."""
    srv.acked += await srv.settle()
    kafka0 = await offsets.total(srv.topics, srv.partitions) if srv.topics else 0
    cpu0, wall0, before = cpu_seconds(srv.pid), time.perf_counter(), await srv.counters()
    res = await go()
    cpu, wall = cpu_seconds(srv.pid) - cpu0, time.perf_counter() - wall0
    res["server"] = await _delta(srv.counters, before)
    res["server_cpu_pct"] = round(100 * cpu / wall, 1)
    answered = res["requests"] if "requests" in res else sum(res["statuses"].values())
    res["server_cpu_us_per_request"] = round(1e6 * cpu / max(1, answered), 1)
    srv.acked += res["ok"]
    if srv.topics:
        probes = await srv.settle()  # the bridge's spool drained: its records are in Kafka
        srv.acked += probes
        added = await offsets.total(srv.topics, srv.partitions) - kafka0
        res["kafka_records_added"] = added
        res["kafka_has_every_200"] = added >= res["ok"] + probes
    return res


def _rotated(servers: list[Server], r: int) -> list[Server]:
    k = r % len(servers)
    return servers[k:] + servers[:k]


async def closed_rounds(
    ctx: Ctx, servers: list[Server], offsets: Offsets, tpl: Path, key: str, connections: int
) -> None:
    cfg = ctx.cfg
    for r in range(cfg.repeat):
        for srv in _rotated(servers, r):
            nonce = f"{uuid.uuid4().hex[:6]}{key}{r}"
            spy = None
            if key == "saturation" and r == 0 and srv.name != "bare":  # floor, naive, bridges
                seconds = max(1.0, cfg.saturation_s - 4)
                spy = await profile(ctx, srv.pid, seconds, f"{srv.name}-p{srv.partitions}")

            async def go(srv: Server = srv, nonce: str = nonce) -> dict[str, Any]:
                return await wrk_run(ctx, srv.url, cfg.saturation_s, connections, tpl, nonce)

            res = await measured(ctx, srv, offsets, go)
            if spy is not None:
                await spy
            srv.runs.setdefault(key, []).append(res)
            ctx.say(
                f"{srv.name} p{srv.partitions} -c{connections} round {r + 1}: {res['rps']:.0f}/s "
                f"p50 {res['p50_ms']:.1f} p99 {res['p99_ms']:.1f} ms, "
                f"{res['server_cpu_us_per_request']:.0f} us CPU/request {res['server'] or ''}"
            )


async def fixed_rates(ctx: Ctx, servers: list[Server], offsets: Offsets, tpl: Path) -> None:
    cfg = ctx.cfg
    for rate in cfg.rates:
        for srv in servers:
            nonce = f"{uuid.uuid4().hex[:6]}r{rate}"

            async def go(srv: Server = srv, nonce: str = nonce, rate: int = rate) -> dict[str, Any]:
                return await loadgen_run(ctx, srv.url, rate, tpl, nonce)

            res = await measured(ctx, srv, offsets, go)
            res["overloaded"] = bool(res["skipped"]) or (res["achieved_rps"] or 0) < 0.98 * rate
            srv.runs.setdefault(f"rate{rate}", []).append(res)
            ctx.say(
                f"{srv.name}: {rate}/s -> p50 {res['p50_ms']} p99 {res['p99_ms']} "
                f"p99.9 {res['p999_ms']} ms, achieved {res['achieved_rps']}/s"
            )


def summary(srv: Server) -> dict[str, Any]:
    """Medians over the rounds of each kind of run, and every run."""
    out: dict[str, Any] = {"acknowledged": srv.acked}
    for key, runs in srv.runs.items():
        if key.startswith("rate"):
            (run,) = runs
            out[key] = {k: run[k] for k in ("p50_ms", "p99_ms", "p999_ms", "achieved_rps")}
            out[key]["overloaded"] = run["overloaded"]
            continue
        out[key] = {
            "rps": median([x["rps"] for x in runs]),
            "p50_ms": median([x["p50_ms"] for x in runs]),
            "p99_ms": median([x["p99_ms"] for x in runs]),
            "cpu_us_per_request": median([x["server_cpu_us_per_request"] for x in runs]),
            "cpu_pct": median([x["server_cpu_pct"] for x in runs]),
        }
    out["kafka_has_every_200"] = all(
        x.get("kafka_has_every_200", True) for runs in srv.runs.values() for x in runs
    )
    out["runs"] = srv.runs
    return out


async def start_bare(ctx: Ctx) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    argv = [sys.executable, "-m", "tests.bench.bare", str(port)]
    proc = await start_extra(ctx, argv, ctx.tmp / "bare.log")
    await wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    return proc, f"http://127.0.0.1:{port}/webhooks"


async def start_floor(ctx: Ctx) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    argv = [sys.executable, "-m", "tests.bench.floor", str(port), TOKEN]
    proc = await start_extra(ctx, argv, ctx.tmp / "floor.log")
    await wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    return proc, f"http://127.0.0.1:{port}/webhooks"


async def start_naive(ctx: Ctx, topic: str) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    argv = [sys.executable, "-m", "tests.bench.naive", str(port), ctx.bootstrap, topic]
    proc = await start_extra(ctx, argv, ctx.tmp / "naive.log")
    await wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    return proc, f"http://127.0.0.1:{port}/webhooks"


async def one_partition_count(
    ctx: Ctx, partitions: int, tpl: Path, first: list[Server]
) -> dict[str, Any]:
    """Every run against fresh topics of ``partitions`` partitions; the servers without Kafka
    (``first``: bare, the floor) join when given."""
    cfg = ctx.cfg
    prefix = f"{ctx.prefix}p{partitions}"
    naive_topic = f"{prefix}.naive"
    bridges = {"bridge": ("aiokafka", prefix)}
    if cfg.rdkafka:
        bridges["bridge-rdkafka"] = ("librdkafka", f"{prefix}r")
    if ctx.before is not None:
        bridges["bridge-before"] = ("", f"{prefix}b")
    event_topics = {name: Topics(p).all_event_topics() for name, (_, p) in bridges.items()}
    every = [t for topics in event_topics.values() for t in topics]
    await create_topics(ctx.bootstrap, [*every, naive_topic], partitions)
    procs: dict[str, BridgeProcess] = {}
    mine: list[Server] = []
    for name, (client, topic_prefix) in bridges.items():
        env = {"BRIDGE_KAFKA_CLIENT": client} if client else {}
        proc = procs[name] = ctx.procs.make(
            "ingress",
            BRIDGE_KAFKA_BOOTSTRAP_SERVERS=ctx.bootstrap,
            BRIDGE_TOPIC_PREFIX=topic_prefix,
            BRIDGE_TOPIC_PARTITIONS=str(partitions),
            BRIDGE_WEBHOOK_TOKENS=TOKEN,
            **env,
            **cfg.bridge_env,
        )
        if name == "bridge-before":
            proc.cwd = ctx.before  # the code of --before REF, same interpreter and packages
        await proc.start()
        await proc.wait_ready()
        assert proc.proc is not None
        url, topics = proc.url + "/webhooks", event_topics[name]
        counters, settle = bridge_counters(proc), bridge_settle(proc, tpl)
        mine.append(Server(name, url, proc.proc.pid, topics, partitions, counters, settle))
    naive_proc, naive_url = await start_naive(ctx, naive_topic)
    n = Server("naive", naive_url, naive_proc.pid, [naive_topic], partitions)
    servers = [*first, n, *mine]
    ctx.say(f"p{partitions}: " + ", ".join(f"{s.name} pid {s.pid}" for s in servers))
    async with Offsets(ctx.bootstrap) as offsets:
        for srv in servers:
            srv.acked += await srv.settle()
            warm = await wrk_run(ctx, srv.url, cfg.warm_s, cfg.wrk_connections, tpl, "w" + srv.name)
            srv.acked += warm["ok"]
        await closed_rounds(ctx, servers, offsets, tpl, "saturation", cfg.wrk_connections)
        await closed_rounds(ctx, servers, offsets, tpl, "latency", cfg.latency_connections)
        if first:
            await fixed_rates(ctx, servers, offsets, tpl)
    out: dict[str, Any] = {"naive": summary(n)}
    for srv in mine:
        rss = peak_rss_mb(srv.pid)
        code = await procs[srv.name].stop()
        found = await count_records(ctx.bootstrap, srv.topics, partitions)
        out[srv.name] = summary(srv)
        out[srv.name].update(rss_mb=rss, exit_code=code)
        out[srv.name]["records"] = {**found, "lost": max(0, srv.acked - found["unique_ids"])}
        ctx.say(
            f"p{partitions}: {srv.name} exited {code}; acknowledged {srv.acked}, "
            f"found {found['unique_ids']} unique"
        )
    await stop_extra(ctx, naive_proc)
    naive_found = await count_records(ctx.bootstrap, [naive_topic], partitions, ids=False)
    out["naive"]["records"] = {**naive_found, "lost": max(0, n.acked - naive_found["records"])}
    ctx.say(f"p{partitions}: naive acknowledged {n.acked}, found {naive_found['records']}")
    return out


async def ingress(ctx: Ctx) -> dict[str, Any]:
    cfg = ctx.cfg
    tpl = ctx.tmp / "templates.txt"
    out: dict[str, Any] = {"bodies": write_templates(tpl, kind=cfg.bodies), "partitions": {}}
    bare_proc, bare_url = await start_bare(ctx)
    first = [Server("bare", bare_url, bare_proc.pid, [], 0)]
    extra = [bare_proc]
    if cfg.floor:
        floor_proc, floor_url = await start_floor(ctx)
        first.append(Server("bridge-no-kafka", floor_url, floor_proc.pid, [], 0))
        extra.append(floor_proc)
    try:
        for i, partitions in enumerate(cfg.partitions):
            res = await one_partition_count(ctx, partitions, tpl, first if i == 0 else [])
            if i == 0:
                res.update({srv.name: summary(srv) for srv in first})
            out["partitions"][str(partitions)] = res
    finally:
        for proc in extra:
            await stop_extra(ctx, proc)
    return out
