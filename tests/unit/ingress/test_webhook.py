"""The webhook app with an in-memory store: statuses, limits, duplicates, never a 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import generate_latest

from bridge.contract.records import Record, Topics
from bridge.core.config import IngressSettings
from bridge.core.errors import PublishTimeout
from bridge.core.parsers import Secret
from bridge.ingress.webhook import make_webhook_app
from bridge.telemetry.metrics import Metrics
from tests import samples
from tests.integration.procs import eventually

TOKENS = (Secret("old-token-0123456789"), Secret("new-token-0123456789"))
AUTH = {"Authorization": "Bearer new-token-0123456789"}


class FakeStore:
    def __init__(self) -> None:
        self.records: list[Record] = []
        self.error: BaseException | None = None
        self.delay = 0.0
        self.answer = "published"

    async def __call__(self, record: Record) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        self.records.append(record)
        return self.answer


MakeClient = Callable[
    ..., Awaitable[tuple[TestClient[web.Request, web.Application], FakeStore, Metrics]]
]


@pytest.fixture
def make_client(aiohttp_client) -> MakeClient:
    async def make(
        **overrides: object,
    ) -> tuple[TestClient[web.Request, web.Application], FakeStore, Metrics]:
        options: dict[str, object] = {
            "webhook_tokens": TOKENS,
            "max_body_bytes": 4096,
            "read_timeout": 0.5,
            **overrides,
        }
        store, metrics = FakeStore(), Metrics()
        app = make_webhook_app(IngressSettings(**options), Topics("t"), metrics, store)  # type: ignore[arg-type]
        return await aiohttp_client(app), store, metrics

    return make


def metric(metrics: Metrics, line: str) -> float:
    for row in generate_latest(metrics.registry).decode().splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    return 0.0


async def test_published_delivery_gets_200(make_client: MakeClient) -> None:
    client, store, metrics = await make_client()
    body = samples.message_body("text")
    resp = await client.post("/webhooks", data=orjson.dumps(body), headers=AUTH)
    assert resp.status == 200
    assert await resp.json() == {"status": "published", "id": samples.message_event_id(body)}
    assert [r.topic for r in store.records] == ["t.events.message"]
    assert (
        metric(metrics, 'spotler_bridge_webhooks_total{event="message",outcome="published"}') == 1
    )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic new-token-0123456789"},
        {"Authorization": "Bearer"},
        {"Authorization": "new-token-0123456789"},
        {"Authorization": "Bearer new-token-0123456789-and-more"},
    ],
)
async def test_bad_or_missing_token_is_401(
    make_client: MakeClient, headers: dict[str, str]
) -> None:
    client, store, metrics = await make_client()
    resp = await client.post("/webhooks", data=b'{"type": "message"}', headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert store.records == []
    assert metric(metrics, 'spotler_bridge_webhook_rejections_total{reason="unauthorized"}') == 1


async def test_every_configured_token_is_accepted(make_client: MakeClient) -> None:
    """Several tokens are accepted at once, so a secret can be rotated without downtime."""
    client, store, _ = await make_client()
    for token in ("old-token-0123456789", "new-token-0123456789"):
        resp = await client.post(
            "/webhooks",
            data=b'{"type": "typing", "n": "%s"}' % token.encode(),
            headers={"Authorization": f"bearer {token}"},
        )
        assert resp.status == 200
    assert len(store.records) == 2


async def test_auth_can_be_disabled_explicitly(make_client: MakeClient) -> None:
    client, store, _ = await make_client(webhook_tokens=(), webhook_auth="none")
    resp = await client.post("/webhooks", data=b'{"type": "typing"}')
    assert resp.status == 200
    assert len(store.records) == 1


async def test_oversized_body_is_413(make_client: MakeClient) -> None:
    client, store, metrics = await make_client()
    resp = await client.post("/webhooks", data=b"x" * 5000, headers=AUTH)
    assert resp.status == 413
    assert store.records == []
    assert metric(metrics, 'spotler_bridge_webhook_rejections_total{reason="too_large"}') == 1


async def test_oversized_chunked_body_is_413(make_client: MakeClient) -> None:
    client, store, _ = await make_client()

    async def chunks() -> AsyncIterator[
        bytes
    ]:  # no Content-Length: the limit must hold while reading
        for _ in range(10):
            yield b"x" * 1000

    resp = await client.post("/webhooks", data=chunks(), headers=AUTH)
    assert resp.status == 413
    assert store.records == []


async def test_repeat_is_acknowledged_without_second_publish(make_client: MakeClient) -> None:
    client, store, metrics = await make_client()
    raw = orjson.dumps(samples.message_body("image"))
    statuses = []
    for _ in range(3):
        resp = await client.post("/webhooks", data=raw, headers=AUTH)
        statuses.append((resp.status, (await resp.json())["status"]))
    assert statuses == [(200, "published"), (200, "duplicate"), (200, "duplicate")]
    assert len(store.records) == 1
    assert (
        metric(metrics, 'spotler_bridge_webhooks_total{event="message",outcome="duplicate"}') == 2
    )


async def test_not_json_is_dead_lettered_with_200(make_client: MakeClient) -> None:
    client, store, metrics = await make_client()
    resp = await client.post("/webhooks", data=b"\x00\xffnot json", headers=AUTH)
    assert resp.status == 200
    assert store.records[0].topic == "t.events.deadletter"
    assert (
        metric(metrics, 'spotler_bridge_webhooks_total{event="deadletter",outcome="deadletter"}')
        == 1
    )


async def test_store_failure_is_503_and_not_remembered(make_client: MakeClient) -> None:
    """A delivery that is not durable gets 503, and its retry is not mistaken for a duplicate."""
    client, store, metrics = await make_client()
    raw = orjson.dumps(samples.message_body("text"))
    store.error = PublishTimeout("no ack")
    resp = await client.post("/webhooks", data=raw, headers=AUTH)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "5"
    store.error = None
    resp = await client.post("/webhooks", data=raw, headers=AUTH)
    assert resp.status == 200
    assert (await resp.json())["status"] == "published"
    assert (
        metric(metrics, 'spotler_bridge_webhooks_total{event="message",outcome="unavailable"}') == 1
    )


async def test_unexpected_store_crash_is_503_not_500(make_client: MakeClient) -> None:
    client, store, _ = await make_client()
    store.error = RuntimeError("bug")
    resp = await client.post("/webhooks", data=b'{"type": "message"}', headers=AUTH)
    assert resp.status == 503


async def test_other_methods_and_paths(make_client: MakeClient) -> None:
    client, _, _ = await make_client()
    assert (await client.get("/webhooks")).status == 405
    assert (await client.post("/other", headers=AUTH)).status == 404


async def test_slow_body_is_cut_with_408(make_client: MakeClient) -> None:
    client, store, _ = await make_client(read_timeout=0.2)

    async def slow() -> AsyncIterator[bytes]:
        yield b'{"type": '
        await asyncio.sleep(1.0)
        yield b'"typing"}'

    resp = await client.post("/webhooks", data=slow(), headers=AUTH)
    assert resp.status == 408
    assert store.records == []


def test_app_factory_builds_independent_apps() -> None:
    settings = IngressSettings(webhook_tokens=TOKENS)
    a = make_webhook_app(settings, Topics("t"), Metrics(), FakeStore())
    b = make_webhook_app(settings, Topics("t"), Metrics(), FakeStore())
    assert isinstance(a, web.Application)
    assert a is not b


async def test_one_log_line_per_delivery_without_body_or_token(make_client: MakeClient) -> None:
    """Message bodies are personal data and tokens are secrets: neither reaches the log.

    A plain success is logged at debug, a refused delivery at info (issue 24's log contract)."""
    from structlog.testing import capture_logs

    client, _, _ = await make_client()
    body = samples.message_body("text")
    body["message"]["body"] = "PRIVATE-TEXT-4711"
    with capture_logs() as logs:
        await client.post("/webhooks", data=orjson.dumps(body), headers=AUTH)
        await client.post(
            "/webhooks", data=b"PRIVATE-TEXT-4711", headers={"Authorization": "Bearer x"}
        )
    assert [(e["event"], e["log_level"], e["outcome"]) for e in logs] == [
        ("webhook", "debug", "published"),
        ("webhook", "info", "rejected"),
    ]
    text = repr(logs)
    assert "PRIVATE-TEXT-4711" not in text
    assert "new-token-0123456789" not in text


async def test_only_plain_successes_are_debug_lines(make_client: MakeClient) -> None:
    """Published and duplicate: debug. 401, 413, 503, dead letter, spooled: info."""
    from structlog.testing import capture_logs

    client, store, _ = await make_client()
    raw = orjson.dumps(samples.message_body("text"))
    with capture_logs() as logs:
        await client.post("/webhooks", data=raw, headers=AUTH)  # published
        await client.post("/webhooks", data=raw, headers=AUTH)  # duplicate
        await client.post("/webhooks", data=raw)  # 401
        await client.post("/webhooks", data=b"x" * 5000, headers=AUTH)  # 413
        await client.post("/webhooks", data=b"not json", headers=AUTH)  # dead letter
        store.error = PublishTimeout("kafka down")
        await client.post("/webhooks", data=b'{"type": "typing", "n": 2}', headers=AUTH)  # 503
    lines = [(e["log_level"], e["outcome"]) for e in logs if e["event"] == "webhook"]
    assert lines == [
        ("debug", "published"),
        ("debug", "duplicate"),
        ("info", "rejected"),
        ("info", "rejected"),
        ("info", "deadletter"),
        ("info", "unavailable"),
    ]


async def test_spooled_delivery_is_an_info_line(make_client: MakeClient) -> None:
    from structlog.testing import capture_logs

    client, store, _ = await make_client()
    store.answer = "spooled"
    with capture_logs() as logs:
        resp = await client.post("/webhooks", data=b'{"type": "typing"}', headers=AUTH)
    assert resp.status == 200
    assert [(e["log_level"], e["outcome"]) for e in logs if e["event"] == "webhook"] == [
        ("info", "spooled")
    ]


async def test_summary_counts_every_delivery_by_outcome_and_type(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
) -> None:
    """The summary lines add up to the requests sent, per outcome and event type; the last
    one is written when the app stops."""
    from structlog.testing import capture_logs

    store = FakeStore()
    settings = IngressSettings(webhook_tokens=TOKENS, max_body_bytes=4096)
    app = make_webhook_app(settings, Topics("t"), Metrics(), store, summary_interval=3600)
    with capture_logs() as logs:
        client = await aiohttp_client(app)
        for n in range(7):
            body = orjson.dumps(samples.message_body("text", message_id=f"m{n}"))
            await client.post("/webhooks", data=body, headers=AUTH)
        await client.post("/webhooks", data=body, headers=AUTH)  # a duplicate of the last
        for n in range(3):
            await client.post(
                "/webhooks", data=orjson.dumps({"type": "typing", "n": n}), headers=AUTH
            )
        for _ in range(2):
            await client.post("/webhooks", data=b"{}")  # no token
        assert not [e for e in logs if e["event"] == "webhook.summary"]  # not before the interval
        await client.close()
    summaries = [e for e in logs if e["event"] == "webhook.summary"]
    assert len(summaries) == 1
    assert summaries[0]["log_level"] == "info"
    assert summaries[0]["deliveries"] == 13
    assert summaries[0]["outcomes"] == {
        "published": {"message": 7, "typing": 3},
        "duplicate": {"message": 1},
        "rejected": {"none": 2},
    }


async def test_summary_line_every_interval_then_counts_restart(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
) -> None:
    from structlog.testing import capture_logs

    settings = IngressSettings(webhook_tokens=TOKENS, max_body_bytes=4096)
    app = make_webhook_app(settings, Topics("t"), Metrics(), FakeStore(), summary_interval=0.05)
    with capture_logs() as logs:
        client = await aiohttp_client(app)
        await client.post("/webhooks", data=b'{"type": "typing", "n": 1}', headers=AUTH)

        async def summarized() -> bool:
            return any(e["event"] == "webhook.summary" for e in logs)

        await eventually(summarized, timeout=5, what="a summary line")
        first = next(e for e in logs if e["event"] == "webhook.summary")
        assert first["outcomes"] == {"published": {"typing": 1}}
        await client.post("/webhooks", data=b'{"type": "typing", "n": 2}', headers=AUTH)
        await client.close()
    counted = [e["deliveries"] for e in logs if e["event"] == "webhook.summary"]
    assert sum(counted) == 2  # each delivery in exactly one summary; empty intervals log nothing


async def test_concurrent_repeats_are_stored_once(make_client: MakeClient) -> None:
    """Repeats that arrive while the first is still being stored wait for it: one record."""
    client, store, _ = await make_client()
    store.delay = 0.2
    raw = orjson.dumps(samples.message_body("text"))
    answers = await asyncio.gather(
        *(client.post("/webhooks", data=raw, headers=AUTH) for _ in range(5))
    )
    statuses = sorted([(r.status, (await r.json())["status"]) for r in answers])
    assert statuses == [(200, "duplicate")] * 4 + [(200, "published")]
    assert len(store.records) == 1


@pytest.mark.parametrize(("level", "expected"), [
    ("info", [("info", "rejected")]),
    ("debug", [("debug", "published"), ("info", "rejected")]),
])  # fmt: skip
async def test_success_line_follows_the_level_configured_before_start(
    make_client: MakeClient, level: str, expected: list[tuple[str, str]]
) -> None:
    """The handler reads at start-up whether debug lines are written (a plain success builds
    no line otherwise): at debug the success line is still there, at info only the refusal."""
    import logging

    import structlog
    from structlog.testing import LogCapture

    capture = LogCapture()
    structlog.configure(
        processors=[capture],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        cache_logger_on_first_use=False,
    )
    try:
        client, _, _ = await make_client()
        await client.post(
            "/webhooks", data=orjson.dumps(samples.message_body("text")), headers=AUTH
        )
        await client.post("/webhooks", data=b"{}", headers={"Authorization": "Bearer x"})
    finally:
        structlog.reset_defaults()
    lines = [(e["log_level"], e["outcome"]) for e in capture.entries if e["event"] == "webhook"]
    assert lines == expected
