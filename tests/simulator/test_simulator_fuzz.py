"""Malformed input never makes the simulator answer 500: generated bodies, paths and keys.

Every endpoint of the reference (the catalogue of the Spotler API v3 reference, written out
below from its section headings, not taken from the code) is called with generated JSON bodies,
odd path values and each kind of key. The answer is a success, or an error in the reference's
format with a code from its "Error codes" table; never status 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.simulator import SimulatorSettings, make_simulator_app
from bridge.simulator.keys import ApiKey, Secret

SimClient = TestClient[web.Request, web.Application]
CHANNEL = "31612345678@whatsapp.eazy.im"
#: "Error codes" of the reference: 1001-1015.
DOCUMENTED_CODES = set(range(1001, 1016))
#: Method and path of every endpoint in the reference (sections "Read agents" to "Delete a
#: webhook"), with its placeholders.
ENDPOINTS = [
    ("GET", "/companies/{companyId}/agents"),
    ("GET", "/companies/{companyId}/agents/{email}"),
    ("GET", "/companies/{companyId}/assistants"),
    ("PATCH", "/companies/{companyId}/assistants/{jid}"),
    ("GET", "/channels/{channelJid}/automated-messages"),
    ("PATCH", "/channels/{channelJid}/automated-messages/{type}"),
    ("POST", "/channels/{channelJid}/contacts/blacklist/{contactJid}"),
    ("GET", "/keys"),
    ("GET", "/keys/current"),
    ("GET", "/channels"),
    ("PATCH", "/channels/{channelJid}"),
    ("POST", "/channels/{channelJid}/conversations/{contactJid}/comments"),
    ("GET", "/companies/current"),
    ("POST", "/channels/{channelJid}/contacts"),
    ("GET", "/channels/{channelJid}/conversations/{contactJid}"),
    ("PATCH", "/channels/{channelJid}/conversations/{contactJid}"),
    ("POST", "/companies/{companyId}/labels"),
    ("POST", "/channels/{channelJid}/lists"),
    ("POST", "/channels/{channelJid}/messages/{contactJid}"),
    ("POST", "/channels/{channelJid}/contacts/{contactJid}/notes"),
    ("PATCH", "/channels/{channelJid}/profile"),
    ("POST", "/companies/{companyId}/teams"),
    ("POST", "/channels/{channelJid}/templates"),
    ("GET", "/channels/{channelJid}/templates"),
    ("DELETE", "/channels/{channelJid}/templates/{name}"),
    ("POST", "/channels/{channelJid}/webhooks"),
    ("GET", "/channels/{channelJid}/webhooks"),
    ("PATCH", "/channels/{channelJid}/webhooks/{id}"),
    ("DELETE", "/channels/{channelJid}/webhooks/{id}"),
]
MESSAGE_TYPES = [
    "audio", "contact", "document", "gif", "image", "location", "ptt", "sticker",
    "template", "text", "video", "interactive",
]  # fmt: skip
KEYS = {"ch": "channel", "as": "assistant", "co": "company", "ow": "owner"}

text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
# Bodies shaped like the reference's, with generated values where the fields are.
field_names = st.sampled_from(
    ["body", "mimeType", "fileName", "title", "latitude", "longitude", "contacts", "template",
     "interactive", "caption", "name", "language", "parameters", "components"]
)  # fmt: skip
template = st.fixed_dictionaries(
    {"name": st.sampled_from(["hello", "delivery_notification", "nope"]) | json_values},
    optional={
        "language": st.sampled_from(["en", "nl"]) | json_values,
        "parameters": json_values,
        "components": st.lists(st.dictionaries(st.just("parameters"), json_values)) | json_values,
    },
)
message = st.fixed_dictionaries(
    {"type": st.sampled_from(MESSAGE_TYPES) | json_values},
    optional={"template": template},
).flatmap(lambda m: st.dictionaries(field_names, json_values, max_size=4).map(lambda d: {**d, **m}))
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"message": message}, optional={"media": json_values}),
    st.dictionaries(
        st.sampled_from(["assignee", "labels", "status", "team", "unreadCount", "x"]),
        json_values,
    ),
    st.dictionaries(
        st.sampled_from(["url", "events", "headers", "enabled"]),
        json_values | st.just(["message"]) | st.just("https://x.example/h"),
    ),
)
path_values = st.one_of(
    st.just(CHANNEL),
    st.just("31611111111@whatsapp.eazy.im"),
    text.filter(bool),
    st.from_regex(r"[a-z0-9+.\-]{1,12}@[a-z0-9.\-]{1,12}", fullmatch=True),
)


@pytest.fixture(scope="module")
def client() -> Iterator[tuple[asyncio.AbstractEventLoop, SimClient]]:
    """One simulator for all generated calls, on an event loop of this module's own."""
    loop = asyncio.new_event_loop()
    keys = tuple(
        ApiKey(Secret(k), scope, (CHANNEL,) if k in ("ch", "as") else ())
        for k, scope in KEYS.items()
    )
    app = make_simulator_app(SimulatorSettings(api_keys=keys, receipt_delay=3600))

    async def start() -> SimClient:
        sim: SimClient = TestClient(TestServer(app, host="127.0.0.1"))
        await sim.start_server()
        return sim

    sim = loop.run_until_complete(start())
    yield loop, sim
    loop.run_until_complete(sim.close())
    loop.close()


async def call(sim: SimClient, method: str, path: str, key: str, raw: bytes) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with sim.request(method, path, data=raw, headers=headers) as resp:
        return resp.status, await resp.read()


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    method=st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT"]) | st.none(),
    values=st.lists(path_values, min_size=4, max_size=4),
    key=st.sampled_from(sorted(KEYS)),
    body=bodies,
    raw=st.booleans(),
    junk=st.binary(max_size=20),
)
def test_no_input_gets_a_500(
    client: tuple[asyncio.AbstractEventLoop, SimClient],
    endpoint: tuple[str, str],
    method: str | None,
    values: list[str],
    key: str,
    body: Any,
    raw: bool,
    junk: bytes,
) -> None:
    """Whatever is sent, the answer is not 500, and an error carries a documented code."""
    loop, sim = client
    path = endpoint[1]
    for i, name in enumerate(p.split("}")[0] for p in path.split("{")[1:]):
        path = path.replace("{" + name + "}", quote(values[i], safe="@"), 1)
    payload = junk if raw else orjson.dumps(body)
    status, answer = loop.run_until_complete(
        call(sim, method or endpoint[0], "/v3" + path, key, payload)
    )
    assert status != 500, answer
    if status >= 400:
        error = orjson.loads(answer)
        assert set(error) == {"error", "traceId"}
        assert error["error"]["code"] in DOCUMENTED_CODES, error
