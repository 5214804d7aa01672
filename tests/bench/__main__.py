"""``make bench``: measure ingress and egress against a real local broker; write a results file.

Starts its own Kafka broker (``scripts/kafka.sh`` with ``KAFKA_WORK=/tmp/bench-kafka``, ports
49092/49093; override with ``BENCH_KAFKA_WORK``, ``BENCH_KAFKA_PORT``,
``BENCH_KAFKA_CONTROLLER_PORT``), uses a fresh topic prefix, and stops every process it started
and the broker at the end, whatever happened.

Ingress, against one ``bridge ingress`` process and then a bare aiohttp app (bare.py):
saturation throughput with wrk (closed loop, tests/bench/webhooks.lua) and latency at fixed
rates with loadgen.py (open loop, latency from the intended send time). For the bridge, its peak
RSS (VmHWM) and a count of the records on the event topics against the acknowledged deliveries.

Egress: N send-message commands across many conversations, run by one ``bridge egress`` process
against the simulator, once without and once with added API latency; commands per second from
the moment egress is ready (partitions assigned) until the last result is on the results topic.

Writes ``tests/bench/results/<YYYY-MM-DD>.json``; when that file exists, ``-2``, ``-3``... is
appended, so earlier runs of the day are kept. Exit status: 0 when the harness worked (missed
targets are reported, not fatal), 1 when the measurement itself broke (lost records, a process
died, results missing), 2 when a tool is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import fcntl
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.contract.records import Topics
from tests.bench.bodies import CHANNEL, write_templates
from tests.integration.procs import BridgeProcess, ProcessFactory, free_port

REPO = Path(__file__).resolve().parents[2]
BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
TOKEN = "bench-token-0123456789"
SIM_KEY = "sim-key"
PARTITIONS = 3
T = TypeVar("T")


class HarnessError(Exception):
    """The measurement itself broke: exit 1."""


class ToolMissing(Exception):
    """A needed tool is not installed and could not be: exit 2."""


@dataclass
class Config:
    warm_s: float = 3.0
    saturation_s: float = 15.0
    wrk_threads: int = 1
    wrk_connections: int = 128
    rates: tuple[int, ...] = (500, 2000, 5000)
    rate_s: float = 10.0
    rate_warmup_s: float = 2.0
    client: str = "raw"
    repeat: int = 2
    commands: int = 20_000
    conversations: int = 1_000
    concurrency: int = 64
    latency_ms: float = 20.0
    egress_timeout_s: float = 180.0
    ingress: bool = True
    egress: bool = True
    profile_dir: str | None = None
    bridge_env: dict[str, str] = field(default_factory=dict)


@dataclass
class Ctx:
    cfg: Config
    bootstrap: str
    prefix: str
    tmp: Path
    procs: ProcessFactory
    extra: list[asyncio.subprocess.Process] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def say(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- tools, broker


def git_state() -> dict[str, Any]:
    """The commit measured, and the files of the package changed on top of it."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=10
        )
        return done.stdout.rstrip("\n")

    changed = [line[3:] for line in git("status", "--porcelain", "--", "bridge").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted_bridge_files": changed}


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt and os.geteuid() == 0:
        print("[bench] wrk not found: installing it with apt-get (Debian package 'wrk')")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([apt, "install", "-y", "-qq", "wrk"], env=env, check=False)
        found = shutil.which("wrk")
        if not found:
            subprocess.run([apt, "update", "-qq"], env=env, check=False)
            subprocess.run([apt, "install", "-y", "-qq", "wrk"], env=env, check=False)
            found = shutil.which("wrk")
    if not found:
        raise ToolMissing(
            "wrk is not installed and could not be installed here; "
            "install it (Debian/Ubuntu: `apt-get install -y wrk`, macOS: `brew install wrk`)"
        )
    return found


def kafka_env() -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_WORK": os.environ.get("BENCH_KAFKA_WORK", "/tmp/bench-kafka"),  # noqa: S108
        "KAFKA_PORT": os.environ.get("BENCH_KAFKA_PORT", "49092"),
        "KAFKA_CONTROLLER_PORT": os.environ.get("BENCH_KAFKA_CONTROLLER_PORT", "49093"),
    }


