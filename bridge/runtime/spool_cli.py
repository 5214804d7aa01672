"""``bridge spool status`` and ``bridge spool drain``: the spool root, for operators and Jobs.

Owns the two operator commands over ``BRIDGE_SPOOL_DIR`` (issue 21). ``status`` lists each
spool under the root (each instance's directory, and the root itself when segments lie there the
old way) with its records, bytes, oldest record's age and whether a live process owns it,
changing nothing. ``drain --dir PATH`` drains one spool directory to Kafka, in order, and exits
0 once it is empty; it exits 2, changing nothing, when a live process holds the directory's lock
(that process drains it itself), and 1 when Kafka does not take the records in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from pathlib import Path
from typing import IO, Any

import orjson

from bridge.core.config import Settings
from bridge.ingress import segments
from bridge.ingress.adoption import LOCK, Busy, lock, owner_alive, unlock
from bridge.ingress.spool import Spool
from bridge.kafka.publisher import make_publisher
from bridge.telemetry.metrics import Metrics


def status(settings: Settings, *, as_json: bool, out: IO[str]) -> int:
    """Print each spool under the root; 0, or 2 when the root cannot be read."""
    root = Path(settings.spool.dir)
    rows: list[dict[str, Any]] = []
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        print(f"bridge spool status: cannot read {root}: {exc}", file=out)
        return 2
    now = time.time()
    dirs = [(root, "(old layout)")] if any(segments.number(p) for p in entries) else []
    dirs += [(p, p.name) for p in entries if p.is_dir() and not p.is_symlink()]
    for directory, name in dirs:
        try:
            found = segments.inspect(directory)
        except OSError as exc:
            rows.append({"instance": name, "dir": str(directory), "error": str(exc)})
            continue
        alive = owner_alive(directory) if (directory / LOCK).exists() else None
        rows.append({
            "instance": name,
            "dir": str(directory),
            "records": found.records,
            "bytes": found.bytes,
            "oldest_age_seconds": round(now - found.oldest, 1) if found.oldest else 0.0,
            "damaged": found.damaged,
            "owner": {True: "alive", False: "gone", None: "none"}[alive],
        })  # fmt: skip
    if as_json:
        out.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if not rows:
        print(f"no spools under {root}", file=out)
    for row in rows:
        if "error" in row:
            print(f"{row['instance']}: unreadable ({row['error']})", file=out)
            continue
        print(f"{row['instance']}: {row['records']} records, {row['bytes']} bytes, oldest "
              f"{row['oldest_age_seconds']} s, owner {row['owner']}", file=out)  # fmt: skip
    return 0


async def drain(settings: Settings, directory: Path, *, timeout: float, out: IO[str]) -> int:
    """Drain ``directory`` to Kafka; 0 once empty, 1 when Kafka did not take it in time, 2
    when a live process owns it or it is not a spool directory."""
    if not await asyncio.to_thread(_is_directory, directory):
        print(f"bridge spool drain: {directory} is not a spool directory", file=out)
        return 2
    try:
        fd = await asyncio.to_thread(lock, directory, create=True)
    except Busy:
        print(f"bridge spool drain: {directory} is owned by a live process (it holds "
              f"{directory / LOCK}); that process drains it itself. Nothing changed.",
              file=out)  # fmt: skip
        return 2
    except OSError as exc:
        print(f"bridge spool drain: cannot lock {directory}: {exc}", file=out)
        return 2
    metrics = Metrics()
    max_record = 2 * settings.ingress.max_body_bytes + 64 * 1024
    publisher = make_publisher(settings.kafka, metrics, max_request_size=max_record)
    connect = asyncio.create_task(publisher.run_connect())
    spool = Spool(dataclasses.replace(settings.spool, dir=str(directory)), metrics, gauges=False)
    try:
        await asyncio.to_thread(spool.open, write=False)
        records = spool.pending
        task = asyncio.create_task(spool.run_drain(publisher))
        try:
            async with asyncio.timeout(timeout):
                await spool.wait_until(lambda: spool.empty)
        except TimeoutError:
            print(f"bridge spool drain: {spool.pending} of {records} records not taken by "
                  f"Kafka in {timeout:g} s; run it again", file=out)  # fmt: skip
            return 1
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            spool.close()
        print(f"bridge spool drain: {records} records drained from {directory}", file=out)
        return 0
    finally:
        connect.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await connect
        await publisher.close()
        unlock(fd)


def _is_directory(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()
