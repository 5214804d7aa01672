"""The operator commands ``bridge produce`` and ``bridge tail`` against the real broker."""

from __future__ import annotations

import asyncio
import os
import sys

import orjson
import pytest

from tests.contract_check import check_value

pytestmark = pytest.mark.kafka


async def run(args: list[str], env: dict[str, str], stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out, err


async def test_produce_then_tail(kafka, prefix) -> None:
    env = {**os.environ, "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": kafka, "BRIDGE_TOPIC_PREFIX": prefix}
    command = {
        "id": "c1",
        "channelJid": "31612345678@whatsapp.eazy.im",
        "contactJid": "31611111111@whatsapp.eazy.im",
        "message": {"type": "text", "body": "hi"},
    }
    code, _, err = await run(["produce", "send-message"], env, orjson.dumps(command) + b"\n\n")
    assert code == 0, err
    assert f"{prefix}.commands.send-message partition".encode() in err
    code, out, err = await run(
        [
            "tail",
            "--from-beginning",
            "--max",
            "1",
            "--timeout",
            "30",
            f"{prefix}.commands.send-message",
        ],
        env,
    )
    assert code == 0, err
    line = orjson.loads(out.splitlines()[0])
    check_value(f"{prefix}.commands.send-message", orjson.dumps(line["value"]))
    assert line["value"] == command
    assert line["key"] == "31612345678@whatsapp.eazy.im/31611111111@whatsapp.eazy.im"
    code, _, err = await run(["produce", "send-message"], env, b"{not json\n")
    assert code == 2
