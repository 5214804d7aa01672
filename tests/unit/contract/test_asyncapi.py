"""docs/asyncapi.yaml: generated from the schemas (the committed file is the generator's output),
every topic a channel, every reference resolvable; ``bridge contract`` prints and writes it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from bridge.contract import catalog
from bridge.contract.asyncapi import asyncapi_yaml, document
from bridge.runtime.cli import main

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "docs" / "asyncapi.yaml"


def test_committed_document_is_the_generated_one() -> None:
    assert COMMITTED.read_text() == asyncapi_yaml(), (
        "docs/asyncapi.yaml is stale: run `bridge contract asyncapi --out docs`"
    )


def test_yaml_reads_back_as_the_document() -> None:
    assert yaml.safe_load(asyncapi_yaml()) == document()


def test_every_topic_is_a_channel_under_the_prefix() -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {"{prefix}." + t.suffix for t in catalog.TOPICS}
    assert doc["components"]["parameters"]["prefix"]["default"] == "spotler"
    for channel_id, channel in doc["channels"].items():
        assert channel["parameters"] == {"prefix": {"$ref": "#/components/parameters/prefix"}}
        policy = ["compact"] if channel_id == "commands-status" else ["delete"]
        assert channel["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"] == policy
        message = doc["components"]["messages"][channel_id]
        assert "channelJid" in message["bindings"]["kafka"]["key"]["description"] or (
            channel_id.endswith("deadletter") or channel_id == "commands-status"
        )
        actions = {o["action"] for o in doc["operations"].values() if channel_id in str(o)}
        assert actions == {"send", "receive"}


def test_conversation_topics_are_keyed_by_channel_and_contact() -> None:
    messages = document()["components"]["messages"]
    for name in ("events-message", "commands-send-message", "commands-results", "commands-sent"):
        assert messages[name]["bindings"]["kafka"]["key"]["description"].startswith(
            "<channelJid>/<contactJid>"
        )


def test_the_status_topic_is_keyed_by_command_and_its_readers_groups_are_named() -> None:
    doc = document()
    key = doc["components"]["messages"]["commands-status"]["bindings"]["kafka"]["key"]
    assert key["description"].startswith("<command kind>/<command id>")
    groups = {
        name: op["bindings"]["kafka"]["groupId"]["default"]
        for name, op in doc["operations"].items()
        if "bindings" in op
    }
    assert groups == {
        "read-commands-send-message": "spotler-bridge-egress",
        "read-commands-update-conversation": "spotler-bridge-egress",
        "read-commands-sent": "spotler-bridge-status",
    }


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return found + [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def test_every_reference_resolves_inside_the_document() -> None:
    doc = document()
    refs = _refs(doc)
    assert len(refs) > 50
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            assert part in node, f"{ref}: no {part!r}"
            node = node[part]


def test_cli_prints_the_schemas(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contract", "schemas"]) == 0
    printed = orjson.loads(capsys.readouterr().out)
    assert {k: v["$id"] for k, v in printed.items()} == {
        f"{n}.schema.json": catalog.load_schema(n)["$id"] for n in catalog.SCHEMA_NAMES
    }


def test_cli_writes_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contract", "schemas", "--out", str(tmp_path / "vendor")]) == 0
    assert main(["contract", "asyncapi", "--out", str(tmp_path / "vendor")]) == 0
    written = sorted(p.name for p in (tmp_path / "vendor").iterdir())
    assert written == sorted(["asyncapi.yaml", *(f"{n}.schema.json" for n in catalog.SCHEMA_NAMES)])
    assert (tmp_path / "vendor" / "asyncapi.yaml").read_text() == COMMITTED.read_text()
    assert "wrote" in capsys.readouterr().out


def test_cli_out_to_a_path_that_cannot_be_written_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "contract", "asyncapi", "--out", str(blocker / "sub")],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2
    assert f"bridge contract: cannot write to {blocker / 'sub'}" in proc.stderr
    assert proc.stdout == ""
