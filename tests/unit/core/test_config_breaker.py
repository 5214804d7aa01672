"""The breaker's open time must end before the shutdown deadline (issue 26, item 7).

A command waiting at the open breaker when SIGTERM comes must not hold the stop past
``BRIDGE_SHUTDOWN_TIMEOUT`` (the process would exit hard and commands finished meanwhile would
be sent again): the roles that run egress refuse ``open >= shutdown``; ingress has no breaker.
"""

from __future__ import annotations

import pytest

from bridge.core.config import Settings
from bridge.core.errors import ConfigError

KEY = {"BRIDGE_SPOTLER_API_KEY": "k", "BRIDGE_WEBHOOK_TOKENS": "t" * 32}


def test_the_defaults_keep_the_breaker_below_the_shutdown_timeout() -> None:
    settings = Settings.from_env(KEY)
    assert settings.egress.circuit_open_seconds < settings.shutdown_timeout
    settings.check_role("serve")


@pytest.mark.parametrize("role", ["egress", "serve"])
@pytest.mark.parametrize(("open_s", "shutdown_s"), [("30", "25"), ("25", "25")])
def test_a_breaker_open_as_long_as_the_shutdown_is_refused(
    role: str, open_s: str, shutdown_s: str
) -> None:
    settings = Settings.from_env(
        {**KEY, "BRIDGE_CIRCUIT_OPEN_SECONDS": open_s, "BRIDGE_SHUTDOWN_TIMEOUT": shutdown_s}
    )
    with pytest.raises(ConfigError) as raised:
        settings.check_role(role)  # type: ignore[arg-type]
    [problem] = raised.value.problems
    assert problem.startswith("BRIDGE_CIRCUIT_OPEN_SECONDS:")
    assert "BRIDGE_SHUTDOWN_TIMEOUT" in problem


def test_ingress_has_no_breaker_to_check() -> None:
    Settings.from_env({**KEY, "BRIDGE_SHUTDOWN_TIMEOUT": "4"}).check_role("ingress")


def test_a_shorter_breaker_is_accepted() -> None:
    settings = Settings.from_env(
        {**KEY, "BRIDGE_CIRCUIT_OPEN_SECONDS": "24.5", "BRIDGE_SHUTDOWN_TIMEOUT": "25"}
    )
    settings.check_role("egress")
    assert settings.egress.circuit_open_seconds == 24.5
