"""The breaker's open time must end before the shutdown deadline (issue 26, item 7).

A command waiting at the open breaker when SIGTERM comes must not hold the stop past
``BRIDGE_SHUTDOWN_TIMEOUT`` (the process would exit hard, status 1, and commands finished
meanwhile would be sent again): the configuration refuses ``open >= shutdown``.
"""

from __future__ import annotations

import pytest

from bridge.core.config import Settings
from bridge.core.errors import ConfigError


def test_the_defaults_keep_the_breaker_below_the_shutdown_timeout() -> None:
    settings = Settings.from_env({})
    assert settings.egress.circuit_open_seconds < settings.shutdown_timeout


@pytest.mark.parametrize(("open_s", "shutdown_s"), [("30", "25"), ("25", "25")])
def test_a_breaker_open_as_long_as_the_shutdown_is_refused(open_s: str, shutdown_s: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(
            {"BRIDGE_CIRCUIT_OPEN_SECONDS": open_s, "BRIDGE_SHUTDOWN_TIMEOUT": shutdown_s}
        )
    [problem] = raised.value.problems
    assert problem.startswith("BRIDGE_CIRCUIT_OPEN_SECONDS:")
    assert "BRIDGE_SHUTDOWN_TIMEOUT" in problem


def test_a_shorter_breaker_is_accepted() -> None:
    settings = Settings.from_env(
        {"BRIDGE_CIRCUIT_OPEN_SECONDS": "24.5", "BRIDGE_SHUTDOWN_TIMEOUT": "25"}
    )
    assert settings.egress.circuit_open_seconds == 24.5