def kafka(command: str) -> str:
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "kafka.sh"), command],
        env=kafka_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise HarnessError(f"kafka.sh {command} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    match = re.search(r"KAFKA_BOOTSTRAP=(\S+)", done.stdout)
    return match.group(1) if match else ""


async def create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        await admin.close()
    await asyncio.sleep(0.5)  # leaders elected


# ---------------------------------------------------------------- processes


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of ``pid`` so far (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


async def run_tool(ctx: Ctx, argv: list[str], timeout: float) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO
    )
    ctx.extra.append(proc)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise HarnessError(f"{argv[0]} {argv[1:3]} did not finish in {timeout}s") from None
    finally:
        ctx.extra.remove(proc)
    if proc.returncode != 0:
        raise HarnessError(f"{argv} exited {proc.returncode}:\n{err.decode()[-3000:]}")
    return out.decode()


async def start_extra(ctx: Ctx, argv: list[str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=out, stderr=asyncio.subprocess.STDOUT, cwd=REPO
        )
    ctx.extra.append(proc)
    return proc


async def stop_extra(ctx: Ctx, proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    if proc in ctx.extra:
        ctx.extra.remove(proc)


async def wait_http(url: str, proc: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            if proc.returncode is not None:
                raise HarnessError(f"process for {url} exited {proc.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise HarnessError(f"{url} not ready within {timeout}s")
            await asyncio.sleep(0.05)


async def profile(ctx: Ctx, pid: int, seconds: float, name: str) -> asyncio.Task[None] | None:
    """py-spy record of ``pid`` in the background (with --profile DIR)."""
    if not ctx.cfg.profile_dir:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        ctx.notes.append("py-spy not installed: no profile taken (pip install py-spy)")
        return None
    out_dir = Path(ctx.cfg.profile_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "100"]
    argv += ["-f", "raw", "-o", str(out_dir / f"{name}.folded")]  # speedscope opens it too

    async def go() -> None:
        try:
            await run_tool(ctx, argv, seconds + 60)
        except HarnessError as exc:
            ctx.notes.append(f"py-spy {name}: {exc}")

    return asyncio.create_task(go())


# ---------------------------------------------------------------- ingress


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


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else float("nan")


Counters = Callable[[], Awaitable[dict[str, float]]]


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


def buckets(text: str, name: str, short: str, **labels: str) -> dict[str, float]:
    """Cumulative histogram buckets as ``hist:<short>:<le>`` keys."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "_bucket{") and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[f"hist:{short}:{le}"] = float(line.rsplit(" ", 1)[1])
    return out


def quantiles(hist: dict[str, float]) -> dict[str, dict[str, float | None]]:
    """Upper bucket bounds (ms) of p50/p99/p99.9 from cumulative bucket deltas."""
    by_name: dict[str, list[tuple[float, float]]] = {}
    for key, count in hist.items():
        _, short, le = key.split(":", 2)
        by_name.setdefault(short, []).append((float(le), count))
    out: dict[str, dict[str, float | None]] = {}
    for short, pairs in by_name.items():
        pairs.sort()
        total = pairs[-1][1] if pairs else 0
        if not total:
            continue
        row: dict[str, float | None] = {}
        for label, q in (("p50_ms_le", 0.5), ("p99_ms_le", 0.99), ("p999_ms_le", 0.999)):
            bound = next((le for le, c in pairs if c >= q * total), None)
            row[label] = None if bound is None or bound == float("inf") else bound * 1000
        out[short] = row
    return out


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


def metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not (line.startswith(name + "{") or line.startswith(name + " ")):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def count_records(bootstrap: str, topics: list[str]) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024**2,
        max_partition_fetch_bytes=16 * 1024**2,
    )
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        per_topic: dict[str, int] = {}
        ids: set[str] = set()
        total = 0
        value_bytes = 0
        deadline = time.monotonic() + 300
        while await _behind(consumer, parts, end):
            if time.monotonic() > deadline:
                raise HarnessError("counting the event topics took over 300 s")
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                per_topic[tp.topic] = per_topic.get(tp.topic, 0) + len(records)
                for rec in records:
                    total += 1
                    value_bytes += len(rec.value or b"")
                    ids.add(orjson.loads(rec.value)["id"])
    finally:
        await consumer.stop()
    short = {t.rsplit(".", 1)[-1]: n for t, n in sorted(per_topic.items()) if n}
    return {
        "records": total,
        "unique_ids": len(ids),
        "duplicates": total - len(ids),
        "mean_record_bytes": round(value_bytes / total) if total else 0,
        "per_topic": short,
    }


async def _behind(
    consumer: AIOKafkaConsumer, parts: list[TopicPartition], end: dict[TopicPartition, int]
) -> bool:
    for tp in parts:
        if await consumer.position(tp) < end[tp]:
            return True
    return False


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


def verdicts(res: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, value: Any, target: str, ok: bool) -> None:
        out.append({"target": name, "value": value, "goal": target, "pass": bool(ok)})

    ing = res.get("ingress")
    if ing:
        b = ing["bridge"]
        add("ingress saturation /s", b["saturation_rps"], ">= 5000", b["saturation_rps"] >= 5000)
        p = b["fixed_rate"].get("2000")
        if p:
            add("ingress p99 at 2000/s (ms)", p["p99_ms"], "<= 25", p["p99_ms"] <= 25)
        p5 = b["fixed_rate"].get("5000")
        if p5:
            add(
                "ingress sustains 5000/s fixed rate",
                p5["achieved_rps"],
                ">= 4900/s achieved, nothing skipped",
                not p5["overloaded"],
            )
        r = ing["ratio_bridge_bare"]
        add("bridge/bare saturation ratio", r, ">= 0.5", r >= 0.5)
        rss = b["rss_mb"].get("VmHWM", 0.0)
        add("bridge peak RSS (MB)", rss, "< 150", rss < 150)
        rec = b["records"]
        add(
            "acknowledged deliveries on topics",
            f"{rec['unique_ids']}/{rec['acknowledged']}",
            "all",
            rec["lost"] == 0,
        )
    eg = res.get("egress")
    if eg:
        fast, slow = eg["no_latency"], eg["with_latency"]
        add(
            "egress commands/s, no latency",
            fast["commands_per_s"],
            ">= 2000",
            fast["commands_per_s"] >= 2000,
        )
        bound = slow["bound_concurrency_over_latency"]
        limit = min(bound, fast["commands_per_s"])
        add(
            f"egress commands/s, {slow['latency_ms']:g} ms latency",
            slow["commands_per_s"],
            f">= 0.5 x min(bound {bound:.0f}, no-latency rate) = {0.5 * limit:.0f}",
            slow["commands_per_s"] >= 0.5 * limit,
        )
    return out


def table(res: dict[str, Any]) -> str:
    lines = []
    ing = res.get("ingress")
    if ing:
        lines.append("INGRESS (POST /webhooks, ~1 KB bodies)        bridge        bare")
        b, s = ing["bridge"], ing["bare"]
        lines.append(
            f"  saturation (wrk, -c{res['config']['wrk_connections']}) /s   "
            f"{b['saturation_rps']:>12.0f} {s['saturation_rps']:>11.0f}"
        )
        bcpu = median([x["server_cpu_pct"] for x in b["saturation_runs"]])
        scpu = median([x["server_cpu_pct"] for x in s["saturation_runs"]])
        bus = median([x["server_cpu_us_per_request"] for x in b["saturation_runs"]])
        sus = median([x["server_cpu_us_per_request"] for x in s["saturation_runs"]])
        lines.append(f"  server CPU % at saturation             {bcpu:>12.0f} {scpu:>11.0f}")
        lines.append(f"  server CPU us per request              {bus:>12.0f} {sus:>11.0f}")
        for rate in b["fixed_rate"]:
            bp, sp = b["fixed_rate"][rate], s["fixed_rate"].get(rate, {})
            lines.append(
                f"  {rate:>5}/s p50/p99/p99.9 ms  {bp['p50_ms']:>6.1f}/{bp['p99_ms']:>6.1f}/"
                f"{bp['p999_ms']:>6.1f}  {sp.get('p50_ms', 0):>5.1f}/{sp.get('p99_ms', 0):>5.1f}/"
                f"{sp.get('p999_ms', 0):>5.1f}"
            )
            over = f"  OVERLOADED: skipped {bp['skipped']}, latencies are lower bounds"
            lines.append(
                f"  {rate:>5}/s achieved /s        {bp['achieved_rps']:>12.0f} "
                f"{sp.get('achieved_rps', 0):>11.0f}" + (over if bp["overloaded"] else "")
            )
        ratio, rss = ing["ratio_bridge_bare"], b["rss_mb"].get("VmHWM", 0.0)
        lines.append(f"  ratio bridge/bare (saturation)          {ratio:>12.2f}")
        lines.append(f"  bridge peak RSS (VmHWM) MB              {rss:>12.1f}")
        rec = b["records"]
        lines.append(
            f"  acknowledged / found unique / records   {rec['acknowledged']} / "
            f"{rec['unique_ids']} / {rec['records']}"
        )
    eg = res.get("egress")
    if eg:
        lines.append("EGRESS (send-message -> simulator -> results)")
        for key in ("no_latency", "with_latency"):
            e = eg[key]
            bound = e["bound_concurrency_over_latency"]
            lines.append(
                f"  latency {e['latency_ms']:>4g} ms: {e['commands_per_s']:>8.0f} commands/s "
                f"({e['commands']} in {e['seconds_from_ready']:.2f}s, concurrency "
                f"{e['concurrency']}" + (f", bound {bound:.0f}/s)" if bound else ")")
            )
            lines.append(
                f"      slot held {e['slot_ms_per_command']:.0f} ms/command; "
                f"CPU: egress {e['egress_cpu_pct']:.0f}% "
                f"({e['egress_cpu_us_per_command']:.0f} us/command), "
                f"simulator {e['simulator_cpu_pct']:.0f}%"
            )
    lines.append("TARGETS")
    for v in res["verdicts"]:
        mark = "PASS" if v["pass"] else "MISS"
        lines.append(f"  [{mark}] {v['target']}: {v['value']} (goal {v['goal']})")
    return "\n".join(lines)


def results_path(today: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{today}.json"
    n = 2
    while path.exists():
        path = RESULTS / f"{today}-{n}.json"
        n += 1
    return path


def check_harness(res: dict[str, Any]) -> list[str]:
    problems = []
    ing = res.get("ingress")
    if ing:
        b = ing["bridge"]
        if b["records"]["lost"]:
            problems.append(f"ingress: {b['records']['lost']} acknowledged deliveries not found")
        if b["exit_code"] != 0:
            problems.append(f"ingress: bridge exited {b['exit_code']}")
    eg = res.get("egress")
    if eg:
        for key, e in eg.items():
            if e["results"]["unique_commands"] != e["commands"]:
                problems.append(f"egress {key}: results missing")
            if e["results"]["out_of_order"]:
                problems.append(f"egress {key}: {e['results']['out_of_order']} out of order")
            if e["exit_code"] != 0:
                problems.append(f"egress {key}: egress exited {e['exit_code']}")
    return problems


async def guarded(coro: Awaitable[T]) -> T:
    """Run ``coro``; SIGTERM/SIGINT cancel it so that the cleanup in ``finally`` runs."""
    task = asyncio.ensure_future(coro)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    return await task


async def bench(cfg: Config, bootstrap: str, tmp: Path) -> dict[str, Any]:
    prefix = f"bench{dt.datetime.now():%Y%m%d%H%M%S}{uuid.uuid4().hex[:4]}"
    procs = ProcessFactory(tmp)
    ctx = Ctx(cfg, bootstrap, prefix, tmp, procs)
    res: dict[str, Any] = {
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "prefix": prefix,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_before": os.getloadavg(),
        },
        "code": git_state(),
        "config": asdict(cfg),
        "load_generators": {
            "saturation": "wrk (closed loop, Lua script tests/bench/webhooks.lua)",
            "fixed_rate": f"tests/bench/loadgen.py ({cfg.client} client, uvloop, open loop, "
            "latency from intended send time); Debian has no wrk2",
        },
    }
    started = time.perf_counter()
    try:
        if cfg.ingress:
            res["ingress"] = await ingress(ctx)
        if cfg.egress:
            res["egress"] = await egress(ctx)
    finally:
        await procs.stop_all()
        for proc in list(ctx.extra):
            await stop_extra(ctx, proc)
    res["notes"] = ctx.notes
    res["seconds"] = round(time.perf_counter() - started, 1)
    res["machine"]["loadavg_after"] = os.getloadavg()
    return res


def parse(argv: list[str] | None) -> Config:
    p = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short phases (a smoke run, ~1.5 min)")
    p.add_argument("--repeat", type=int, default=2, help="runs per ingress point (median)")
    p.add_argument("--only", choices=("ingress", "egress"), help="one side only")
    p.add_argument("--connections", type=int, default=128, help="wrk connections")
    p.add_argument("--client", choices=("raw", "aiohttp"), default="raw", help="loadgen client")
    p.add_argument("--commands", type=int, default=20_000)
    p.add_argument("--conversations", type=int, default=1_000)
    p.add_argument("--concurrency", type=int, default=64, help="BRIDGE_EGRESS_CONCURRENCY")
    p.add_argument("--profile", metavar="DIR", help="py-spy record the bridge during the runs")
    p.add_argument(
        "--bridge-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the bridge processes, e.g. BRIDGE_KAFKA_LINGER_MS=1",
    )
    a = p.parse_args(argv)
    extra = dict(item.split("=", 1) for item in a.bridge_env)
    cfg = Config(
        repeat=max(1, a.repeat),
        wrk_connections=a.connections,
        client=a.client,
        commands=a.commands,
        conversations=a.conversations,
        concurrency=a.concurrency,
        ingress=a.only in (None, "ingress"),
        egress=a.only in (None, "egress"),
        profile_dir=a.profile,
        bridge_env=extra,
    )
    if a.quick:
        cfg.repeat = 1 if a.repeat == 2 else cfg.repeat
        cfg.warm_s, cfg.saturation_s, cfg.rate_s, cfg.rate_warmup_s = 2.0, 5.0, 4.0, 1.0
        cfg.commands = min(cfg.commands, 5_000)
        cfg.conversations = min(cfg.conversations, 500)
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = parse(argv)
    try:
        ensure_wrk()
    except ToolMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    # One bench at a time per broker work dir: a second run would share the broker, share the
    # CPU, and stop the broker under the first one.
    lock_path = Path(kafka_env()["KAFKA_WORK"] + ".lock")
    lock = lock_path.open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"[bench] another bench holds {lock_path}; waiting for it to finish", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
    today = dt.date.today().isoformat()
    print("[bench] starting the bench broker (scripts/kafka.sh up)", flush=True)
    bootstrap = ""
    try:
        bootstrap = kafka("up")
        print(f"[bench] broker at {bootstrap}", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            res = asyncio.run(guarded(bench(cfg, bootstrap, Path(tmp))))
    except HarnessError as exc:
        print(f"bench: harness failure: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        print("[bench] stopping the bench broker (scripts/kafka.sh down)", flush=True)
        try:
            kafka("down")
        except HarnessError as exc:
            print(f"bench: {exc}", file=sys.stderr)
    res["verdicts"] = verdicts(res)
    problems = check_harness(res)
    res["harness_problems"] = problems
    path = results_path(today)
    path.write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2) + b"\n")
    print()
    print(table(res))
    print(f"\nresults: {path.relative_to(REPO)} ({res['seconds']:.0f}s)")
    for problem in problems:
        print(f"bench: harness problem: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
