"""``Retry-After`` (issue 25 item 2): parsed as RFC 9110 says, capped at BRIDGE_RETRY_AFTER_MAX.

RFC 9110 §10.2.3: ``Retry-After = HTTP-date / delay-seconds``, ``delay-seconds = 1*DIGIT``;
§5.6.7: an HTTP-date is an IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``), and recipients
also accept the obsolete rfc850-date (``Sunday, 06-Nov-94 08:49:37 GMT``) and asctime-date
(``Sun Nov  6 08:49:37 1994``), all in GMT; the RFC's example instant is 784111777 (Unix time).
A malformed value counts as absent (the issue). A decimal fraction (``0.5``, which the
simulator sends for fractions) is tolerated as the one extension.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from bridge.api.client import parse_retry_after
from bridge.core.config import Settings
from bridge.core.errors import ApiError, ConfigError
from bridge.egress.retry_after import RetryAfterCap
from bridge.telemetry.metrics import Metrics
from tests.fakes import FakeApi
from tests.unit.egress.test_runner_fakes import Harness, command, position

RFC_EXAMPLE = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT
A = "31612345678@whatsapp.eazy.im"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("120", 120.0), ("0", 0.0), (" 7 ", 7.0), ("86400", 86400.0), ("0.5", 0.5)],
)
def test_delay_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:47 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:47 GMT",  # rfc850-date
        "Sun Nov  6 08:49:47 1994",  # asctime-date
    ],
)
def test_the_three_http_date_forms(value: str) -> None:
    assert parse_retry_after(value, now=RFC_EXAMPLE) == 10.0


def test_an_http_date_a_year_ahead_and_one_in_the_past() -> None:
    assert parse_retry_after("Mon, 06 Nov 1995 08:49:37 GMT", now=RFC_EXAMPLE) == 365 * 86400.0
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:36 GMT", now=RFC_EXAMPLE) == 0.0


def test_an_rfc850_year_more_than_50_years_ahead_is_in_the_past() -> None:
    """RFC 9110: a two-digit year that would be over 50 years in the future is the most recent
    past year with those digits: in 2026, ``-80`` is 1980, not 2080."""
    now = 1_780_000_000.0  # 2026
    assert parse_retry_after("Sunday, 06-Nov-80 08:49:37 GMT", now=now) == 0.0
    ahead = parse_retry_after("Monday, 06-Nov-28 08:49:37 GMT", now=now)
    assert ahead is not None
    assert ahead > 0


@pytest.mark.parametrize(
    "value",
    [
        None, "", "soon", "-1", "+5", "1e3", "inf", "Infinity", "nan", "5 s", "0x10", "1_000",
        "١٢", ".5", "5.", "1e400",
        "Sun, 06 Nov 1994 08:49:37 +0200", "Sun, 06 Nov 1994 08:49:37 gmt",
        "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 25:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT", "06 Nov 1994 08:49:37 GMT",
    ],
)  # fmt: skip
def test_a_malformed_value_counts_as_absent(value: str | None) -> None:
    assert parse_retry_after(value, now=RFC_EXAMPLE) is None


def capped(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("spotler_bridge_retry_after_capped_total")
    assert value is not None
    return value


def throttled(seconds: float | None, text: str | None = None) -> ApiError:
    return ApiError(429, 1003, "slow", retry_after=seconds, retry_after_text=text)


def test_a_value_over_the_limit_is_capped_and_counted() -> None:
    metrics = Metrics(CollectorRegistry())
    cap = RetryAfterCap(300.0, metrics)
    assert capped(metrics) == 0
    assert cap.honoured(A, throttled(86400.0, "86400")) == 300.0
    assert capped(metrics) == 1
    assert cap.honoured(A, throttled(300.0, "300")) == 300.0
    assert cap.honoured(A, throttled(12.0, "12")) == 12.0
    assert cap.honoured(A, throttled(None, "soon")) is None
    assert capped(metrics) == 1


def test_the_value_received_is_logged_once_per_pause() -> None:
    metrics = Metrics(CollectorRegistry())
    cap = RetryAfterCap(0.2, metrics)
    with capture_logs() as logs:
        cap.honoured(A, throttled(86400.0, "86400"))
        cap.honoured(A, throttled(86400.0, "86400"))  # the same pause: no second line
        time.sleep(1.1)  # past the pause (at least the 1 s floor): a new pause logs again
        cap.honoured(A, throttled(None, "Fri, 31 Dec 9999 23:59:59 +0100"))
    lines = [e for e in logs if e["event"] == "egress.retry_after"]
    assert [(e["received"], e["honoured_s"], e["capped"]) for e in lines] == [
        ("86400", 0.2, True),
        ("Fri, 31 Dec 9999 23:59:59 +0100", None, False),
    ]


def test_the_limit_is_a_validated_setting() -> None:
    assert Settings.from_env({}).egress.retry_after_max == 300.0
    assert Settings.from_env({"BRIDGE_RETRY_AFTER_MAX": "60"}).egress.retry_after_max == 60.0
    for bad in ("0", "-5", "inf", "nan", "soon"):
        with pytest.raises(ConfigError, match="BRIDGE_RETRY_AFTER_MAX"):
            Settings.from_env({"BRIDGE_RETRY_AFTER_MAX": bad})


async def test_the_runner_pauses_no_longer_than_the_limit() -> None:
    """A 429 asking for a day is retried after the cap (here 0.2 s, so the 1 s floor)."""
    api = FakeApi(throttled(86400.0, "86400"), {"id": "m-1"})
    h: Any = Harness(api, retry_after_max=0.2)
    outcome = await asyncio.wait_for(h.runner.run(position(), "send-message", None, command()), 5)
    assert outcome == "succeeded"
    assert len(api.calls) == 2
    assert capped(h.metrics) == 1
