"""``bridge config`` and token rules (issue 15 item 12), run as the real console command."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from bridge.core.config import Settings
from bridge.core.errors import ConfigError

LONG = "a-webhook-token-of-24chr"


def bridge(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        env={"PATH": "", **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_config_masks_credentials_embedded_in_urls() -> None:
    """A password (or a lone token) in the API URL never reaches the output."""
    result = bridge(
        "config",
        env={
            "BRIDGE_WEBHOOK_TOKENS": LONG,
            "BRIDGE_SPOTLER_API_URL": "https://bridge:url-pass-4711@api.example.test/v3",
        },
    )
    assert result.returncode == 0, result.stderr
    assert "url-pass-4711" not in result.stdout
    assert LONG not in result.stdout
    shown = orjson.loads(result.stdout)
    assert shown["api"]["url"] == "https://bridge:****@api.example.test/v3"

    lone = bridge("config", env={"BRIDGE_SPOTLER_API_URL": "https://tok-4711@api.example.test/v3"})
    assert lone.returncode == 0, lone.stderr
    assert "tok-4711" not in lone.stdout


@pytest.mark.parametrize("value", ["abcd", f"{LONG},short-15-chars!"])
def test_short_webhook_tokens_are_refused_naming_the_variable(value: str) -> None:
    """A token under 16 characters stops start-up with a message naming the variable."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"BRIDGE_WEBHOOK_TOKENS": value})
    assert "BRIDGE_WEBHOOK_TOKENS" in str(caught.value)
    assert "16" in str(caught.value)
    assert value.split(",")[-1] not in str(caught.value)  # the secret is not echoed
    result = bridge("ingress", env={"BRIDGE_WEBHOOK_TOKENS": value})
    assert result.returncode == 2
    assert "BRIDGE_WEBHOOK_TOKENS" in result.stderr


def test_sixteen_characters_are_enough() -> None:
    """Exactly 16 characters is accepted."""
    settings = Settings.from_env({"BRIDGE_WEBHOOK_TOKENS": "0123456789abcdef"})
    assert [t.reveal() for t in settings.ingress.webhook_tokens] == ["0123456789abcdef"]
