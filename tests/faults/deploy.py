"""Kafka deployments started through ``scripts/kafka.sh``: a three-node cluster, a SASL_SSL
node, or a single node started late; and what the tests ask a cluster (leaders, in-sync
replicas).

Ports: ``TEST_FAULT_PORT_BASE`` (e.g. 39500) hands out consecutive ports from there, so that
engineers sharing a machine can keep to their own range; without it, free ports are found.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import socket
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context

REPO = Path(__file__).resolve().parents[2]
_next_base = itertools.count(int(os.environ.get("TEST_FAULT_PORT_BASE", "0") or 0), 10)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def keytool() -> str:
    """The JDK's keytool: next to ``$JAVA``, ``$JAVA_HOME/bin/java`` or ``java``, else on PATH."""
    java = os.environ.get("JAVA") or (
        os.path.join(os.environ["JAVA_HOME"], "bin", "java")
        if os.environ.get("JAVA_HOME")
        else shutil.which("java")
    )
    if java:
        beside = Path(os.path.realpath(shutil.which(java) or java)).parent / "keytool"
        if beside.exists():
            return str(beside)
    found = shutil.which("keytool")
    assert found, "keytool not found (it comes with the JDK/JRE that runs Kafka)"
    return found


def port_block(count: int) -> int:
    """The first of ``count`` consecutive free ports (at most 10)."""
    assert count <= 10
    if os.environ.get("TEST_FAULT_PORT_BASE"):
        for _ in range(10):
            first = next(_next_base)
            if all(_bindable(p) for p in range(first, first + count)):
                return first
        raise AssertionError("no free ports from TEST_FAULT_PORT_BASE on")
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base: int = s.getsockname()[1]
        if base + count < 65536 and all(_bindable(p) for p in range(base, base + count)):
            return base
    raise AssertionError(f"no {count} consecutive free ports")


class ScriptedKafka:
    """A broker (or cluster) of the test's own, driven through ``scripts/kafka.sh``."""

    def __init__(
        self, work: Path, *, nodes: int = 1, security: str = "PLAINTEXT", password: str = ""
    ) -> None:
        self.nodes = nodes
        self.security = security
        self.password = password or "bridge-secret"  # the test broker's user
        base = port_block(2 * nodes)
        self.ports = [base + i for i in range(nodes)]
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")},
            "KAFKA_WORK": str(work),
            "KAFKA_NODES": str(nodes),
            "KAFKA_SECURITY": security,
            "KAFKA_PORT": str(base),
            "KAFKA_CONTROLLER_PORT": str(base + nodes),
            "KAFKA_SASL_PASSWORD": self.password,
            "KAFKA_START_TIMEOUT": "150",  # three JVMs on two shared cores
        }
        for kept in ("KAFKA_CACHE", "KAFKA_MVN_ARGS"):
            if kept in os.environ:
                self.env[kept] = os.environ[kept]
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        self.cafile = str(work / "tls" / "ca.pem")
        self.username = "bridge"

    async def script(self, *args: str) -> dict[str, str]:
        """Run ``kafka.sh`` with ``args`` (the test fails if it does); its KEY=value lines."""
        proc = await asyncio.create_subprocess_exec(
            "bash",
            str(REPO / "scripts" / "kafka.sh"),
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, (
            f"kafka.sh {' '.join(args)} failed ({proc.returncode}):\n"
            + err.decode(errors="replace")[-6000:]
        )
        return dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)

    async def up(self) -> None:
        endpoints = await self.script("up")
        assert endpoints["KAFKA_BOOTSTRAP"] == self.bootstrap, endpoints
        if self.security == "SASL_SSL":
            assert endpoints["KAFKA_SSL_CAFILE"] == self.cafile, endpoints
            self.username = endpoints["KAFKA_SASL_USERNAME"]

    async def down(self) -> None:
        await self.script("down")

    async def stop(self, node: int) -> None:
        await self.script("stop", str(node))

    async def kill(self, node: int) -> None:
        await self.script("kill", str(node))

    async def start(self, node: int) -> None:
        await self.script("start", str(node))

    def client(self, mechanism: str = "SCRAM-SHA-512") -> dict[str, Any]:
        """aiokafka options for the tests' own clients."""
        if self.security == "PLAINTEXT":
            return {}
        return {
            "security_protocol": "SASL_SSL",
            "ssl_context": create_ssl_context(cafile=self.cafile),
            "sasl_mechanism": mechanism,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password,
        }

    async def partitions(self, topic: str) -> list[dict[str, Any]]:
        """``[{partition, leader, replicas, isr}, ...]`` of ``topic`` as the cluster sees it."""
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, request_timeout_ms=5000, **self.client()
        )
        await admin.start()
        try:
            described = await admin.describe_topics([topic])
        finally:
            await admin.close()
        return list(described[0]["partitions"])

    async def fully_replicated(self, topic: str) -> bool:
        """Every partition of ``topic`` has a leader and all its replicas in sync."""
        try:
            parts = await self.partitions(topic)
        except Exception:  # a node starting or leaving: not yet
            return False
        return bool(parts) and all(
            p["leader"] >= 0 and sorted(p["isr"]) == sorted(p["replicas"]) for p in parts
        )
