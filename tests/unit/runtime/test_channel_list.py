"""Ingress's channel list refresh: a failure keeps the last list and logs once; recovery logs."""

from __future__ import annotations

import asyncio
from typing import Any

from structlog.testing import capture_logs

from bridge.core.errors import ApiError
from bridge.ingress.channels import ChannelSet
from bridge.runtime import channel_list

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
