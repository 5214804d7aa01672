"""Fixed-rate, open-loop load generator for ``POST /webhooks`` (Debian has wrk, not wrk2).

Run in its own process, on uvloop::

    python -m tests.bench.loadgen --url URL --rate 2000 --duration 10 --warmup 2 \\
        --templates FILE --nonce N --token T [--client aiohttp|raw]

Request ``i`` is *intended* to start at ``t0 + i / rate``, whatever happened to earlier
requests (open loop). Its latency is measured from that intended time to the end of its
response, so time spent waiting for a free connection or behind a slow response counts
(no coordinated omission). Requests of the first ``--warmup`` seconds are sent but not measured.
The last stdout line is one JSON object with the counts and percentiles.

Two clients: ``aiohttp`` (its ``ClientSession``) and ``raw``, a minimal HTTP/1.1 keep-alive
client on asyncio protocols that costs far less CPU per request. On a 2-core machine shared with
the broker and the server under test, the client's own CPU time shows up as server latency, so
the harness uses ``raw`` by default (see tests/bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
import uvloop

from tests.bench.bodies import split

Send = Callable[[bytes], Awaitable[int]]


class _Conn(asyncio.Protocol):
    """One keep-alive connection; one request at a time; responses carry Content-Length."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        at = head.find(b"content-length:")
        length = 0
        if at >= 0:
            line_end = head.find(b"\r\n", at)
            length = int(head[at + 15 : line_end if line_end >= 0 else None])
        total = end + 4 + length
        if len(self.buf) < total:
            return
        status = int(self.buf[9:12])
        del self.buf[:total]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    async def request(self, payload: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return await self.waiter


class RawClient:
    """A pool of up to ``size`` keep-alive connections, created on demand."""

    def __init__(self, url: str, token: str, size: int) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.head = (
            f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            "Content-Length: "
        ).encode()
        self.size = size
        self.created = 0
        self.idle: asyncio.Queue[_Conn] = asyncio.Queue()

    async def _get(self) -> _Conn:
        if self.idle.empty() and self.created < self.size:
            self.created += 1
            try:
                _, conn = await asyncio.get_running_loop().create_connection(
                    _Conn, self.host, self.port
                )
            except BaseException:
                self.created -= 1
                raise
            return conn
        return await self.idle.get()

    async def send(self, body: bytes) -> int:
        conn = await self._get()
        try:
            status = await conn.request(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        except BaseException:
            self.created -= 1
            if conn.transport is not None:
                conn.transport.close()
            raise
        if conn.closed:
            self.created -= 1
        else:
            self.idle.put_nowait(conn)
        return status

    async def close(self) -> None:
        while not self.idle.empty():
            conn = self.idle.get_nowait()
            if conn.transport is not None:
                conn.transport.close()


async def _aiohttp_client(url: str, token: str, size: int) -> tuple[Send, Any]:
    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=size),
        timeout=aiohttp.ClientTimeout(total=60),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )

    async def send(body: bytes) -> int:
        async with session.post(url, data=body) as resp:
            await resp.read()
            return resp.status

    return send, session.close


def _percentile(ordered: array[float], q: float) -> float:
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100.0 * len(ordered) + 0.5) - 1))
    return ordered[index]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    parts = [split(line) for line in Path(args.templates).read_bytes().splitlines() if line]
    if args.client == "raw":
        raw = RawClient(args.url, args.token, args.connections)
        send: Send = raw.send
        close: Callable[[], Awaitable[None]] = raw.close
    else:
        send, close = await _aiohttp_client(args.url, args.token, args.connections)
    rate = float(args.rate)
    total = int(rate * (args.warmup + args.duration))
    measured_from = int(rate * args.warmup)
    latencies: array[float] = array("d")
    statuses: Counter[str] = Counter()
    measured_statuses: Counter[str] = Counter()
    tasks: set[asyncio.Task[None]] = set()
    late = 0
    max_late = 0.0
    skipped = 0
    first_done = last_done = 0.0
    prefix = f"{args.nonce}-".encode()

    async def one(i: int, intended: float) -> None:
        nonlocal first_done, last_done
        tpl = parts[i % len(parts)]
        body = (prefix + str(i).encode()).join(tpl)
        try:
            status = str(await send(body))
        except Exception as exc:  # counted, never fatal: the run goes on
            status = type(exc).__name__
        done = time.perf_counter()
        statuses[status] += 1
        if i >= measured_from:
            measured_statuses[status] += 1
            latencies.append(done - intended)
            if not first_done:
                first_done = done
            last_done = done

    start = time.perf_counter() + 0.05
    i = 0
    while i < total:
        now = time.perf_counter()
        due = min(total, int((now - start) * rate) + 1)
        while i < due:
            intended = start + i / rate
            lateness = now - intended
            if i >= measured_from:
                max_late = max(max_late, lateness)
                if lateness > 0.002:
                    late += 1
            if len(tasks) >= args.max_outstanding:
                skipped += 1  # the server is far behind: do not grow without bound
                if i >= measured_from:
                    measured_statuses["skipped"] += 1
            else:
                task = asyncio.create_task(one(i, intended))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            i += 1
        delay = start + i / rate - time.perf_counter()
        await asyncio.sleep(delay if delay > 0 else 0)
    send_end = time.perf_counter()
    if tasks:
        await asyncio.wait(tasks, timeout=args.drain_timeout)
    for task in tasks:
        task.cancel()
    with contextlib.suppress(Exception):
        await close()
    latencies = array("d", sorted(latencies))
    measured = total - measured_from
    window = (last_done - (start + measured_from / rate)) if last_done else float("nan")
    ms = 1000.0
    return {
        "client": args.client,
        "rate": rate,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "connections": args.connections,
        "intended": total,
        "measured": measured,
        "completed": len(latencies),
        "achieved_rps": round(len(latencies) / window, 1) if window == window else None,
        "send_window_s": round(send_end - start, 3),
        "ok": statuses.get("200", 0),
        "statuses": dict(statuses),
        "measured_statuses": dict(measured_statuses),
        "skipped": skipped,
        "dispatch_late_pct": round(100.0 * late / max(1, measured), 2),
        "dispatch_late_max_ms": round(max_late * ms, 2),
        "p50_ms": round(_percentile(latencies, 50) * ms, 3),
        "p90_ms": round(_percentile(latencies, 90) * ms, 3),
        "p99_ms": round(_percentile(latencies, 99) * ms, 3),
        "p999_ms": round(_percentile(latencies, 99.9) * ms, 3),
        "max_ms": round(latencies[-1] * ms, 3) if latencies else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--templates", required=True)
    parser.add_argument("--nonce", required=True)
    parser.add_argument("--token", default="bench-token-0123456789")
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--max-outstanding", type=int, default=20_000)
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw")
    args = parser.parse_args(argv)
    result = uvloop.run(run(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
