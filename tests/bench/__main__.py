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
import datetime as dt
import fcntl
import importlib.util
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from tests.bench.bodies import BODY_SETS
from tests.bench.egress_phase import egress
from tests.bench.harness import (
    REPO,
    Config,
    Ctx,
    HarnessError,
    T,
    ToolMissing,
    checkout,
    ensure_wrk,
    git_state,
    kafka,
    kafka_env,
    stop_extra,
)
from tests.bench.ingress_phase import ingress
from tests.bench.report import check_harness, plot, results_path, table, verdicts
from tests.integration.procs import ProcessFactory

#: The plot of the newest full run, linked from the README.
LATEST_PLOT = REPO / "docs" / "bench-ingress.png"


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
    if cfg.before:
        ctx.before, commit = checkout(cfg.before, tmp)
        ctx.say(f"bridge-before: the code of {cfg.before} ({commit}) in {ctx.before}")
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
    p.add_argument("--repeat", type=int, default=3, help="alternated rounds per point (median)")
    p.add_argument("--only", choices=("ingress", "egress"), help="one side only")
    p.add_argument("--connections", type=int, default=64, help="wrk connections, saturation")
    p.add_argument(
        "--latency-connections", type=int, default=8, help="wrk connections, latency rounds"
    )
    p.add_argument(
        "--partitions",
        default="6",
        help="topic partitions, comma-separated: every count gets its own rounds (e.g. 1,3,6,12)",
    )
    p.add_argument("--bodies", choices=BODY_SETS, default="message", help="webhook bodies")
    p.add_argument(
        "--before",
        metavar="REF",
        help="also run the bridge of git REF (e.g. a commit before a change) as bridge-before",
    )
    p.add_argument(
        "--no-floor",
        action="store_true",
        help="leave out bridge-no-kafka (the webhook app with a store that acknowledges at once)",
    )
    p.add_argument(
        "--no-rdkafka",
        action="store_true",
        help="leave out the bridge with BRIDGE_KAFKA_CLIENT=librdkafka (on when installed)",
    )
    p.add_argument(
        "--rates", default="2000,5000", help="open-loop fixed rates /s, comma-separated ('' none)"
    )
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
        latency_connections=a.latency_connections,
        partitions=tuple(int(x) for x in a.partitions.split(",") if x),
        bodies=a.bodies,
        before=a.before,
        floor=not a.no_floor,
        rdkafka=not a.no_rdkafka and importlib.util.find_spec("confluent_kafka") is not None,
        rates=tuple(int(x) for x in a.rates.split(",") if x),
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
        cfg.repeat = 1 if a.repeat == 3 else cfg.repeat
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
    if res.get("ingress") and not problems:
        picture = path.with_suffix(".png")
        plot(res, picture)
        shutil.copyfile(picture, LATEST_PLOT)  # the README shows this one
        print(f"plot: {picture.relative_to(REPO)} (and {LATEST_PLOT.relative_to(REPO)})")
    print()
    print(table(res))
    print(f"\nresults: {path.relative_to(REPO)} ({res['seconds']:.0f}s)")
    for problem in problems:
        print(f"bench: harness problem: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
