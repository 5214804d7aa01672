"""Scenario 6: hostile input at volume against a running bridge (property-based).

Bodies and headers come from hypothesis and go over a raw socket, so nothing is sanitized on
the way. No answer may be a 500, the process must survive, and every delivery answered 200 must
end on an event topic or the dead-letter topic.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.contract.records import EVENT_TYPES
from tests import samples
from tests.faults.conftest import Stream, conservation

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TOKEN = "hostile-token-0123456789"
json_leaf = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=50)
json_value = st.recursive(
    json_leaf | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)
webhookish = st.fixed_dictionaries(
    {"type": st.sampled_from([*EVENT_TYPES, "x", ""]) | json_leaf},
    optional={
        "from": json_value | st.just({"jid": samples.CONTACT}),
        "to": json_value | st.just(samples.CHANNEL),
        "message": json_value,
        "timestamp": json_value,
        "direction": json_value,
        "contextInfo": json_value,
    },
)
bodies = st.one_of(
    st.binary(max_size=3000),
    webhookish.map(orjson.dumps),
    json_value.map(orjson.dumps),
    st.integers(1, 200).map(lambda n: b"[" * n * 10),
    st.just(orjson.dumps(samples.message_body("text"))),
)
header_names = st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,20}\Z", fullmatch=True).filter(
    lambda h: (
        h.lower()
        not in {
            "content-length",
            "transfer-encoding",
            "host",
            "connection",
            "authorization",
            "expect",
            "upgrade",
        }
    )
)
header_values = st.from_regex(r"\A[ -~]{0,80}\Z", fullmatch=True)
# Each Authorization header with the answer the design gives it (ingress step 1): a bearer token
# from BRIDGE_WEBHOOK_TOKENS passes; the scheme is case-insensitive (RFC 7235, section 2.1).
AUTH_CASES = {
    f"Bearer {TOKEN}": True,
    f"bearer  {TOKEN}": True,
    f"BEARER {TOKEN}": True,
    "Bearer x": False,
    f"Basic {TOKEN}": False,
    TOKEN: False,
    "": False,
    "Bearer " + "A" * 5000: False,
}
auth = st.sampled_from(sorted(AUTH_CASES))


Example = tuple[bytes, dict[str, str], str]


def generate(count: int) -> list[Example]:
    """``count`` hostile deliveries drawn by hypothesis (generated up front, sent at volume)."""
    drawn: list[Example] = []

    @settings(
        max_examples=count, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(
        body=bodies,
        headers=st.dictionaries(header_names, header_values, max_size=6),
        authorization=auth,
    )
    def draw(body: bytes, headers: dict[str, str], authorization: str) -> None:
        drawn.append((body, headers, authorization))

    draw()
    return drawn


async def raw_post(
    port: int, body: bytes, headers: dict[str, str], authorization: str
) -> tuple[int, bytes]:
    """One request over a raw socket: nothing between the test and the server cleans it up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [
        "POST /webhooks HTTP/1.1",
        "Host: bridge",
        "Connection: close",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), timeout=30)
    writer.close()
    head, _, answer = response.partition(b"\r\n\r\n")
    return int(head.split(b"\r\n", 1)[0].split()[1]), answer


async def test_hostile_input_at_volume(procs, kafka, prefix, report) -> None:
    bridge = procs.make(
        "ingress",
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS=kafka,
        BRIDGE_TOPIC_PREFIX=prefix,
        BRIDGE_WEBHOOK_TOKENS=TOKEN,
        BRIDGE_MAX_BODY_BYTES="2048",
        BRIDGE_LOG_LEVEL="warning",
    )
    await bridge.start()
    await bridge.wait_ready()
    examples = generate(1500)
    stream = Stream(bridge.url)
    statuses: dict[int, int] = {}
    slots = asyncio.Semaphore(32)

    async def send(example: Example) -> None:
        body, headers, authorization = example
        async with slots:
            status, answer = await raw_post(bridge.http_port, body, headers, authorization)
        statuses[status] = statuses.get(status, 0) + 1
        assert status != 500
        if not AUTH_CASES[authorization]:
            assert status in (400, 401), (status, authorization[:40])
        elif len(body) > 2048:
            assert status == 413
        else:
            assert status == 200, (status, answer[:200])
        if status == 200:
            event_id = orjson.loads(answer)["id"]
            stream.sent.add(event_id)
            stream.acked[event_id] = body

    await asyncio.gather(*(send(e) for e in examples))
    assert bridge.proc is not None
    assert bridge.proc.returncode is None  # still alive
    figures = await conservation(kafka, prefix, stream, exact_bytes=False)
    assert await bridge.stop() == 0
    report["6-hostile-input"] = {
        **figures,
        "requests": len(examples),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }
