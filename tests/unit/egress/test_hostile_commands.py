"""Generated command JSON through the real runner and client (no broker): every record ends in
exactly one result and either one API call or one dead letter, never an internal error
(issue 9 item 7); afterwards every metric label holds only values exported at start-up
(issue 9 item 11)."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.core.config import Settings
from bridge.core.errors import ConfigError
from bridge.telemetry.metrics import Metrics
from tests.unit.egress.harness import CHANNEL, CONTACT, Egress, FakePlatform

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
IDS = st.one_of(st.text(min_size=0, max_size=12), st.integers(-(2**63), 2**63 - 1), st.none())
MESSAGES = st.one_of(
    JSON,
    st.fixed_dictionaries({"type": st.sampled_from(["text", "image", "template", "contact", "x"])},
                          optional={"body": JSON, "mimeType": JSON, "template": JSON,
                                    "contacts": JSON}),
)  # fmt: skip
KINDS = st.sampled_from(["send-message", "update-conversation"])
VALID = {"type": "text", "body": "hi"}
COMMANDS = st.fixed_dictionaries(
    {
        "id": IDS,
        "channelJid": st.sampled_from([CHANNEL, CHANNEL, CHANNEL, "x@agent.eazy.im", "bad"]),
        "contactJid": st.sampled_from([CONTACT, CONTACT, CONTACT, CHANNEL, "a;b@webchat.eazy.im"]),
        "message": st.one_of(st.just(VALID), st.just(VALID), MESSAGES),
        "changes": st.one_of(st.just({"status": "CLOSED"}), JSON),
    },
    optional={"extra": JSON},
)


def fit(command: dict[str, Any], kind: str) -> dict[str, Any]:
    """Keep the body field of the command's kind (the other would always be refused)."""
    other = "changes" if kind == "send-message" else "message"
    return {k: v for k, v in command.items() if k != other}


def wrap(command: dict[str, Any], envelope: bool) -> bytes:
    if not envelope:
        return orjson.dumps(command)
    return orjson.dumps({"specversion": "1.0", "id": "env", "source": "/s", "type": "t",
                         "data": command})  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(COMMANDS, st.booleans(), KINDS), min_size=1, max_size=4),
    st.binary(max_size=20),
)  # fmt: skip
async def test_every_generated_command_ends_in_one_result(cases: Any, junk: bytes) -> None:
    platform = FakePlatform()
    await platform.start()
    egress = Egress(platform, max_attempts=1)
    try:
        records = [(wrap(fit(c, k), e), k) for c, e, k in cases] + [(junk, "send-message")]
        for raw, kind in records:
            calls, letters = len(platform.calls), len(egress.deadletters())
            before = len(egress.results())
            outcome = await egress.run(raw, kind)
            results = egress.results()[before:]
            assert len(results) == 1, (raw, outcome)
            reason = results[0]["data"].get("reason") or ""
            assert "internal error" not in reason, (raw, reason)
            made = (len(platform.calls) - calls, len(egress.deadletters()) - letters)
            assert made in ((1, 0), (0, 1), (0, 0)), (raw, outcome, made)
            assert (outcome == "duplicate") == (made == (0, 0)), (raw, outcome, made)
            if outcome == "deadletter":
                assert reason.startswith("invalid: "), reason
    finally:
        await egress.close()
        await platform.close()


def label_values(metrics: Metrics) -> dict[tuple[str, str], set[str]]:
    seen: dict[tuple[str, str], set[str]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label not in ("le", "quantile"):
                    seen.setdefault((family.name, label), set()).add(value)
    return seen


async def test_metric_labels_stay_bounded_after_a_hostile_run() -> None:
    """Statuses and codes the platform invents never become new label values."""
    rng = random.Random(7)

    def answer(_: web.Request) -> web.StreamResponse:
        status = rng.choice([200, 201, 302, 399, 418, 451, 429, 500, 503, 599, 299])
        code = rng.choice([None, 1005, 1003, 77, 123456, -1, "x"])
        return web.json_response({"error": {"code": code}, "id": "m"}, status=status,
                                 headers={"Location": "/v3/x"})  # fmt: skip

    platform = FakePlatform(answer=answer)
    await platform.start()
    egress = Egress(platform, max_attempts=2, circuit_failures=1000)
    bounded = label_values(egress.metrics)
    try:
        for i in range(120):
            contact = f"3161{i:07d}@whatsapp.eazy.im"
            await egress.run(orjson.dumps({"id": f"h{i}\x00" if i % 7 == 0 else f"h{i}",
                                           "channelJid": CHANNEL, "contactJid": contact,
                                           "message": {"type": "text", "body": "x"}}))  # fmt: skip
    finally:
        await egress.close()
        await platform.close()
    after = label_values(egress.metrics)
    assert set(after) == set(bounded), set(after) ^ set(bounded)
    for key, values in after.items():
        assert values <= bounded[key], (key, values - bounded[key])
    assert len(platform.calls) > 100  # the run reached the platform


def test_http_api_url_to_another_host_is_refused() -> None:
    """Issue 9 item 6: http:// to a non-loopback host needs BRIDGE_SPOTLER_API_ALLOW_HTTP."""
    env = {"BRIDGE_SPOTLER_API_KEY": "k", "BRIDGE_SPOTLER_API_URL": "http://api.example.com/v3"}
    with pytest.raises(ConfigError, match="BRIDGE_SPOTLER_API_ALLOW_HTTP"):
        Settings.from_env(env).check_role("egress")
    Settings.from_env({**env, "BRIDGE_SPOTLER_API_ALLOW_HTTP": "true"}).check_role("egress")
    for url in ("http://127.0.0.1:8800/v3", "http://localhost/v3", "http://[::1]:80/v3",
                "https://api.example.com/v3"):  # fmt: skip
        Settings.from_env({**env, "BRIDGE_SPOTLER_API_URL": url}).check_role("egress")
