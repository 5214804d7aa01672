"""Spool adoption with real processes and the real broker (issue 21, tests a-d, f, g).

Ingress processes share one spool root, each in ``<root>/<BRIDGE_INSTANCE>`` under a flock.
A process that dies holding acknowledged events leaves its directory; a live one adopts it,
drains it to Kafka in order and removes it. Every acknowledged event is counted in Kafka.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from bridge.contract.records import Topics
from bridge.core.config import SpoolSettings
from bridge.ingress.adoption import lock, unlock
from bridge.ingress.intake import decode_and_normalize
from bridge.ingress.spool import Spool
from bridge.telemetry.metrics import Metrics
from tests import samples
from tests.faults.conftest import OwnKafka, metric, wait_for
from tests.faults.test_ingress_faults import make_ingress
from tests.integration.procs import TOKEN, BridgeProcess, ProcessFactory, consume, value

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def instance(procs: ProcessFactory, kafka: OwnKafka, prefix: str, root: Path, name: str) -> Any:
    return make_ingress(procs, kafka, prefix, BRIDGE_SPOOL_DIR=str(root), BRIDGE_INSTANCE=name,
                        BRIDGE_SPOOL_ADOPT_INTERVAL="1")  # fmt: skip


async def spool_by_keys(url: str, keys: int, per_key: int, first: int = 0) -> dict[str, list[str]]:
    """Post ``per_key`` deliveries on each of ``keys`` conversations, one after another per
    conversation (so each conversation's order is defined), all conversations at once; the
    event ids acknowledged with 200 ``spooled``, per conversation, in order."""
    acked: dict[str, list[str]] = {}

    async def conversation(http: aiohttp.ClientSession, k: int) -> None:
        contact = f"3167{first + k:07d}@whatsapp.eazy.im"
        acked[contact] = []
        for _ in range(per_key):
            raw = orjson.dumps(samples.message_body("text", contact=contact))
            async with http.post(url, data=raw,
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as resp:  # fmt: skip
                answer = await resp.json()
                assert (resp.status, answer["status"]) == (200, "spooled"), answer
                acked[contact].append(answer["id"])

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(conversation(http, k) for k in range(keys)))
    return acked


async def in_kafka(kafka: OwnKafka, prefix: str, count: int) -> list[Any]:
    topics = Topics(prefix).all_event_topics()
    return await consume(kafka.bootstrap, topics, count=count, timeout=120, settle=2.0)


def per_key_order(records: list[Any]) -> dict[str, list[str]]:
    """Event ids per conversation (the record's subject), first appearance, in Kafka order."""
    seen: dict[str, list[str]] = {}
    for record in records:
        event = value(record)
        ids = seen.setdefault(event.get("subject") or "", [])
        if event["id"] not in ids:
            ids.append(event["id"])
    return seen


async def gone(path: Path) -> bool:
    return not path.exists()


async def adopted(bridge: BridgeProcess) -> float:
    return await metric(bridge.ops_url, "spotler_bridge_spool_adopted_total") or 0.0


@pytest.mark.timeout(600)
async def test_a_killed_instance_spool_is_adopted_in_order(
    procs, own_kafka: OwnKafka, prefix, tmp_path: Path, report
) -> None:
    """(a) Kafka stopped; A acknowledges 2,000 deliveries into its spool and is SIGKILLed; B on
    the same root, Kafka back: all 2,000 reach Kafka, each conversation in order, A's
    directory gone."""
    root = tmp_path / "root"
    a = instance(procs, own_kafka, prefix, root, "a")
    await a.start()
    await a.wait_ready()
    await own_kafka.stop()
    acked = await spool_by_keys(a.url + "/webhooks", keys=20, per_key=100)
    await a.kill()
    assert (root / "a").is_dir()
    await own_kafka.start()
    b = instance(procs, own_kafka, prefix, root, "b")
    started = time.monotonic()
    await b.start()
    await b.wait_ready(timeout=90)
    await wait_for(lambda: gone(root / "a"), timeout=120)
    seconds = time.monotonic() - started
    records = await in_kafka(own_kafka, prefix, 2000)
    found = per_key_order(records)
    for contact, ids in acked.items():
        assert found[contact] == ids, f"{contact}: order or records differ"
    assert await adopted(b) == 1
    assert "Traceback" not in b.logs()
    assert await b.stop() == 0
    report["adoption-killed-instance"] = {
        "acknowledged": sum(len(v) for v in acked.values()),
        "in_kafka": sum(len(v) for v in found.values()),
        "seconds_to_adopt": round(seconds, 1),
    }


@pytest.mark.timeout(600)
async def test_the_survivor_adopts_two_killed_instances(
    procs, own_kafka: OwnKafka, prefix, tmp_path: Path, report
) -> None:
    """(b) Three instances on one root, two SIGKILLed holding spools: the survivor adopts both."""
    root = tmp_path / "root"
    bridges = [instance(procs, own_kafka, prefix, root, name) for name in ("x", "y", "z")]
    for bridge in bridges:
        await bridge.start()
    for bridge in bridges:
        await bridge.wait_ready()
    await own_kafka.stop()
    acked: dict[str, list[str]] = {}
    for n, bridge in enumerate(bridges[:2]):
        url = bridge.url + "/webhooks"
        acked.update(await spool_by_keys(url, keys=5, per_key=40, first=100 * n))
        await bridge.kill()
    await own_kafka.start()
    survivor = bridges[2]
    await wait_for(lambda: gone(root / "x"), timeout=180)
    await wait_for(lambda: gone(root / "y"), timeout=180)
    total = sum(len(v) for v in acked.values())
    found = per_key_order(await in_kafka(own_kafka, prefix, total))
    for contact, ids in acked.items():
        assert found[contact] == ids
    assert await adopted(survivor) == 2
    assert await survivor.stop() == 0
    report["adoption-two-killed"] = {"acknowledged": total, "adopted_spools": 2}


async def make_orphan(root: Path, name: str, topic: str, ids: range, tag: str) -> list[str]:
    """A spool left by a process that is gone: records in ``root/name``, its lock free; their
    event ids, in order."""
    directory = root / name
    directory.mkdir(parents=True)
    unlock(lock(directory, create=True))
    spool = Spool(SpoolSettings(dir=str(directory)), Metrics())
    spool.open()
    writer = asyncio.create_task(spool.run_writer())
    made = []
    # Real message events (what ingress spools), so that what reaches Kafka is checked against
    # the topic's schema like every record the tests read; five conversations per orphan.
    topics = Topics(topic.removesuffix(".events.message"))
    base = 31600000000 + zlib.crc32(tag.encode()) % 10**5 * 10
    for chunk in range(ids.start, ids.stop, 1000):
        batch = []
        for i in range(chunk, min(chunk + 1000, ids.stop)):
            contact = f"{base + i % 5}@whatsapp.eazy.im"
            body = samples.message_body("text", contact=contact, message_id=f"{tag}-{i}")
            record = decode_and_normalize(orjson.dumps(body), "", topics, 1 << 20)
            batch.append(record)
            made.append(record.event_id)
        await asyncio.gather(*(spool.append(r) for r in batch))
    writer.cancel()
    await asyncio.gather(writer, return_exceptions=True)
    spool.close()
    return made


@pytest.mark.timeout(600)
async def test_two_live_instances_race_for_orphans_without_double_publishing(
    procs, own_kafka: OwnKafka, prefix, tmp_path: Path, report
) -> None:
    """(c) 50 orphans, two live instances racing for each: every record is published, none by
    both (counted by event id)."""
    root = tmp_path / "root"
    topic = f"{prefix}.events.message"
    expected: list[str] = []
    for n in range(50):
        expected += await make_orphan(root, f"orphan-{n:02d}", topic, range(20), f"o{n}")
    racers = [instance(procs, own_kafka, prefix, root, name) for name in ("r1", "r2")]
    for racer in racers:
        await racer.start()
    for n in range(50):
        await wait_for(lambda n=n: gone(root / f"orphan-{n:02d}"), timeout=180)
    records = await in_kafka(own_kafka, prefix, len(expected))
    counts: dict[str, int] = {}
    for record in records:
        counts[value(record)["id"]] = counts.get(value(record)["id"], 0) + 1
    assert set(counts) == set(expected)
    twice = [i for i, c in counts.items() if c > 1]
    assert not twice, f"{len(twice)} records published twice, e.g. {twice[:3]}"
    by = [await adopted(r) for r in racers]
    assert sum(by) == 50
    for racer in racers:
        assert await racer.stop() == 0
    report["adoption-race"] = {"orphans": 50, "adopted_by_each": by, "records": len(expected)}


@pytest.mark.timeout(600)
async def test_an_adopter_killed_mid_adoption_leaves_it_to_the_next(
    procs, own_kafka: OwnKafka, prefix, tmp_path: Path, report
) -> None:
    """(d) The adopter is SIGKILLed while it drains an orphan: the next one finishes it, and
    every record is in Kafka (the last chunk may come twice, with its ids)."""
    root = tmp_path / "root"
    topic = f"{prefix}.events.message"
    expected = await make_orphan(root, "big", topic, range(60_000), "big")
    first = instance(procs, own_kafka, prefix, root, "first")
    await first.start()

    async def draining() -> bool:
        return (await metric(first.ops_url, "spotler_bridge_spool_drained_total") or 0) > 0

    await wait_for(draining, timeout=120, interval=0.02)
    await first.kill()
    assert (root / "big").is_dir(), "the first adopter finished before it was killed"
    second = instance(procs, own_kafka, prefix, root, "second")
    await second.start()
    await wait_for(lambda: gone(root / "big"), timeout=180)
    records = await in_kafka(own_kafka, prefix, len(expected))
    ids = [value(r)["id"] for r in records]
    assert set(ids) == set(expected)
    await wait_for(lambda: gone(root / "first"), timeout=30)  # the killed adopter's own spool
    assert await adopted(second) == 2
    assert await second.stop() == 0
    report["adoption-adopter-killed"] = {
        "records": len(expected),
        "published": len(ids),
        "duplicates": len(ids) - len(set(ids)),
    }


@pytest.mark.timeout(300)
async def test_a_corrupt_orphan_drains_its_intact_records_and_serves_on(
    procs, own_kafka: OwnKafka, prefix, tmp_path: Path, report
) -> None:
    """(f) An orphan with a damaged frame and a torn tail: the intact records drain, the
    damage is counted and logged, the adopter keeps serving webhooks."""
    root = tmp_path / "root"
    topic = f"{prefix}.events.message"
    expected = await make_orphan(root, "broken", topic, range(30), "broken")
    segment = sorted((root / "broken").glob("*.wal"))[0]
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one frame in the middle
    segment.write_bytes(bytes(data) + b"SBW1\x00\x00\x01")  # and a torn tail
    bridge = instance(procs, own_kafka, prefix, root, "alive")
    await bridge.start()
    await bridge.wait_ready()
    await wait_for(lambda: gone(root / "broken"), timeout=60)
    records = await in_kafka(own_kafka, prefix, len(expected) - 1)
    ids = {value(r)["id"] for r in records}
    assert len(ids) == len(expected) - 1
    assert ids < set(expected)
    corruptions = await metric(bridge.ops_url, "spotler_bridge_spool_corruptions_total")
    assert corruptions is not None
    assert corruptions >= 1
    assert '"spool.corruption"' in bridge.logs()
    raw = orjson.dumps(samples.message_body("text"))
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            bridge.url + "/webhooks", data=raw, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as resp,
    ):
        assert resp.status == 200
    assert await bridge.stop() == 0
    report["adoption-corrupt-orphan"] = {"records": len(expected), "drained": len(ids)}


@pytest.mark.timeout(300)
async def test_an_old_layout_spool_in_the_root_is_adopted(
    procs, own_kafka: OwnKafka, prefix, tmp_path: Path, report
) -> None:
    """(g) Segments directly in the root, as a version before issue 21 left them: drained to
    Kafka and deleted; a foreign file beside them stays."""
    root = tmp_path / "root"
    topic = f"{prefix}.events.message"
    old = root / "legacy-tmp"
    expected = await make_orphan(root, "legacy-tmp", topic, range(40), "old")
    for path in old.iterdir():
        if path.name != ".lock":
            path.rename(root / path.name)
    (old / ".lock").unlink()
    old.rmdir()
    (root / "README.txt").write_text("not the bridge's")
    bridge = instance(procs, own_kafka, prefix, root, "new")
    await bridge.start()
    await bridge.wait_ready()

    async def drained() -> bool:
        return not list(root.glob("*.wal"))

    await wait_for(drained, timeout=60)
    records = await in_kafka(own_kafka, prefix, len(expected))
    assert {value(r)["id"] for r in records} == set(expected)
    assert (root / "README.txt").read_text() == "not the bridge's"
    assert await bridge.stop() == 0
    report["adoption-old-layout"] = {"records": len(expected)}


async def bridge_cli(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", *args, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.timeout(300)
async def test_spool_drain_refuses_a_live_owners_directory_and_drains_an_orphan(
    procs, own_kafka: OwnKafka, prefix, tmp_path: Path, report
) -> None:
    """(e) ``bridge spool drain`` on a live instance's directory exits 2 and changes nothing;
    ``bridge spool status --json`` tells the live owner from a gone one; on an orphan, drain
    exits 0 with every record in Kafka."""
    root = tmp_path / "root"
    topic = f"{prefix}.events.message"
    live = instance(procs, own_kafka, prefix, root, "live")
    await live.start()
    await live.wait_ready()
    await own_kafka.stop()
    acked = await spool_by_keys(live.url + "/webhooks", keys=2, per_key=10)
    before = snapshot(root / "live")
    env = {"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": own_kafka.bootstrap, "BRIDGE_TOPIC_PREFIX": prefix,
           "BRIDGE_SPOOL_DIR": str(root), "BRIDGE_LOG_LEVEL": "warning"}  # fmt: skip
    code, out = await bridge_cli("spool", "drain", "--dir", str(root / "live"), env=env)
    assert code == 2, out
    assert "owned by a live process" in out
    assert snapshot(root / "live") == before
    await live.kill()
    code, out = await bridge_cli("spool", "status", "--json", env=env)
    assert code == 0, out
    rows = {row["instance"]: row for row in orjson.loads(out)}
    assert rows["live"]["owner"] == "gone"
    assert rows["live"]["records"] == 20
    await own_kafka.start()
    code, out = await bridge_cli("spool", "drain", "--dir", str(root / "live"), env=env)
    assert code == 0, out
    records = await consume(own_kafka.bootstrap, [topic], count=20, timeout=60, settle=1.0)
    assert {value(r)["id"] for r in records} == {i for ids in acked.values() for i in ids}
    code, out = await bridge_cli("spool", "status", "--json", env=env)
    assert {row["instance"]: row["records"] for row in orjson.loads(out)}.get("live", 0) == 0
    report["spool-drain-cli"] = {"refused_live": True, "drained": len(records)}


@pytest.mark.timeout(300)
async def test_bad_input_under_the_root_is_skipped_and_a_refusing_volume_never_ends_ingress(
    procs, own_kafka: OwnKafka, prefix, tmp_path: Path, report
) -> None:
    """Issue 21, bad input: foreign files and directories, a symlink and a file where a spool
    directory should be lie under the root; the instance's own directory is a file (a volume
    that refuses, as a read-only or full one would). Ingress starts, publishes while Kafka is
    up, answers 503 rather than 200 when it cannot spool, logs each entry once, counts it,
    deletes none of them, and spools again once its directory works."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "notes.txt").write_text("someone's")
    (root / "has space").mkdir()
    (root / "link").symlink_to(root / "notes.txt")
    (root / "me").write_text("a file where the spool directory should be")
    bridge = instance(procs, own_kafka, prefix, root, "me")
    await bridge.start()
    await bridge.wait_ready(timeout=60)
    url = bridge.url + "/webhooks"
    raw = orjson.dumps(samples.message_body("text", contact="31690000001@whatsapp.eazy.im"))
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with http.post(url, data=raw, headers=headers) as resp:
            assert (resp.status, (await resp.json())["status"]) == (200, "published")
        await own_kafka.stop()
        raw2 = orjson.dumps(samples.message_body("text", contact="31690000002@whatsapp.eazy.im"))
        async with http.post(url, data=raw2, headers=headers) as resp:
            assert resp.status == 503  # it cannot spool: never a 200 it could not keep
        (root / "me").unlink()  # the volume works again

        async def spooled() -> bool:
            async with http.post(url, data=raw2, headers=headers) as resp:
                return resp.status == 200

        await wait_for(spooled, timeout=60, interval=0.5)
    await own_kafka.start()
    assert bridge.proc is not None
    assert bridge.proc.returncode is None
    text = await bridge.metrics()
    for reason in ("foreign", "symlink", "not_a_directory"):
        assert f'spotler_bridge_spool_set_aside_total{{reason="{reason}"}} 1.0' in text
    assert (root / "notes.txt").read_text() == "someone's"
    assert (root / "has space").is_dir()
    assert (root / "link").is_symlink()
    logs = bridge.logs()
    assert logs.count('"spool.root_entry_skipped"') == 3
    assert "Traceback" not in logs
    records = await consume(own_kafka.bootstrap, [f"{prefix}.events.message"], count=2,
                            timeout=60, settle=1.0)  # fmt: skip
    assert len({value(r)["id"] for r in records}) == 2
    assert await bridge.stop() == 0
    report["spool-bad-input"] = {"entries_skipped": 3, "records": 2}
