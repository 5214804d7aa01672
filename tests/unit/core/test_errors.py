"""The error tree's messages and defaults (mutation survivors of `make mutants`, docs/testing.md).

Expectations from DESIGN.md: "an invalid value stops start-up with a message naming the
variable" (Configuration); only network errors, timeouts, 408, 429 and 5xx retry without a
platform code, never another 4xx (Egress).
"""

from __future__ import annotations

import pytest

from bridge.core.errors import ApiError, ConfigError, is_retriable


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 302])
def test_a_status_alone_is_not_a_network_error(status: int) -> None:
    """Without ``network=``, a 4xx (other than 408 and 429) or a 3xx is not retried."""
    assert is_retriable(status, None) is False
    assert ApiError(status, None, "x").retriable is False


def test_config_error_names_each_variable_on_a_line_of_its_own() -> None:
    """Each problem appears whole, alone on its line, so a person can read which variable."""
    problems = ["BRIDGE_HTTP_PORT: not a whole number", "BRIDGE_LOG_LEVEL: one of debug, info"]
    lines = [line.strip() for line in str(ConfigError(problems)).splitlines()]
    assert lines[1:] == problems
    assert ConfigError(problems).problems == problems
