"""Memory in flight is bounded (issue 15 item 5): a real ``bridge ingress`` under large bodies.

150 concurrent authenticated bodies of about 1 MB, and 20 with 60,000 keys each, go to a real
process; its resident memory (``VmRSS`` in ``/proc/<pid>/status``) stays under a stated bound,
a normal delivery sent during the burst keeps a stated latency, every answer is 200 or 503 with
``Retry-After`` (the platform retries), and the memory goes back down afterwards.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests import samples
from tests.integration.procs import TOKEN, ProcessFactory

pytestmark = pytest.mark.kafka

#: Stated bounds (the chart's memory limit is 512 Mi). Measured on a shared 2-core machine with
#: the default BRIDGE_MAX_INFLIGHT_BYTES: peak about 140 MB, settled about 80 MB, a normal delivery
#: at most about 3 s at the very start of the burst (while 170 connections open and the refused
#: bodies are drained), under 0.4 s after; before the bound: 654 MB, 380 MB and 16 s.
RSS_BOUND_MB = 300
LATENCY_BOUND_S = 5.0
SETTLED_MB = 200


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def large_body(n: int) -> bytes:
    return orjson.dumps({"type": "typing", "n": n, "filler": "x" * 900_000})


def many_keys(n: int) -> bytes:
    return orjson.dumps({"type": "custom", "n": n, **{f"k{i:06d}": i for i in range(60_000)}})


async def test_large_bodies_stay_under_the_memory_bound(
    procs: ProcessFactory, kafka: str, prefix: str
) -> None:
    """RSS under RSS_BOUND_MB, a normal delivery under LATENCY_BOUND_S, memory given back."""
    bridge = procs.make(
        "ingress",
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS=kafka,
        BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_WEBHOOK_TOKENS=TOKEN,
        BRIDGE_LOG_LEVEL="warning",
    )
    await bridge.start()
    await bridge.wait_ready()
    assert bridge.proc is not None
    pid = bridge.proc.pid
    url = bridge.url + "/webhooks"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    bodies = [large_body(n) for n in range(150)] + [many_keys(n) for n in range(20)]
    baseline = rss_mb(pid)
    peak = baseline
    statuses: list[int] = []
    latencies: list[float] = []
    done = asyncio.Event()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def deliver(body: bytes) -> None:
            async with session.post(url, data=io.BytesIO(body), headers=auth) as resp:
                await resp.read()
                statuses.append(resp.status)
                if resp.status == 503:
                    assert resp.headers.get("Retry-After")

        def sample() -> None:
            """Normal deliveries from another thread (its own connection, blocking client), so
            that the latency measured is the server's, not this test's busy event loop."""
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_mb(pid))
                normal = orjson.dumps(samples.message_body("text"))
                conn = http.client.HTTPConnection("127.0.0.1", bridge.http_port, timeout=30)
                started = time.perf_counter()
                conn.request("POST", "/webhooks", body=normal, headers=auth)
                status = conn.getresponse().status
                latencies.append(time.perf_counter() - started)
                conn.close()
                assert status == 200
                peak = max(peak, rss_mb(pid))

        sampler = asyncio.create_task(asyncio.to_thread(sample))
        await asyncio.gather(*(deliver(b) for b in bodies))
        done.set()
        await sampler

        # Recovery: once the burst is over a large body is taken again.
        async with session.post(url, data=io.BytesIO(large_body(999)), headers=auth) as resp:
            assert resp.status == 200

    for _ in range(100):  # up to 20 s for the memory to go back down
        if (settled := rss_mb(pid)) < SETTLED_MB:
            break
        await asyncio.sleep(0.2)
    figures = {
        "baseline_mb": round(baseline),
        "peak_mb": round(peak),
        "settled_mb": round(settled),
        "status": {s: statuses.count(s) for s in set(statuses)},
        "normal_requests": len(latencies),
        "normal_max_s": round(max(latencies), 3),
        "normal_s": [round(x, 2) for x in latencies],
    }
    print(figures)
    assert set(statuses) <= {200, 503}, figures
    assert statuses.count(200) > 0, figures
    assert peak < RSS_BOUND_MB, figures
    assert latencies, figures
    assert max(latencies) < LATENCY_BOUND_S, figures
    assert settled < SETTLED_MB, figures
