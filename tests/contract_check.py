"""The one check of every record the tests read back from Kafka: its value against the JSON
Schema of its topic (bridge/contract/schemas, docs/contract.md).

``tests.integration.procs.consume`` and ``value`` call :func:`check_record` where records are
decoded, so no test reads a record of the contract's topics without it. A record on a topic the
contract does not name (a test's own scratch topic) is not checked. A violation fails the test
with the topic, offset and the JSON path of each problem.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from bridge.contract.catalog import TOPICS, Topic, find_topic, topic_schema


@functools.cache
def validator(suffix: str) -> Draft202012Validator:
    spec = next(t for t in TOPICS if t.suffix == suffix)
    schema = topic_schema(spec)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def problems(spec: Topic, doc: Any) -> list[str]:
    """Every violation of ``spec``'s schema in ``doc``, as ``<JSON path>: <message>``; where no
    alternative of a ``oneOf`` fits, the most relevant failure inside it (jsonschema's
    ``best_match``), so the path names the field at fault."""
    errors = [best_match([e]) for e in validator(spec.suffix).iter_errors(doc)]
    errors.sort(key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{e.json_path}: {e.message[:300]}" for e in errors]


def check_value(topic: str, raw: bytes | None, where: str = "") -> None:
    """Fail (AssertionError) when ``raw`` is not a valid value of ``topic``'s schema."""
    spec = find_topic(topic)
    if spec is None:
        return
    try:
        doc = orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:
        raise AssertionError(f"record on {topic}{where} is not JSON: {exc}") from None
    found = problems(spec, doc)
    if found:
        raise AssertionError(
            f"record on {topic}{where} violates {spec.schema}.schema.json:\n  " + "\n  ".join(found)
        )


def check_record(record: Any) -> None:
    """:func:`check_value` for an aiokafka ConsumerRecord."""
    check_value(
        record.topic, record.value, f" (partition {record.partition}, offset {record.offset})"
    )
