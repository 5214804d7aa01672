"""Benchmark harness: configuration, tools, the broker, processes and metric reading."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.procs import ProcessFactory

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
    saturation_s: float = 10.0
    wrk_threads: int = 1
    wrk_connections: int = 64
    latency_connections: int = 8
    partitions: tuple[int, ...] = (6,)
    bodies: str = "message"
    rdkafka: bool = True
    floor: bool = True
    before: str | None = None
    rates: tuple[int, ...] = (2000, 5000)
    rate_s: float = 10.0
    rate_warmup_s: float = 2.0
    client: str = "raw"
    repeat: int = 3
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
    before: Path | None = None  # a checkout of --before REF, run as "bridge-before"

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


def checkout(ref: str, into: Path) -> tuple[Path, str]:
    """The files of ``ref`` (``git archive``) under ``into``; returns the directory and commit."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, text=True, check=False
    )
    if commit.returncode != 0:
        raise HarnessError(f"--before {ref}: not a commit ({commit.stderr.strip()})")
    target = into / f"before-{commit.stdout.strip()}"
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", ref], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target, commit.stdout.strip()


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


async def create_topics(bootstrap: str, names: list[str], partitions: int = PARTITIONS) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
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


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else float("nan")


Counters = Callable[[], Awaitable[dict[str, float]]]


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


def metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not (line.startswith(name + "{") or line.startswith(name + " ")):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def count_records(
    bootstrap: str, topics: list[str], partitions: int = PARTITIONS, *, ids: bool = True
) -> dict[str, Any]:
    """Read ``topics`` to their end: records, bytes, and (``ids``) unique CloudEvent ids."""
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
        parts = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        per_topic: dict[str, int] = {}
        seen: set[str] = set()
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
                    if ids:
                        seen.add(orjson.loads(rec.value)["id"])
    finally:
        await consumer.stop()
    short = {t.rsplit(".", 1)[-1]: n for t, n in sorted(per_topic.items()) if n}
    return {
        "records": total,
        "unique_ids": len(seen) if ids else None,
        "duplicates": total - len(seen) if ids else None,
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


class Offsets:
    """The sum of the end offsets of some topics: how many records they hold (no compaction,
    no transactions), read before and after a run to check that Kafka took every 200."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)

    async def __aenter__(self) -> Offsets:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def total(self, topics: list[str], partitions: int) -> int:
        parts = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        end = await self._consumer.end_offsets(parts)
        return int(sum(end.values()))
