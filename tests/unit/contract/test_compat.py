"""Compatibility: the current schemas against the released ones kept in the package
(bridge/contract/schemas/released/v<major>/), like a schema registry's backward check."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.contract import catalog
from bridge.contract.records import SCHEMA_VERSIONS
from tests.contract_compat import breaking_changes

RELEASED = Path(__file__).resolve().parents[3] / "bridge" / "contract" / "schemas" / "released"


def released(name: str) -> dict[str, Any]:
    path = RELEASED / f"v{SCHEMA_VERSIONS[name]}" / f"{name}.schema.json"
    assert path.exists(), f"{name} v{SCHEMA_VERSIONS[name]} has no released copy in {RELEASED}"
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    return doc


@pytest.mark.parametrize("name", catalog.SCHEMA_NAMES)
def test_current_schema_keeps_its_released_major_version(name: str) -> None:
    old = released(name)
    current = catalog.load_schema(name)
    assert old["$id"] == current["$id"]
    assert breaking_changes(old, current) == [], (
        f"{name}.schema.json breaks consumers of {old['$id']}: raise its major version "
        "(records.SCHEMA_VERSIONS) and release it (docs/contract.md, 'Versions')"
    )


def test_every_released_schema_is_still_published() -> None:
    for path in RELEASED.glob("v*/*.schema.json"):
        name = path.name.removesuffix(".schema.json")
        assert name in catalog.SCHEMA_NAMES, f"{path} is released but no longer published"


def _drop(doc: dict[str, Any]) -> None:
    del doc["$defs"]["data"]["properties"]["receivedAt"]


def _require(doc: dict[str, Any]) -> None:
    doc["$defs"]["data"]["required"].append("actor")


def _narrow_type(doc: dict[str, Any]) -> None:
    doc["$defs"]["data"]["properties"]["occurredAt"]["type"] = "string"


def _narrow_enum(doc: dict[str, Any]) -> None:
    doc["$defs"]["data"]["properties"]["direction"]["enum"] = ["inbound", "outbound"]


def _close(doc: dict[str, Any]) -> None:
    doc["$defs"]["data"]["additionalProperties"] = False


def _limit(doc: dict[str, Any]) -> None:
    doc["$defs"]["data"]["properties"]["event"]["maxLength"] = 50


def _pattern(doc: dict[str, Any]) -> None:
    doc["properties"]["source"]["pattern"] = "^/channels/[^/]+$"


def _constrain(doc: dict[str, Any]) -> None:
    doc["allOf"].append({"required": ["subject"]})


BREAKING: dict[str, Callable[[dict[str, Any]], None]] = {
    "$.$defs.data.receivedAt: removed": _drop,
    "$.$defs.data.actor: made required": _require,
    "$.$defs.data.occurredAt: type narrowed": _narrow_type,
    "$.$defs.data.direction: enum narrowed": _narrow_enum,
    "$.$defs.data.(additionalProperties): schema changed": _close,
    "$.$defs.data.event: maxLength lowered to 50": _limit,
    "$.source: pattern changed": _pattern,
    "$.allOf: 1 constraint(s) added": _constrain,
}


@pytest.mark.parametrize("expected", BREAKING)
def test_a_breaking_change_is_named(expected: str) -> None:
    new = copy.deepcopy(released("event"))
    BREAKING[expected](new)
    found = breaking_changes(released("event"), new)
    assert any(f.startswith(expected) for f in found), found


def test_compatible_changes_pass() -> None:
    old = released("result")
    new = copy.deepcopy(old)
    data = new["$defs"]["data"]
    data["properties"]["retryAfter"] = {"type": "number"}  # a new optional field
    data["properties"]["attempts"]["minimum"] = -1  # a limit loosened
    data["properties"]["commandId"]["type"] = ["string", "null"]  # a type widened
    new["properties"]["type"]["enum"].append("im.eazy.command.skipped")  # an enum widened
    new["description"] = "reworded"
    assert breaking_changes(old, new) == []
