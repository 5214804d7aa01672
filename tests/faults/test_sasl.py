"""Scenario 9 (docs/reliability.md): SASL over TLS end to end against a real SASL_SSL broker.

Ingress and egress run with the README's managed-Kafka variables (the very names, with this
broker's values), with SCRAM-SHA-512 and with PLAIN: a webhook reaches its topic, a command its
result. A wrong password and an untrusted CA each stop start-up with a message naming the
variable to fix: no hang, no traceback, never ready.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from bridge.contract.records import Topics
from tests import samples
from tests.faults.deploy import REPO, ScriptedKafka, keytool
from tests.integration.procs import (
    BridgeProcess,
    ProcessFactory,
    Simulator,
    consume,
    post,
    produce,
    start_simulator,
    value,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(300)]

CHANNEL = "31612345678@whatsapp.eazy.im"
CONTACT = "31611111111@whatsapp.eazy.im"


def readme_example() -> dict[str, str]:
    """The README's managed-Kafka example, variable by variable."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- managed-kafka-example:.*?-->\s*```bash\n(.*?)```", text, re.S)
    assert block, "README.md lost its managed-Kafka example"
    pairs = [line.split("=", 1) for line in block.group(1).splitlines() if "=" in line]
    return dict(pairs)


@pytest.fixture(scope="module")
def sasl_kafka(tmp_path_factory) -> Iterator[ScriptedKafka]:
    broker = ScriptedKafka(tmp_path_factory.mktemp("kafka-sasl"), security="SASL_SSL")
    try:
        asyncio.run(broker.up())
        yield broker
    finally:
        asyncio.run(broker.down())


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory) -> str:
    """A CA that signed nothing the broker holds (made with the JDK's keytool)."""
    work = tmp_path_factory.mktemp("other-ca")
    store = ["-keystore", str(work / "ca.p12"), "-storetype", "PKCS12", "-storepass", "x" * 8]
    subprocess.run(
        [
            *(keytool(), "-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048"),
            *("-dname", "CN=some other CA", "-ext", "bc:c", "-validity", "2", *store),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [keytool(), "-exportcert", "-rfc", "-alias", "ca", "-file", str(work / "ca.pem"), *store],
        check=True,
        capture_output=True,
    )
    return str(work / "ca.pem")


def managed_env(
    broker: ScriptedKafka, prefix: str, mechanism: str, **override: str
) -> dict[str, str]:
    """The README example's variables, each set to this broker's value."""
    ours = {
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "BRIDGE_KAFKA_SASL_MECHANISM": mechanism,
        "BRIDGE_KAFKA_SASL_USERNAME": broker.username,
        "BRIDGE_KAFKA_SASL_PASSWORD": broker.password,
        "BRIDGE_KAFKA_SSL_CAFILE": broker.cafile,
        "BRIDGE_TOPIC_PREFIX": prefix,
        "BRIDGE_EGRESS_GROUP_ID": f"{prefix}-egress",
    }
    example = readme_example()
    assert set(example) == set(ours), "the README example and this test use different variables"
    assert example["BRIDGE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert example["BRIDGE_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    return {**ours, **override}


def bridge(
    procs: ProcessFactory, role: str, env: dict[str, str], sim: Simulator | None
) -> BridgeProcess:
    extra = {"BRIDGE_WEBHOOK_TOKENS": "tok-0123456789abcdef"} if role == "ingress" else {}
    if sim is not None:
        extra |= {"BRIDGE_SPOTLER_API_URL": sim.api_url, "BRIDGE_SPOTLER_API_KEY": "sim-key"}
    elif role == "egress":
        extra |= {"BRIDGE_SPOTLER_API_URL": "http://127.0.0.1:9/v3", "BRIDGE_SPOTLER_API_KEY": "k"}
    return procs.make(role, **env, **extra)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
async def test_sasl_ssl_end_to_end(procs, sasl_kafka, prefix, mechanism, report) -> None:
    env = managed_env(sasl_kafka, prefix, mechanism)
    client = sasl_kafka.client(mechanism)
    topics = Topics(prefix)
    sim = await start_simulator(procs)
    ingress = bridge(procs, "ingress", env, None)
    egress = bridge(procs, "egress", env, sim)
    await asyncio.gather(ingress.start(), egress.start())
    await asyncio.gather(ingress.wait_ready(timeout=120), egress.wait_ready(timeout=120))

    body = samples.message_body("text", contact=CONTACT)
    raw = orjson.dumps(body)
    status, answer = await post(ingress.url + "/webhooks", raw)
    assert (status, answer["status"]) == (200, "published"), answer
    records = await consume(sasl_kafka.bootstrap, [topics.event("message")], count=1, **client)
    assert [value(r)["id"] for r in records] == [answer["id"]]
    assert raw in records[0].value  # the very bytes, in data.payload

    command = {
        "id": f"sasl-{mechanism}",
        "channelJid": CHANNEL,
        "contactJid": CONTACT,
        "message": {"type": "text", "body": "over SASL_SSL"},
    }
    await produce(sasl_kafka.bootstrap, topics.send_message, [command], **client)
    results = await consume(sasl_kafka.bootstrap, [topics.results], count=1, timeout=60, **client)
    assert [value(r)["data"]["commandId"] for r in results] == [command["id"]]
    assert value(results[0])["type"] == "im.eazy.command.succeeded"
    sent = await sim.admin("GET", "messages")
    assert [m["message"]["body"] for c in sent for m in c["messages"]] == ["over SASL_SSL"]

    assert await ingress.stop() == 0
    assert await egress.stop() == 0
    report.setdefault("7-sasl-ssl", {})[mechanism] = "webhook published, command succeeded"


async def never_ready_then_exit(proc: BridgeProcess, timeout: float = 60) -> tuple[int, int]:
    """Poll readiness until the process exits; returns (exit code, readiness probes answered)."""
    assert proc.proc is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    probes = 0
    async with aiohttp.ClientSession() as http:
        while proc.proc.returncode is None:
            assert loop.time() < deadline, f"{proc.command} still running:\n{proc.logs()}"
            try:
                async with http.get(proc.ops_url + "/readyz") as resp:
                    assert resp.status == 503, f"{proc.command} turned ready:\n{proc.logs()}"
                    probes += 1
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    return proc.proc.returncode, probes


@pytest.mark.parametrize(
    ("case", "variable"),
    [("wrong-password", "BRIDGE_KAFKA_SASL_PASSWORD"), ("untrusted-ca", "BRIDGE_KAFKA_SSL_CAFILE")],
)
async def test_refused_start_up_names_the_setting(
    procs, sasl_kafka, other_ca, prefix, case, variable, report
) -> None:
    override = (
        {"BRIDGE_KAFKA_SASL_PASSWORD": "not-the-password"}
        if case == "wrong-password"
        else {"BRIDGE_KAFKA_SSL_CAFILE": other_ca}
    )
    env = managed_env(sasl_kafka, prefix, "SCRAM-SHA-512", **override)
    started = asyncio.get_running_loop().time()
    runs = [bridge(procs, role, env, None) for role in ("ingress", "egress")]
    await asyncio.gather(*(p.start() for p in runs))
    outcomes = await asyncio.gather(*(never_ready_then_exit(p) for p in runs))
    seconds = asyncio.get_running_loop().time() - started
    for proc, (code, _) in zip(runs, outcomes, strict=True):
        logs = proc.logs()
        assert code != 0, logs
        refused = [
            line
            for line in logs.splitlines()
            if '"kafka.refused"' in line or '"egress.refused"' in line
        ]
        assert refused, logs
        assert all(variable in line for line in refused), refused
        assert "Traceback" not in logs, logs
    assert sum(probes for _, probes in outcomes) > 0  # readiness was asked, and said no
    report.setdefault("7-sasl-ssl", {})[case] = {
        "exit_codes": [code for code, _ in outcomes],
        "seconds_to_exit": round(seconds, 1),
    }


def test_readme_example_is_complete() -> None:
    example = readme_example()
    assert example["BRIDGE_KAFKA_SASL_PASSWORD"]
    assert Path(example["BRIDGE_KAFKA_SSL_CAFILE"]).suffix == ".pem"
