"""The published schemas (bridge/contract/schemas): well-formed, one per topic, shipped in the
package, their examples valid, and named by the ``dataschema`` of every CloudEvent written."""

from __future__ import annotations

import dataclasses
import fnmatch
import tomllib
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from bridge.contract import catalog
from bridge.contract.records import Topics
from bridge.contract.status import status_record, with_command
from bridge.core.delivery import Delivery
from bridge.core.errors import ApiError
from bridge.egress.commands import Position, deadletter_record, result_record
from bridge.egress.sendlog import entry_record
from bridge.ingress.normalize import deadletter, normalize
from tests import samples
from tests.contract_check import check_value, problems

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = ROOT / "bridge" / "contract" / "schemas"
PREFIX = "spotler"


def file_schema(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads((SCHEMAS / f"{name}.schema.json").read_bytes())
    return doc


@pytest.mark.parametrize("name", catalog.SCHEMA_NAMES)
def test_schema_is_valid_2020_12_with_a_versioned_id(name: str) -> None:
    schema = file_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == f"https://spotler-bridge/schemas/v1/{name}.schema.json"
    assert catalog.load_schema(name) == schema


def test_every_schema_file_is_in_the_catalog() -> None:
    assert sorted(p.name for p in SCHEMAS.glob("*.json")) == sorted(
        f"{n}.schema.json" for n in catalog.SCHEMA_NAMES
    )


def test_every_topic_of_the_bridge_has_a_schema() -> None:
    topics = Topics(PREFIX)
    names = {
        *topics.all_event_topics(),
        topics.send_message,
        topics.update_conversation,
        topics.results,
        topics.commands_deadletter,
        topics.sent,
        topics.status,
    }
    assert {t.name(PREFIX) for t in catalog.TOPICS} == names
    assert {t.schema for t in catalog.TOPICS} == set(catalog.SCHEMA_NAMES)


def test_schemas_are_package_data() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["bridge"]
    for path in SCHEMAS.rglob("*.json"):
        rel = path.relative_to(ROOT / "bridge").as_posix()
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), f"{rel} is not package data"


@pytest.mark.parametrize("spec", catalog.TOPICS, ids=lambda t: t.suffix)
def test_each_topic_has_examples_that_validate(spec: catalog.Topic) -> None:
    examples = [
        e
        for e in catalog.load_schema(spec.schema)["examples"]
        if not spec.types or e["type"] in spec.types
    ]
    assert examples, f"{spec.schema}.schema.json has no example for {spec.suffix}"
    for example in examples:
        assert problems(spec, example) == []


def test_an_event_on_another_types_topic_is_a_violation() -> None:
    example = catalog.load_schema("event")["examples"][0]  # im.eazy.webhook.message
    receipt = catalog.topic_of(PREFIX, f"{PREFIX}.events.receipt")
    assert receipt is not None
    assert problems(receipt, example) == [
        "$.type: 'im.eazy.webhook.message' is not one of ['im.eazy.webhook.receipt']"
    ]


def test_a_violation_names_its_json_path() -> None:
    example = catalog.load_schema("event")["examples"][1]  # a receipt
    del example["data"]["receipt"]["status"]
    example["data"]["receivedAt"] = "yesterday"
    with pytest.raises(AssertionError) as caught:
        check_value(f"{PREFIX}.events.receipt", orjson.dumps(example), " (offset 3)")
    text = str(caught.value)
    assert f"record on {PREFIX}.events.receipt (offset 3) violates event.schema.json" in text
    assert "$.data.receipt: 'status' is a required property" in text
    assert "$.data.receivedAt: 'yesterday' is not a 'date-time'" in text


def test_records_on_other_topics_are_not_checked() -> None:
    check_value("scratch-topic", b"not json")
    check_value(f"{PREFIX}.events.nothing", b"[]")


# --- dataschema: every CloudEvent the bridge writes names its schema's versioned $id ----------
TOPICS = Topics(PREFIX)
POSITION = Position(f"{PREFIX}.commands.send-message", 0, 12, b"k", 0)


