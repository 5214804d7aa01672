"""Running ``bridge`` commands as real processes for integration tests, and reading topics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from tests.contract_check import check_record


async def eventually(
    predicate: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = "condition"
) -> None:
    """Wait until ``await predicate()`` is true, polling; fail the test after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class BridgeProcess:
    """One ``python -m bridge <command>`` process with its own ports and log file."""

    def __init__(self, command: str, env: dict[str, str], log_path: Path) -> None:
        self.command = command
        self.env = env
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.http_port = int(env.get("BRIDGE_HTTP_PORT", "0"))
        self.ops_port = int(env.get("BRIDGE_OPS_PORT", "0"))
        self.cwd: Path | None = None  # another checkout of the code (the bench's --before)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}"

    async def start(self) -> BridgeProcess:
        if self.command in ("serve", "ingress", "egress"):
            await ensure_topics(self.env)
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge",
            self.command,
            env=self.env,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.cwd,
        )
        log.close()
        return self

    async def wait_ready(self, timeout: float = 30.0, path: str = "/readyz") -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                assert self.proc is not None
                if self.proc.returncode is not None:
                    raise AssertionError(
                        f"{self.command} exited {self.proc.returncode}:\n{self.logs()}"
                    )
                try:
                    async with http.get(self.ops_url + path) as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"{self.command} not ready in {timeout}s:\n{self.logs()}")
                await asyncio.sleep(0.1)

    async def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signum)

    async def stop(self, timeout: float = 40.0) -> int:
        """SIGTERM and wait; returns the exit code (SIGKILL after ``timeout``)."""
        if self.proc is None:
            return 0
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        assert self.proc.returncode is not None
        return self.proc.returncode

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:]

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as http, http.get(self.ops_url + "/metrics") as resp:
            return await resp.text()


async def ensure_topics(env: dict[str, str]) -> None:
    """``bridge topics ensure`` for a process's prefix (the local broker: replication 1, 3
    partitions unless the test says otherwise), as docs/deploy.md has operators do, so a first
    start finds its topics. Best effort: tests that start a bridge with Kafka down on purpose
    go on after a short bounded try."""
    import io

    from bridge.core.config import Settings
    from bridge.kafka.topics import ensure

    settings = Settings.from_env(
        {"BRIDGE_TOPIC_REPLICATION": "1", "BRIDGE_TOPIC_PARTITIONS": "3", **env}
    )
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(8):
            await ensure(settings, dry_run=False, out=io.StringIO())


class ProcessFactory:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[BridgeProcess] = []

    def make(self, command: str, **env: str) -> BridgeProcess:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "SIMULATOR_"))}
        full = {
            **base,
            "BRIDGE_HTTP_HOST": "127.0.0.1",
            "BRIDGE_HTTP_PORT": str(free_port()),
            "BRIDGE_OPS_PORT": str(free_port()),
            "BRIDGE_SPOOL_DIR": str(self.tmp / f"spool-{len(self.started)}"),
            "BRIDGE_LOG_LEVEL": "info",
            **env,
        }
        proc = BridgeProcess(command, full, self.tmp / f"{command}-{len(self.started)}.log")
        self.started.append(proc)
        return proc

    async def stop_all(self) -> None:
        for proc in self.started:
            await proc.stop()


async def consume(
    bootstrap: str,
    topics: Iterable[str],
    *,
    count: int,
    timeout: float = 30.0,
    settle: float = 0.0,
    **client: Any,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``topics`` from the beginning until ``count`` records came (or ``timeout``).

    With ``settle`` > 0 it keeps reading that long after reaching ``count``, so that a record
    that should NOT be there has a chance to show up. ``client``: more aiokafka options
    (security). Every record of the contract's topics is checked against its topic's JSON
    Schema (tests/contract_check.py): a violation fails the test.
    """
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **client,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for part in batch.values():
                for record in part:
                    check_record(record)
                records.extend(part)
            if len(records) >= count:
                if settle <= 0:
                    break
                deadline = min(deadline, loop.time() + settle)
                settle = 0
    finally:
        await consumer.stop()
    return records


def value(record: ConsumerRecord[bytes, bytes]) -> Any:
    """The decoded JSON value, checked against its topic's schema first."""
    assert record.value is not None
    check_record(record)
    return orjson.loads(record.value)


#: The webhook token the integration tests configure (16 characters at least, like every token).
TOKEN = "tok-0123456789abcdef"


async def post(url: str, body: bytes, token: str | None = TOKEN) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as resp:
        text = await resp.read()
        return resp.status, orjson.loads(text) if text[:1] == b"{" else text


async def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[Any],
    *,
    timestamp_ms: int | None = None,
    **client: Any,
) -> None:
    """Put JSON values (or raw bytes) on ``topic``, keyed by conversation as the README asks."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **client
    )
    await producer.start()
    try:
        for item in values:
            raw = item if isinstance(item, bytes) else orjson.dumps(item)
            key = None
            if isinstance(item, dict) and "channelJid" in item and "contactJid" in item:
                key = f"{item['channelJid']}/{item['contactJid']}".encode()
            await producer.send(topic, raw, key=key, timestamp_ms=timestamp_ms)
        await producer.flush()
    finally:
        await producer.stop()


class Simulator:
    """A ``bridge simulator`` process and its admin endpoints."""

    def __init__(self, proc: BridgeProcess, port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.api_url = self.url + "/v3"

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.url + "/_sim/" + path, json=body) as resp,
        ):
            assert resp.status < 300, await resp.text()
            text = await resp.read()
            return orjson.loads(text) if text else None

    async def faults(self, **faults: Any) -> None:
        await self.admin("POST", "faults", faults)


async def start_simulator(procs: ProcessFactory, **env: str) -> Simulator:
    port = free_port()
    settings = {
        "SIMULATOR_PORT": str(port),
        "SIMULATOR_API_KEYS": "sim-key",
        "SIMULATOR_RECEIPT_DELAY": "0.05",
        "SIMULATOR_RETRY_BASE": "0.05",
        "SIMULATOR_RETRY_MAX": "0.5",
    }
    proc = procs.make("simulator", **{**settings, **env})
    await proc.start()
    deadline = asyncio.get_running_loop().time() + 20
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/_sim/faults") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            assert asyncio.get_running_loop().time() < deadline, proc.logs()
            await asyncio.sleep(0.1)
    return Simulator(proc, port)
