"""The log redactor gets every secret of a settings tree: the bridge's and the simulator's own
(the simulator keeps its own ``Secret`` type: it imports nothing of the bridge's core)."""

from __future__ import annotations

from bridge.core.config import Settings
from bridge.runtime.cli import _secret_values
from bridge.simulator import SimulatorSettings


def test_the_simulators_keys_and_admin_token_reach_the_redactor() -> None:
    sim = SimulatorSettings.from_env(
        {
            "SIMULATOR_API_KEYS": "key-one-123,key-two-456",
            "SIMULATOR_ADMIN_TOKEN": "admin-token-0123456789",
        }
    )
    assert sorted(_secret_values(sim)) == ["admin-token-0123456789", "key-one-123", "key-two-456"]


def test_the_bridges_secrets_reach_the_redactor() -> None:
    settings = Settings.from_env(
        {"BRIDGE_WEBHOOK_TOKENS": "tok-0123456789abcdef", "BRIDGE_SPOTLER_API_KEY": "api-key-42"}
    )
    assert {"tok-0123456789abcdef", "api-key-42"} <= set(_secret_values(settings))
