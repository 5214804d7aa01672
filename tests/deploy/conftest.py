"""Fixtures of tests/deploy: the fault tests' own broker, to stop and start mid-run."""

from tests.faults.conftest import own_kafka  # noqa: F401
