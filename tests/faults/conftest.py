"""Fault-injection fixtures: a broker of the test's own (to stop and start), a webhook stream,
the conservation oracle, and the report of figures written after the run."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import aiohttp
import orjson
import pytest

from bridge.contract.records import Topics
from tests import samples
from tests.integration.procs import consume, free_port, value

REPO = Path(__file__).resolve().parents[2]
REPORT: dict[str, Any] = {}


class OwnKafka:
    """A broker only this module uses, so it can be stopped and started mid-test."""

    def __init__(self, work: Path) -> None:
        self.work = work  # kafka.sh keeps the broker's pid in work/kafka.pid
        self.port = free_port()
        self.env = {
            **os.environ,
            "KAFKA_WORK": str(work),
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(free_port()),
        }
        self.bootstrap = f"127.0.0.1:{self.port}"

    async def _script(self, command: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            "bash",
            str(REPO / "scripts" / "kafka.sh"),
            command,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0, out.decode(errors="replace")

    async def up(self) -> None:
        await self._script("up")

    async def stop(self) -> None:
        await self._script("stop")

    async def start(self) -> None:
        await self._script("start")

    async def down(self) -> None:
        await self._script("down")


@pytest.fixture(scope="module")
def own_kafka(tmp_path_factory) -> Iterator[OwnKafka]:
    broker = OwnKafka(tmp_path_factory.mktemp("kafka"))
    asyncio.run(broker.up())
    yield broker
    asyncio.run(broker.down())


async def paced(
    rate: float,
    concurrency: int,
    stop: asyncio.Event,
    post: Callable[[aiohttp.ClientSession, int], Coroutine[Any, Any, None]],
) -> None:
    """Call ``post(http, n)`` for n = 0, 1, ... at ``rate`` per second (open loop), at most
    ``concurrency`` at once, until ``stop`` is set; then wait for the calls in flight."""
    slots = asyncio.Semaphore(concurrency)
    pending: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        n, start = 0, time.monotonic()
        while not stop.is_set():
            await slots.acquire()
            task = asyncio.create_task(post(http, n))
            task.add_done_callback(lambda _: slots.release())
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.gather(*pending)


class Background:
    """Load in the background of a fault test: :meth:`start` runs ``_run`` as a task until
    :meth:`stop` (subclasses are dataclasses with ``_task`` and ``_stop`` fields)."""

    _task: asyncio.Task[None] | None
    _stop: asyncio.Event

    async def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task


@dataclass
class Stream(Background):
    """Posts webhooks like the platform, recording what was acknowledged with 200."""

    url: str
    token: str = "tok-0123456789abcdef"
    rate: float = 150.0
    concurrency: int = 16
    acked: dict[str, bytes] = field(default_factory=dict)  # event id -> body
    sent: set[str] = field(default_factory=set)
    statuses: dict[str, int] = field(default_factory=dict)
    outcomes: list[tuple[int, float, str]] = field(default_factory=list)  # (n, sent at, status)
    _task: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _post(self, http: aiohttp.ClientSession, n: int) -> None:
        kind = list(samples.MESSAGE_PARTS)[n % len(samples.MESSAGE_PARTS)]
        body = samples.message_body(kind, contact=f"316{n % 25:08d}@whatsapp.eazy.im")
        raw = orjson.dumps(body)
        event_id = samples.message_event_id(body)
        self.sent.add(event_id)
        sent_at = time.monotonic()
        try:
            async with http.post(
                self.url, data=raw, headers={"Authorization": f"Bearer {self.token}"}
            ) as resp:
                status = str(resp.status)
                if resp.status == 200:
                    answer = await resp.json()
                    assert answer["id"] == event_id
                    self.acked[event_id] = raw
        except (TimeoutError, aiohttp.ClientError):
            status = "connection-error"
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.outcomes.append((n, sent_at, status))

    def longest_non_200(self) -> dict[str, float]:
        """The longest run of consecutive deliveries (in sending order) not answered 200."""
        longest = (0, 0.0)
        run: list[float] = []
        for _, sent_at, status in sorted(self.outcomes):
            if status == "200":
                run = []
                continue
            run.append(sent_at)
            if len(run) > longest[0]:
                longest = (len(run), run[-1] - run[0])
        return {"deliveries": longest[0], "seconds": round(longest[1], 2)}

    async def _run(self) -> None:
        await paced(self.rate, self.concurrency, self._stop, self._post)


async def conservation(
    bootstrap: str, prefix: str, stream: Stream, timeout: float = 90, *, exact_bytes: bool = True
) -> dict[str, int]:
    """Every delivery answered 200 is on its topic with its payload intact; nothing else is.

    With ``exact_bytes`` the body must be a well-formed event whose payload holds the very bytes
    sent; otherwise (hostile input) it may be a dead letter, whose body must decode back to them.
    """
    topics = Topics(prefix)
    records = await consume(
        bootstrap, topics.all_event_topics(), count=len(stream.acked), timeout=timeout, settle=2.0
    )
    found: dict[str, int] = {}
    for record in records:
        event = value(record)
        event_id = event["id"]
        assert event_id in stream.sent, f"{event_id} was never sent"
        found[event_id] = found.get(event_id, 0) + 1
        sent = stream.acked.get(event_id)
        if sent is None:
            continue
        if event["type"] == "im.eazy.webhook.deadletter":
            data = event["data"]
            raw = (
                base64.b64decode(data["body"])
                if data["bodyEncoding"] == "base64"
                else data["body"].encode()
            )
            assert raw == sent
            assert not exact_bytes
        else:
            assert orjson.loads(sent) == event["data"]["payload"]
            # the very bytes (hostile input may repeat one event in another key order: a
            # duplicate by canonical hash, acknowledged without a second record)
            assert sent in record.value or not exact_bytes
    missing = set(stream.acked) - set(found)
    assert not missing, f"{len(missing)} acknowledged deliveries lost, e.g. {sorted(missing)[:3]}"
    return {
        "sent": len(stream.sent),
        "acknowledged": len(stream.acked),
        "found": len(found),
        "found_not_acknowledged": len(set(found) - set(stream.acked)),
        "duplicates": sum(n - 1 for n in found.values()),
        "records": len(records),
    }


async def metric(ops_url: str, name: str) -> float | None:
    """The value of an unlabelled series on /metrics; None when it cannot be read in 10 s."""
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(ops_url + "/metrics") as resp,
        ):
            text = await resp.text()
    except (TimeoutError, aiohttp.ClientError):
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


@pytest.fixture(scope="session")
def report() -> Iterator[dict[str, Any]]:
    yield REPORT
    if REPORT:
        out = REPO / "var" / "reliability-report.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(REPORT, indent=2, sort_keys=True))


def pytest_terminal_summary(terminalreporter) -> None:
    for name, figures in REPORT.items():
        terminalreporter.write_line(f"reliability {name}: {json.dumps(figures, sort_keys=True)}")


async def wait_for(predicate, timeout: float, interval: float = 0.2) -> float:
    """Poll an async predicate until true; returns the seconds it took (fails on timeout)."""
    started = time.monotonic()
    while not await predicate():
        if time.monotonic() - started > timeout:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
    return time.monotonic() - started
