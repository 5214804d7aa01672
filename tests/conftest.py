"""Shared fixtures: JSON Schemas of the records."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest
from jsonschema import Draft202012Validator


def load_schema(name: str) -> Any:
    return json.loads(resources.files("bridge").joinpath("schemas", name).read_text())


@pytest.fixture(scope="session")
def event_schema() -> Draft202012Validator:
    return Draft202012Validator(
        load_schema("event.schema.json"), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


@pytest.fixture(scope="session")
def deadletter_schema() -> Draft202012Validator:
    return Draft202012Validator(
        load_schema("deadletter.schema.json"), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def parse_cloudevent(headers: Any, key: bytes | None, value: bytes) -> Any:
    """Parse a Kafka record with the official CloudEvents SDK's Kafka binding (structured mode)."""
    from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka_event

    return from_kafka_event(KafkaMessage(headers=dict(headers), key=key, value=value))
