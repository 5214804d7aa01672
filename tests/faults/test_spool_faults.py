"""Spool faults against a real broker: a full disk (a 4 MiB tmpfs) with Kafka stopped, a
SIGKILL while the disk is full, and a record Kafka refuses for good (issues 9.1 and 15.1)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests import samples
from tests.faults.conftest import OwnKafka, Stream, conservation, metric, wait_for
from tests.faults.test_ingress_faults import make_ingress, spool_empty
from tests.integration.procs import consume, post, value

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (CI runs as root), unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.timeout(360)  # two broker restarts and a 4 MiB fill: past the default 120 s
async def test_full_disk_answers_503_survives_sigkill_and_drains(
    procs, own_kafka: OwnKafka, prefix, small_disk: Path, report
) -> None:
    """Kafka stopped, the 4 MiB spool fills: 503s, the process lives; SIGKILL while full and
    restart; Kafka back: the spool drains, frees its space, and every 200 is in Kafka."""
    env = {"BRIDGE_SPOOL_DIR": str(small_disk)}
    bridge = make_ingress(procs, own_kafka, prefix, **env)
    await bridge.start()
    await bridge.wait_ready()
    await own_kafka.stop()
    stream = Stream(bridge.url + "/webhooks", rate=400, concurrency=32).start()

    async def disk_full() -> bool:
        return await metric(bridge.ops_url, "spotler_bridge_spool_unwritable") == 1.0

    await wait_for(disk_full, timeout=90)
    await wait_for(lambda: _has(stream, "503"), timeout=30)
    assert bridge.proc is not None
    assert bridge.proc.returncode is None  # a full disk never ends the process
    errors = (await bridge.metrics()).count('spool_disk_errors_total{op="')
    assert errors == 6  # one series per operation, each present from the start
    await bridge.kill()  # SIGKILL while the disk is full
    await bridge.start()
    await own_kafka.start()
    await bridge.wait_ready(timeout=90)
    await stream.stop()
    await wait_for(lambda: spool_empty(bridge), timeout=90)
    used = sum(p.stat().st_size for p in small_disk.rglob("*") if p.is_file())
    # the next deliveries are published again (Kafka acknowledges them directly)
    raw = orjson.dumps(samples.message_body("text"))
    status, answer = await post(bridge.url + "/webhooks", raw)
    assert (status, answer["status"]) == (200, "published")
    stream.sent.add(answer["id"])
    stream.acked[answer["id"]] = raw
    figures = await conservation(own_kafka.bootstrap, prefix, stream)
    assert stream.statuses.get("200", 0) == len(stream.acked) - 1 > 0  # the extra post above
    logs = bridge.logs()
    assert logs.count('"spool.unwritable"') <= 4  # one line per state change, not per request
    assert "Traceback" not in logs
    assert await bridge.stop() == 0
    report["spool-disk-full"] = {**figures, "statuses": stream.statuses, "bytes_left": used}
    assert used < 1024 * 1024


async def _has(stream: Stream, status: str) -> bool:
    return stream.statuses.get(status, 0) > 0


async def _topic_with_small_records(bootstrap: str, topic: str, max_bytes: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": str(max_bytes)})]
        )
    finally:
        await admin.close()


@pytest.mark.timeout(300)
async def test_oversized_record_is_set_aside_live_and_after_restart(
    procs, own_kafka: OwnKafka, prefix, report
) -> None:
    """A record larger than the topic allows becomes a small dead letter and the next delivery
    reaches Kafka within seconds; the same when the oversized record is already spooled."""
    topic = f"{prefix}.events.message"
    await _topic_with_small_records(own_kafka.bootstrap, topic, 300 * 1024)
    bridge = make_ingress(procs, own_kafka, prefix)
    await bridge.start()
    await bridge.wait_ready()
    url = bridge.url + "/webhooks"

    def big(n: int) -> bytes:
        body = samples.message_body("text", contact=f"3161234{n:04d}@whatsapp.eazy.im")
        body["message"]["body"] = "x" * 200_000  # the record carries it twice: ~400 KB
        return orjson.dumps(body)

    def small(n: int) -> bytes:
        return orjson.dumps(
            samples.message_body("text", contact=f"3169999{n:04d}@whatsapp.eazy.im")
        )

    status, answer = await post(url, big(1))
    assert (status, answer["status"]) == (200, "deadletter")
    status, after = await post(url, small(1))
    # The refusal ended the producer session (bridge/kafka/producer.py): while the new one
    # starts, the next delivery may be spooled; either way it reaches Kafka within seconds.
    assert status == 200
    assert after["status"] in ("published", "spooled")
    await wait_for(lambda: spool_empty(bridge), timeout=30)

    await own_kafka.stop()  # now the oversized record goes to the spool, then a normal one
    status, spooled = await post(url, big(2))
    assert (status, spooled["status"]) == (200, "spooled")
    status, behind = await post(url, small(2))
    assert (status, behind["status"]) == (200, "spooled")
    await bridge.kill()  # both are fsync'd in the spool: a restart finds them
    await own_kafka.start()
    await bridge.start()
    await bridge.wait_ready(timeout=60)
    waited = await wait_for(lambda: spool_empty(bridge), timeout=60)
    records = await consume(own_kafka.bootstrap, [topic], count=2, timeout=30, settle=1.0)
    assert {value(r)["id"] for r in records} == {after["id"], behind["id"]}
    letters = await consume(
        own_kafka.bootstrap, [f"{prefix}.events.deadletter"], count=2, timeout=30, settle=1.0
    )
    replaced = {value(r)["data"]["eventId"] for r in letters}
    assert replaced == {answer["id"], spooled["id"]}
    assert all(len(r.value) < 10_000 for r in letters)
    text = await bridge.metrics()
    assert 'spotler_bridge_records_set_aside_total{outcome="deadletter"} 1.0' in text
    assert await bridge.stop() == 0
    report["oversized-record"] = {"seconds_to_drain_after_restart": round(waited, 1)}


@pytest.mark.timeout(300)
async def test_leftover_marks_never_hide_acknowledged_records(
    procs, own_kafka: OwnKafka, prefix, tmp_path: Path, report
) -> None:
    """Issue 26.1 with a real process: marks left by a SIGKILL or power loss between the two
    unlinks of a deleted segment (or an EIO on the mark's unlink) lie in the spool; Kafka stops,
    10 deliveries are answered 200 from the spool, SIGKILL, restart with Kafka back: all 10 are
    in Kafka (before the fix the new segment took number 1 and its leftover mark: 0 published)."""
    root = tmp_path / "marks-spool"
    spool_dir = root / "marks"  # the instance's own directory under the root
    spool_dir.mkdir(parents=True)
    for seq in range(1, 65):
        (spool_dir / f"{seq:020d}.drained").write_text("999999999")
    bridge = make_ingress(
        procs, own_kafka, prefix, BRIDGE_SPOOL_DIR=str(root), BRIDGE_INSTANCE="marks"
    )
    await bridge.start()
    await bridge.wait_ready()
    await own_kafka.stop()
    acked: set[str] = set()
    for n in range(10):
        raw = orjson.dumps(samples.message_body("text", contact=f"3165555{n:04d}@whatsapp.eazy.im"))
        status, answer = await post(bridge.url + "/webhooks", raw)
        assert (status, answer["status"]) == (200, "spooled")
        acked.add(answer["id"])
    await bridge.kill()
    await own_kafka.start()
    await bridge.start()
    await bridge.wait_ready(timeout=90)
    waited = await wait_for(lambda: spool_empty(bridge), timeout=90)
    records = await consume(
        own_kafka.bootstrap, [f"{prefix}.events.message"], count=10, timeout=60, settle=1.0
    )
    assert {value(r)["id"] for r in records} == acked
    assert not list(spool_dir.glob("*.drained"))  # no mark outlives its segment
    assert await bridge.stop() == 0
    report["leftover-marks"] = {"acknowledged": len(acked), "published": len(records),
                                "seconds_to_drain": round(waited, 1)}  # fmt: skip


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BRIDGE_MAX_BODY_BYTES": str(40 * 1024 * 1024)}, "BRIDGE_MAX_BODY_BYTES"),
        (
            {"BRIDGE_MAX_BODY_BYTES": str(4 * 1024 * 1024),
             "BRIDGE_SPOOL_MAX_BYTES": str(8 * 1024 * 1024)},
            "BRIDGE_SPOOL_MAX_BYTES",
        ),
    ],
)  # fmt: skip
async def test_ingress_refuses_limits_whose_records_the_spool_cannot_hold(
    env: dict[str, str], named: str
) -> None:
    """Issue 26.2 with a real process: a body limit whose records pass the spool's 64 MiB frame
    limit, or a spool smaller than the largest record, stops ingress at start with exit 2 and a
    message naming the variable (before: it started, and acknowledged records it could not read
    back)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "ingress",
        env={**base, "BRIDGE_WEBHOOK_TOKENS": "tok-0123456789abcdef", **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2
    assert f"{named}:" in err.decode()
