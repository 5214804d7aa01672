"""Shared fixtures: JSON Schemas of the records, and the real broker and processes.

A missing broker is a failure, never a skip: ``make test`` and CI start it first.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from jsonschema import Draft202012Validator

from bridge.contract.catalog import load_schema as _load
from tests.integration.procs import ProcessFactory


def load_schema(name: str) -> Any:
    return _load(name.removesuffix(".schema.json"))


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


# The broker scripts/test.sh starts (port 39092), never the `make run` broker on 9092.
KAFKA = os.environ.get("BRIDGE_TEST_KAFKA", "127.0.0.1:39092")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return KAFKA


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> str:
    """The broker's address, after checking that it answers (fails the test if it does not)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
    except Exception as exc:  # any failure to reach the broker is a test failure
        await admin.close()
        pytest.fail(
            f"Kafka is not reachable at {kafka_bootstrap} ({exc!r}); "
            "start it with `make kafka-up` (make test does this)"
        )
    await admin.close()
    return kafka_bootstrap


@pytest.fixture
def prefix() -> str:
    """A topic prefix of this test's own, so tests never see each other's records."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def procs(tmp_path) -> AsyncIterator[ProcessFactory]:
    factory = ProcessFactory(tmp_path)
    try:
        yield factory
    finally:
        await factory.stop_all()
