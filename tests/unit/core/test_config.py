"""Settings from the environment: defaults, validation naming the variable, masked secrets."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields, is_dataclass

import orjson
import pytest

from bridge.core.config import Settings
from bridge.core.errors import ConfigError
from bridge.core.parsers import Secret


def test_defaults_match_the_design() -> None:
    s = Settings.from_env({})
    assert s.kafka.bootstrap_servers == "localhost:9092"
    assert s.kafka.security_protocol == "PLAINTEXT"
    assert s.kafka.topic_prefix == "spotler"
    assert (s.ingress.host, s.ingress.port, s.ops_port) == ("0.0.0.0", 8080, 9090)
    assert s.ingress.max_body_bytes == 1024 * 1024
    assert s.spool.dir == "./var/spool"
    assert s.api.url == "https://api.eazy.im/v3"
    assert s.egress.group_id == "spotler-bridge-egress"
    assert (s.log_level, s.log_format) == ("info", "json")


def test_settings_are_frozen() -> None:
    s = Settings.from_env({})
    with pytest.raises(AttributeError):
        s.ops_port = 1  # type: ignore[misc]


def test_tokens_are_split_and_secret() -> None:
    a, b, c = "a" * 16, "b" * 16, "c" * 16
    s = Settings.from_env({"BRIDGE_WEBHOOK_TOKENS": f" {a}, {b} ,,{c} "})
    assert [t.reveal() for t in s.ingress.webhook_tokens] == [a, b, c]
    assert a not in repr(s.ingress.webhook_tokens)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BRIDGE_HTTP_PORT", "eighty"),
        ("BRIDGE_HTTP_PORT", "70000"),
        ("BRIDGE_OPS_PORT", "-1"),
        ("BRIDGE_KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("BRIDGE_LOG_LEVEL", "loud"),
        ("BRIDGE_LOG_FORMAT", "xml"),
        ("BRIDGE_TOPIC_PREFIX", "has space"),
        ("BRIDGE_SPOTLER_API_URL", "ftp://x"),
        ("BRIDGE_WEBHOOK_AUTH", "maybe"),
        ("BRIDGE_PUBLISH_TIMEOUT", "nan"),
        ("BRIDGE_MAX_BODY_BYTES", "10"),
    ],
)
def test_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    assert any(p.startswith(name) for p in info.value.problems)


def test_all_bad_variables_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"BRIDGE_HTTP_PORT": "x", "BRIDGE_OPS_PORT": "y"})
    assert len(info.value.problems) == 2


def test_sasl_needs_mechanism_and_credentials() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"BRIDGE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl"})
    assert "BRIDGE_KAFKA_SASL_MECHANISM" in str(info.value)
    s = Settings.from_env(
        {
            "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "BRIDGE_KAFKA_SASL_MECHANISM": "scram-sha-512",
            "BRIDGE_KAFKA_SASL_USERNAME": "u",
            "BRIDGE_KAFKA_SASL_PASSWORD": "p",
        }
    )
    assert s.kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert s.kafka.sasl_password == Secret("p")


def test_ingress_refuses_to_start_without_tokens() -> None:
    s = Settings.from_env({})
    with pytest.raises(ConfigError, match="BRIDGE_WEBHOOK_TOKENS"):
        s.check_role("ingress")
    Settings.from_env({"BRIDGE_WEBHOOK_AUTH": "none"}).check_role("ingress")
    Settings.from_env({"BRIDGE_WEBHOOK_TOKENS": "t" * 16}).check_role("ingress")


def test_egress_needs_an_api_key() -> None:
    with pytest.raises(ConfigError, match="BRIDGE_SPOTLER_API_KEY"):
        Settings.from_env({"BRIDGE_WEBHOOK_TOKENS": "t" * 16}).check_role("serve")
    Settings.from_env({"BRIDGE_SPOTLER_API_KEY": "k"}).check_role("egress")


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_bridge_config_prints_masked_settings() -> None:
    env = {
        "BRIDGE_WEBHOOK_TOKENS": "tok-123-0123456789",
        "BRIDGE_SPOTLER_API_KEY": "key-456",
        "BRIDGE_KAFKA_SASL_PASSWORD": "pw-789",
        "PATH": "",
    }
    result = run_cli("config", env=env)
    assert result.returncode == 0, result.stderr
    for secret in ("tok-123-0123456789", "key-456", "pw-789"):
        assert secret not in result.stdout
    shown = orjson.loads(result.stdout)
    assert shown["ingress"]["webhook_tokens"] == ["****"]
    assert shown["api"]["api_key"] == "****"


def test_bridge_config_exits_2_naming_the_variable() -> None:
    result = run_cli("config", env={"BRIDGE_HTTP_PORT": "nope", "PATH": ""})
    assert result.returncode == 2
    assert "BRIDGE_HTTP_PORT" in result.stderr


def test_ingress_without_tokens_exits_2() -> None:
    result = run_cli("ingress", env={"PATH": ""})
    assert result.returncode == 2
    assert "BRIDGE_WEBHOOK_TOKENS" in result.stderr


def test_repeated_library_log_lines_are_held_back() -> None:
    """A library logging the same line in a loop shows it once per window, then a count."""
    import logging

    from bridge.telemetry.logs import RepeatFilter

    now = [0.0]
    f = RepeatFilter(window=10, clock=lambda: now[0])

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, msg, None, None)

    shown = [f.filter(record("Unable connect to node %s")) for _ in range(1000)]
    assert shown.count(True) == 1
    assert f.filter(record("another message"))
    now[0] = 11.0
    again = record("Unable connect to node %s")
    assert f.filter(again)
    assert "999 more" in again.getMessage()


async def test_log_lines_of_one_loop_turn_are_written_together() -> None:
    """Lines logged in one turn of the event loop reach the stream in one write."""
    import asyncio
    import io

    from bridge.telemetry.logs import CoalescingLogger

    class Counting(io.BytesIO):
        writes = 0

        def write(self, data) -> int:
            Counting.writes += 1
            return super().write(data)

    stream = Counting()
    sink = CoalescingLogger(stream)
    for n in range(100):
        sink.info(b'{"n": %d}' % n)
    assert stream.getvalue() == b""  # nothing yet: written at the end of this loop turn
    await asyncio.sleep(0)
    assert stream.getvalue().count(b"\n") == 100
    assert Counting.writes == 1
    sink.error(b'{"boom": 1}')  # errors are written at once
    assert stream.getvalue().endswith(b'{"boom": 1}\n')


def float_settings() -> list[str]:
    """Every setting whose value is a float (timeouts, rates, ages), by its variable name."""
    defaults = Settings.from_env({})
    names: list[str] = []
    for section in fields(defaults):
        value = getattr(defaults, section.name)
        pairs = [(f, getattr(value, f.name)) for f in fields(value)] if is_dataclass(value) else []
        pairs = pairs or [(section, value)]
        names += [f.metadata["env"] for f, v in pairs if isinstance(v, float)]
    return names


def test_every_float_setting_is_found() -> None:
    assert {
        "BRIDGE_PUBLISH_TIMEOUT",
        "BRIDGE_SHUTDOWN_TIMEOUT",
        "BRIDGE_SPOTLER_API_TIMEOUT",
    } <= set(float_settings())


@pytest.mark.parametrize("value", ["inf", "Infinity", "+inf", "1e999", "nan", "-nan"])
@pytest.mark.parametrize("name", float_settings())
def test_a_float_setting_refuses_infinity_and_nan_naming_the_variable(
    name: str, value: str
) -> None:
    """Issue 26, item 11: ``inf`` passes every lower bound, so a timeout of ``inf`` waited for
    ever; it is refused like NaN, with a message naming the variable."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    problems = [p for p in info.value.problems if p.startswith(name)]
    assert problems, info.value.problems
    assert "finite" in problems[0], problems[0]
