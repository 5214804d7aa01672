"""Settings rules that only a subprocess test reached, or none (mutation survivors of
`make mutants`, docs/testing.md). Expectations from DESIGN.md, "Configuration" and "Egress"."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.core.config import Settings, variables
from bridge.core.errors import ConfigError
from bridge.core.parsers import is_loopback_url


def problems(environ: dict[str, str], role: str | None = None) -> list[str]:
    try:
        settings = Settings.from_env(environ)
        if role is not None:
            settings.check_role(role)  # type: ignore[arg-type]
    except ConfigError as exc:
        return exc.problems
    return []


@pytest.mark.parametrize("role", ["ingress", "serve"])
def test_ingress_and_serve_refuse_to_start_without_a_token(role: str) -> None:
    """DESIGN: ingress refuses to start without a token unless BRIDGE_WEBHOOK_AUTH=none is set
    explicitly; `bridge serve` runs ingress too. The message names both variables."""
    found = problems({"BRIDGE_SPOTLER_API_KEY": "k" * 20}, role)
    assert len(found) == 1
    assert found[0].startswith("BRIDGE_WEBHOOK_TOKENS:")
    assert "BRIDGE_WEBHOOK_AUTH=none" in found[0]
    assert problems({"BRIDGE_SPOTLER_API_KEY": "k" * 20, "BRIDGE_WEBHOOK_AUTH": "none"}, role) == []


def test_a_bounded_value_out_of_range_names_both_bounds() -> None:
    """A TCP port is 0 to 65535: a value above says so, not only "at least 0"."""
    (found,) = problems({"BRIDGE_HTTP_PORT": "70000"})
    assert found.startswith("BRIDGE_HTTP_PORT:")
    assert "65535" in found


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8800/v3",
        "http://localhost:8800/v3",
        "http://[::1]:8800/v3",
        "http://user:pw@127.0.0.1:8800/v3",
    ],
)
def test_loopback_urls_with_a_port_are_loopback(url: str) -> None:
    """DESIGN: an http:// API URL needs an opt-in only for a host other than loopback."""
    assert is_loopback_url(url)
    assert (
        problems({"BRIDGE_SPOTLER_API_KEY": "k" * 20, "BRIDGE_SPOTLER_API_URL": url}, "egress")
        == []
    )


@pytest.mark.parametrize("url", ["http://api.example.com:80/v3", "http://10.0.0.1:8800/v3"])
def test_other_http_hosts_need_the_opt_in(url: str) -> None:
    assert not is_loopback_url(url)
    (found,) = problems(
        {"BRIDGE_SPOTLER_API_KEY": "k" * 20, "BRIDGE_SPOTLER_API_URL": url}, "egress"
    )
    assert found.startswith("BRIDGE_SPOTLER_API_URL:")


def test_masked_settings_never_show_a_password_in_a_url() -> None:
    """DESIGN: `bridge config` prints the configuration with secrets masked, a password inside a
    URL included (one holding a colon too)."""
    url = "https://svc:pa:ss-w0rd@api.example.com/v3"
    shown = repr(Settings.from_env({"BRIDGE_SPOTLER_API_URL": url}).masked())
    assert "pa:ss-w0rd" not in shown
    assert "svc:pa" not in shown  # the password starts at the first colon (RFC 3986)
    assert "api.example.com/v3" in shown
    assert "svc" in shown


def test_each_variable_lands_where_it_says_and_has_a_help_text() -> None:
    """The one declaration of a setting names the field it fills (nested groups included) and
    says what it is for (what README's configuration table and `bridge config` show)."""
    settings = Settings.from_env({})
    nested = 0
    for var in variables():
        assert var.help.strip(), var.name
        value: Any = settings
        for part in var.path.split("."):
            value = getattr(value, part)
        assert value == var.default, var.name
        nested += "." in var.path
    assert nested > 0
