"""Ingress's channel list refresh: a failure keeps the last list and logs once; recovery logs.
Each refresh is counted by outcome and the age of the last good list is a gauge computed at
scrape time (issue 25 item 3)."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from bridge.core.errors import ApiError
from bridge.ingress.channels import ChannelSet
from bridge.runtime import channel_list
from bridge.telemetry.metrics import Metrics

A = "31612345678@whatsapp.eazy.im"
B = "31687654321@whatsapp.eazy.im"


class Platform:
    """Answers ``GET /channels`` from a script: a list of channels, or an error to raise."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.calls = 0
        self.third_call = asyncio.Event()
        self.script_done = asyncio.Event()  # called again after the last step was applied

    async def list_channels(self) -> list[dict[str, Any]]:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if self.calls == 3:
            self.third_call.set()
        if self.calls > len(self.script):
            self.script_done.set()
        if isinstance(step, Exception):
            raise step
        return [{"jid": jid} for jid in step]


async def test_failures_keep_the_last_list_and_log_once_then_recovery() -> None:
    down = ApiError(503, 1003, "Service unavailable")
    platform = Platform([[A], down, down, down, down, [A, B]])
    channels = ChannelSet()
    with capture_logs() as logs:
        task = asyncio.create_task(channel_list._loop(platform, channels, 0.01))  # type: ignore[arg-type]
        try:
            async with asyncio.timeout(5):
                await platform.third_call.wait()
                assert channels.jids == {A}  # kept through the failures
                await platform.script_done.wait()
            assert channels.jids == {A, B}
        finally:
            task.cancel()
    events = [e["event"] for e in logs]
    assert events.count("ingress.channels_refresh_failed") == 1, events
    assert [e.get("recovered") for e in logs if e["event"] == "ingress.channels_loaded"] == [
        False,
        True,
    ]


def test_bridge_channels_is_the_list_and_nothing_is_fetched() -> None:
    from bridge.core.config import Settings

    settings = Settings.from_env(
        {"BRIDGE_CHANNELS": f"{A}, {B}", "BRIDGE_SPOTLER_API_KEY": "k" * 20}
    )
    assert channel_list.initial(settings).jids == {A, B}
    assert channel_list.refresher(settings, ChannelSet(), None) is None  # type: ignore[arg-type]
    no_key = Settings.from_env({})
    assert channel_list.initial(no_key).jids == frozenset()
    assert channel_list.refresher(no_key, ChannelSet(), None) is None  # type: ignore[arg-type]


def refresh_samples(metrics: Metrics) -> dict[str, float]:
    found = {}
    for outcome in channel_list.OUTCOMES:
        value = metrics.registry.get_sample_value(
            "spotler_bridge_channel_list_refreshes_total", {"outcome": outcome}
        )
        assert value is not None, outcome  # exported at 0 from the start
        found[outcome] = value
    return found


def age(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("spotler_bridge_channel_list_age_seconds")
    assert value is not None
    return value


def timed_out() -> ApiError:
    error = ApiError(0, None, "TimeoutError: ", network=True)
    error.__cause__ = TimeoutError()
    return error


async def test_every_refresh_is_counted_by_outcome() -> None:
    """Issue 25 item 3: auth errors, 5xx, timeouts, unreachable hosts and anything else each
    count under their own outcome, and a good refresh under ``ok``."""
    metrics = Metrics(CollectorRegistry())
    script: list[Any] = [
        ApiError(401, 1001, "Unauthorized"), ApiError(403, 1002, "Access denied"),
        ApiError(503, 1003, "Service unavailable"), timed_out(),
        ApiError(0, None, "ClientConnectorError: refused", network=True),
        ApiError(429, 1003, "slow down"), RuntimeError("a bug"), [A],
    ]  # fmt: skip
    platform = Platform(script)
    watch = channel_list.RefreshWatch(metrics, 0.01)
    task = asyncio.create_task(channel_list._loop(platform, ChannelSet(), 0.01, watch))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(5):
            await platform.script_done.wait()
    finally:
        task.cancel()
    counts = refresh_samples(metrics)
    assert counts["ok"] >= 1
    assert {k: v for k, v in counts.items() if k != "ok"} == {
        "unauthorized": 2, "server_error": 1, "timeout": 1, "unreachable": 1, "error": 2,
    }  # fmt: skip


def test_the_age_is_computed_at_scrape_time() -> None:
    """The age of the last good list grows between scrapes without any refresh happening (from
    the start while none succeeded yet), drops to 0 on a good one; the interval is exported."""
    now = [1000.0]
    metrics = Metrics(CollectorRegistry())
    watch = channel_list.RefreshWatch(metrics, 300.0, clock=lambda: now[0])
    assert (
        metrics.registry.get_sample_value("spotler_bridge_channel_list_refresh_interval_seconds")
        == 300.0
    )
    assert age(metrics) == 0.0
    now[0] += 950.0
    assert age(metrics) == 950.0  # older than 3 refresh intervals: the alert's condition
    watch.succeeded()
    assert age(metrics) == 0.0
    now[0] += 12.5
    watch.failed(ApiError(503, 1003, "down"))
    assert age(metrics) == 12.5


def test_a_fixed_list_never_ages() -> None:
    """With BRIDGE_CHANNELS (or egress alone) there is nothing to refresh: the age stays 0."""
    metrics = Metrics(CollectorRegistry())
    assert age(metrics) == 0.0
    assert set(refresh_samples(metrics).values()) == {0.0}
