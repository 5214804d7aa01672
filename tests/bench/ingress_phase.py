"""Ingress phase: wrk saturation and open-loop fixed rates, bridge against the bare baseline."""

from __future__ import annotations

import asyncio
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
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


async def wrk_run(ctx: Ctx, url: str, seconds: float, tpl: Path, nonce: str) -> dict[str, Any]:
    cfg = ctx.cfg
    argv = [ensure_wrk(), f"-t{cfg.wrk_threads}", f"-c{cfg.wrk_connections}"]
    argv += [f"-d{int(seconds)}s", "--timeout", "10s", "-s", str(BENCH / "webhooks.lua")]
    argv += [url, "--", str(tpl), nonce, TOKEN]
    out = await run_tool(ctx, argv, seconds + 60)
    match = re.search(r"BENCH_JSON (\{.*\})", out)
    if not match:
        raise HarnessError(f"wrk printed no BENCH_JSON line:\n{out[-2000:]}")
    raw = orjson.loads(match.group(1))
    seconds_run = raw["duration_us"] / 1e6
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    return {
        "rps": round(raw["requests"] / seconds_run, 1),
        "requests": raw["requests"],
        "ok": raw["requests"] - raw["status"],
        "non_2xx": raw["status"],
        "socket_errors": errors,
        "seconds": round(seconds_run, 2),
        "closed_loop_p50_ms": raw["p50_us"] / 1000,
        "closed_loop_p99_ms": raw["p99_us"] / 1000,
        "closed_loop_max_ms": raw["max_us"] / 1000,
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


async def _no_counters() -> dict[str, float]:
    return {}


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
    """Before a phase: Kafka connected (a delivery comes back "published"), the spool empty.

    /readyz turns true once the spool is writable, before the producer has connected, and
    while the spool holds records every delivery goes to the spool behind them; a phase that
    started there would measure the spool path, not the Kafka path. Returns the number of
    acknowledged probe deliveries (they count as acknowledged).
    """
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


async def _no_settle() -> int:
    return 0


async def _delta(counters: Counters, before: dict[str, float]) -> dict[str, Any]:
    after = await counters()
    diff = {k: v - before.get(k, 0.0) for k, v in after.items()}
    out: dict[str, Any] = {k: int(v) for k, v in diff.items() if v and not k.startswith("hist:")}
    hist = quantiles({k: v for k, v in diff.items() if k.startswith("hist:")})
    if hist:
        out["histograms"] = hist
    return out


async def drive(
    ctx: Ctx,
    name: str,
    url: str,
    tpl: Path,
    pid: int,
    counters: Counters = _no_counters,
    settle: Callable[[], Awaitable[int]] = _no_settle,
) -> tuple[dict[str, Any], int]:
    """Warm-up, saturation and fixed-rate points against ``url``; returns results and acks.

    ``counters`` reads the server's own counts (the bridge's outcomes: published or spooled);
    each run's result holds their change during the run, under ``server``.
    """
    cfg = ctx.cfg
    acked = 0
    run = uuid.uuid4().hex[:6]
    ctx.say(f"{name}: warm-up {cfg.warm_s:g}s")
    acked += await settle()
    before = await counters()
    warm = await wrk_run(ctx, url, cfg.warm_s, tpl, f"{run}w")
    warm["server"] = await _delta(counters, before)
    acked += warm["ok"]
    sats = []
    for r in range(cfg.repeat):
        ctx.say(f"{name}: saturation {cfg.saturation_s:g}s (wrk, run {r + 1}/{cfg.repeat})")
        spy = None
        if name == "bridge" and r == 0:
            spy = await profile(ctx, pid, max(1.0, cfg.saturation_s - 4), f"{name}-saturation")
        acked += await settle()
        cpu0, wall0, before = cpu_seconds(pid), time.perf_counter(), await counters()
        sat = await wrk_run(ctx, url, cfg.saturation_s, tpl, f"{run}s{r}")
        cpu = cpu_seconds(pid) - cpu0
        sat["server"] = await _delta(counters, before)
        sat["server_cpu_pct"] = round(100 * cpu / (time.perf_counter() - wall0), 1)
        sat["server_cpu_us_per_request"] = round(1e6 * cpu / max(1, sat["requests"]), 1)
        if spy is not None:
            await spy
        acked += sat["ok"]
        sats.append(sat)
        ctx.say(f"{name}: {sat['rps']:.0f}/s {sat['server'] or ''}")
        await asyncio.sleep(1.0)
    points: dict[str, Any] = {}
    for rate in cfg.rates:
        runs = []
        for r in range(cfg.repeat):
            ctx.say(
                f"{name}: {rate}/s fixed rate {cfg.rate_s:g}s (+{cfg.rate_warmup_s:g}s warm-up)"
            )
            acked += await settle()
            before = await counters()
            res = await loadgen_run(ctx, url, rate, tpl, f"{run}r{rate}x{r}")
            res["server"] = await _delta(counters, before)
            acked += res["ok"]
            runs.append(res)
            ctx.say(
                f"{name}: {rate}/s -> p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, "
                f"p99.9 {res['p999_ms']} ms, achieved {res['achieved_rps']}/s {res['server'] or ''}"
            )
            await asyncio.sleep(1.0)
        points[str(rate)] = {
            "overloaded": any(x["skipped"] or (x["achieved_rps"] or 0) < 0.98 * rate for x in runs),
            "skipped": sum(x["skipped"] for x in runs),
            "p50_ms": median([x["p50_ms"] for x in runs]),
            "p99_ms": median([x["p99_ms"] for x in runs]),
            "p999_ms": median([x["p999_ms"] for x in runs]),
            "achieved_rps": median([x["achieved_rps"] or 0.0 for x in runs]),
            "runs": runs,
        }
    result = {
        "saturation_rps": median([s["rps"] for s in sats]),
        "saturation_runs": sats,
        "warmup": warm,
        "fixed_rate": points,
    }
    return result, acked


async def ingress(ctx: Ctx) -> dict[str, Any]:
    tpl = ctx.tmp / "templates.txt"
    bodies = write_templates(tpl)
    topics = Topics(ctx.prefix).all_event_topics()
    await create_topics(ctx.bootstrap, topics)
    out: dict[str, Any] = {"bodies": bodies}

    # -- the bridge
    bridge = ctx.procs.make(
        "ingress",
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS=ctx.bootstrap,
        BRIDGE_TOPIC_PREFIX=ctx.prefix,
        BRIDGE_WEBHOOK_TOKENS=TOKEN,
        **ctx.cfg.bridge_env,
    )
    await bridge.start()
    await bridge.wait_ready()
    assert bridge.proc is not None
    pid = bridge.proc.pid
    ctx.say(f"bridge ingress ready (pid {pid}, port {bridge.http_port})")
    result, acked = await drive(
        ctx,
        "bridge",
        bridge.url + "/webhooks",
        tpl,
        pid,
        bridge_counters(bridge),
        bridge_settle(bridge, tpl),
    )
    result["rss_mb"] = peak_rss_mb(pid)
    metrics = await bridge.metrics()
    outcomes = {
        o: int(metric_sum(metrics, "spotler_bridge_webhooks_total", outcome=o))
        for o in ("published", "spooled", "duplicate", "unavailable", "rejected", "deadletter")
    }
    result["outcomes"] = {k: v for k, v in outcomes.items() if v}
    code = await bridge.stop()
    result["exit_code"] = code
    ctx.say(f"bridge stopped (exit {code}); counting records on {len(topics)} event topics")
    found = await count_records(ctx.bootstrap, topics)
    result["records"] = {
        "acknowledged": acked,
        **found,
        "lost": max(0, acked - found["unique_ids"]),
    }
    ctx.say(
        f"acknowledged {acked}, found {found['unique_ids']} unique ({found['records']} records)"
    )
    out["bridge"] = result

    # -- the baseline
    port = free_port()
    bare = await start_extra(
        ctx, [sys.executable, "-m", "tests.bench.bare", str(port)], ctx.tmp / "bare.log"
    )
    await wait_http(f"http://127.0.0.1:{port}/healthz", bare)
    ctx.say(f"bare aiohttp ready (pid {bare.pid}, port {port})")
    base, _ = await drive(ctx, "bare", f"http://127.0.0.1:{port}/webhooks", tpl, bare.pid)
    base["rss_mb"] = peak_rss_mb(bare.pid)
    await stop_extra(ctx, bare)
    out["bare"] = base
    out["ratio_bridge_bare"] = round(result["saturation_rps"] / base["saturation_rps"], 3)
    return out


# ---------------------------------------------------------------- egress
