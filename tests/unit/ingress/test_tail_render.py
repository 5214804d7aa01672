"""``bridge tail`` renders every record (issue 15 item 9): raw text for what it cannot render."""

from __future__ import annotations

import orjson
from aiokafka import ConsumerRecord

from bridge.kafka.cli import render


def record(value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="spotler.events.typing",
        partition=0,
        offset=7,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=(),
    )


def test_a_value_too_deep_to_re_encode_is_printed_raw() -> None:
    """A record nested 300 levels (orjson re-encodes at most 255) prints as raw text."""
    value = b'{"data":{"payload":' + b"[" * 300 + b"]" * 300 + b"}}"
    line = orjson.loads(render(record(value)))
    assert line["value"] == value.decode()
    assert (line["topic"], line["offset"], line["key"]) == ("spotler.events.typing", 7, "k")


def test_json_values_are_printed_as_json() -> None:
    """An ordinary record prints its parsed value; a non-JSON one its text."""
    assert orjson.loads(render(record(b'{"a":1}')))["value"] == {"a": 1}
    assert orjson.loads(render(record(b"\xffnot json")))["value"] == "\ufffdnot json"