def _delivery(message_id: str | None) -> Delivery:
    delivery = Delivery("send-message", "c1", received_at=1_700_000_000.0)
    delivery.message_id = message_id
    if message_id is None:
        delivery.add(
            state="failed", status="x" * 100, at="2023-11-14T22:13:20.500Z", source="egress"
        )
        return delivery
    delivery.add(state="sent", status="sent", at="2023-11-14T22:13:20.500Z", source="egress")
    for n, status in enumerate(["delivered", "on-the-moon", None, *["read"] * 40]):
        delivery.add(
            state=None if n % 2 else "read",
            status=status,
            at="2023-11-14T22:13:21.000Z",
            source="receipt",
            event_id=f"receipt/{message_id}/{n}",
        )
    return delivery


def _written() -> list[tuple[str, bytes]]:
    body = orjson.dumps(samples.message_body("text"))
    receipt = orjson.dumps({"type": "receipt", "message": {"id": "m1", "status": "read"}})
    named = normalize(receipt, TOPICS, received_at=1_700_000_000.0)
    sends = [
        entry_record(
            TOPICS,
            command_id="c1",
            kind="send-message",
            channel=samples.CHANNEL,
            contact=samples.CONTACT,
            position=POSITION,
            response={"id": "m1"},
        ),
        entry_record(
            TOPICS,
            command_id="c2",
            kind="send-message",
            channel=None,
            contact=None,
            position=Position(f"{PREFIX}.commands.send-message", 0, 13, None, 0),
            failed="invalid: message: required",
        ),
    ]
    records = [
        normalize(body, TOPICS, received_at=1_700_000_000.0),
        normalize(receipt, TOPICS, received_at=1_700_000_000.0),
        dataclasses.replace(named, value=with_command(named.value, "c1")),
        *(r for r in sends if r is not None),
        status_record(TOPICS, _delivery("m1"), samples.CHANNEL, samples.CONTACT, 1_700_000_001.0),
        status_record(TOPICS, _delivery(None), None, None, 1_700_000_001.0),
        normalize(b'{"type": "brand-new"}', TOPICS, received_at=1_700_000_000.0),
        deadletter(b"\xff not json", TOPICS, "not valid JSON", 1_700_000_000.0),
        result_record(
            TOPICS,
            command_id="c1",
            kind="send-message",
            channel=samples.CHANNEL,
            contact=samples.CONTACT,
            attempts=1,
            position=POSITION,
            response={"id": "m1"},
        ),
        result_record(
            TOPICS,
            command_id="c2",
            kind="update-conversation",
            channel=samples.CHANNEL,
            contact=samples.CONTACT,
            attempts=2,
            position=POSITION,
            error=ApiError(404, 1009, "Not found", trace_id="t"),
        ),
        result_record(
            TOPICS,
            command_id="c3",
            kind="send-message",
            channel=None,
            contact=None,
            attempts=0,
            position=POSITION,
            reason="invalid: message: required",
        ),
        deadletter_record(TOPICS, b"{}", POSITION, "message: required"),
    ]
    return [(r.topic, r.value) for r in records]


@pytest.mark.parametrize(("topic", "raw"), _written())
def test_every_cloudevent_written_names_its_versioned_schema(topic: str, raw: bytes) -> None:
    spec = catalog.find_topic(topic)
    assert spec is not None
    assert orjson.loads(raw)["dataschema"] == file_schema(spec.schema)["$id"]
    check_value(topic, raw)


def test_the_written_records_cover_every_topic_schema() -> None:
    written = {catalog.find_topic(topic) for topic, _ in _written()}
    assert {spec.schema for spec in written if spec is not None} == set(catalog.SCHEMA_NAMES) - {
        "send-message",
        "update-conversation",
    }


def test_a_named_receipt_carries_its_command_and_stays_valid() -> None:
    named = orjson.loads(_written()[2][1])
    assert (named["commandid"], named["data"]["commandId"]) == ("c1", "c1")


@pytest.mark.parametrize(
    ("suffix", "change", "problem"),
    [
        ("commands.sent", {"state": "sent", "messageId": None}, "$.data.messageId: None is not"),
        ("commands.sent", {"state": "failed", "messageId": None}, "$.data: 'reason' is a required"),
        ("commands.status", {"state": None}, "$.data.state: None is not one of"),
        ("commands.status", {"history": []}, "$.data.history: [] should be non-empty"),
    ],
)
def test_status_records_that_break_the_contract_are_named(
    suffix: str, change: dict[str, Any], problem: str
) -> None:
    spec = next(t for t in catalog.TOPICS if t.suffix == suffix)
    example = catalog.load_schema(spec.schema)["examples"][0]
    example["data"].update(change)
    assert any(p.startswith(problem) for p in problems(spec, example)), problems(spec, example)
