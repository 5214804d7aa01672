"""API keys with scopes and objects, and the key, channel, template and unimplemented endpoints.

Expectations come from the Spotler API v3 reference: "Scopes" (channel < assistant, company <
owner), the scope label beside each endpoint, "Read API keys", "Read channels", "Read
templates" (``hello`` is REJECTED) and "Error codes" (1002 Access denied).
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge.simulator import SimulatorSettings
from bridge.simulator.keys import ApiKey, Secret
from bridge.simulator.settings import SimulatorConfigError
from tests import samples

SimClient = TestClient[web.Request, web.Application]

CHANNEL = "31612345678@whatsapp.eazy.im"
OTHER = "31699999999@whatsapp.eazy.im"
CONTACT = "31611111111@whatsapp.eazy.im"
SEND = f"/v3/channels/{CHANNEL}/messages/{CONTACT}"
CONVERSATION = f"/v3/channels/{CHANNEL}/conversations/{CONTACT}"
KEYS = (
    ApiKey(Secret("ch"), "channel", (CHANNEL,), "channel key"),
    ApiKey(Secret("as"), "assistant", (CHANNEL,)),
    ApiKey(Secret("co"), "company"),
    ApiKey(Secret("ow"), "owner"),
)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def keyed(make_sim: Any) -> SimClient:
    sim: SimClient = await make_sim(api_keys=KEYS)
    return sim


async def code_of(resp: Any) -> int | None:
    if resp.status < 400:
        return None
    body = await resp.json()
    assert set(body) == {"error", "traceId"}
    return int(body["error"]["code"])


# The label each endpoint carries in the reference, and the scopes that reach it ("Scopes").
@pytest.mark.parametrize(
    ("method", "path", "label"),
    [
        ("POST", SEND, "channel"),  # "Send messages": channel
        ("GET", CONVERSATION, "assistant"),  # "Read conversation": assistant
        ("PATCH", CONVERSATION, "assistant"),  # "Update a conversation": assistant
        ("GET", "/v3/keys", "company"),  # "Read API keys": company
        ("GET", "/v3/keys/current", "channel"),
        ("GET", "/v3/channels", "channel"),  # "Read channels": channel
        ("GET", f"/v3/channels/{CHANNEL}/templates", "channel"),  # "Read templates"
        ("GET", f"/v3/channels/{CHANNEL}/webhooks", "channel"),  # "Read webhooks"
        ("GET", "/v3/companies/c1/labels", "assistant"),  # "Read labels": not implemented
        ("DELETE", f"/v3/channels/{CHANNEL}/templates/hello", "assistant"),  # "Delete a template"
    ],
)
async def test_each_endpoint_enforces_its_scope_label(
    keyed: SimClient, method: str, path: str, label: str
) -> None:
    """A key whose scope does not reach the endpoint's label is 403/1002; one that does passes
    the access check (whatever the endpoint then answers)."""
    reaches = {
        "channel": {"ch", "as", "co", "ow"},
        "assistant": {"as", "ow"},  # company is "same as channel including company" only
        "company": {"co", "ow"},
    }[label]
    body = samples.SEND_BODIES["text"] if method == "POST" else {"status": "CLOSED"}
    for key in ("ch", "as", "co", "ow"):
        resp = await keyed.request(method, path, json=body, headers=auth(key))
        code = await code_of(resp)
        if key in reaches:
            assert code != 1002, (key, path)
        else:
            assert (resp.status, code) == (403, 1002), (key, path)


async def test_a_channel_outside_the_keys_objects_is_refused(keyed: SimClient) -> None:
    """A scoped key names its channels; any other channel is 403/1002, even for sending."""
    other_send = f"/v3/channels/{OTHER}/messages/{CONTACT}"
    resp = await keyed.post(other_send, json=samples.SEND_BODIES["text"], headers=auth("ch"))
    assert (resp.status, await code_of(resp)) == (403, 1002)
    resp = await keyed.post(SEND, json=samples.SEND_BODIES["text"], headers=auth("ch"))
    assert resp.status == 201
    resp = await keyed.post(other_send, json=samples.SEND_BODIES["text"], headers=auth("ow"))
    assert resp.status == 201


async def test_keys_current_shows_scope_and_objects(keyed: SimClient) -> None:
    """GET /keys/current: the reference's key object, scope upper-case, channels as objects."""
    current = await (await keyed.get("/v3/keys/current", headers=auth("ch"))).json()
    assert set(current) == {
        "cipherKey", "description", "id", "lastUsed", "objects", "scope", "whitelist",
    }  # fmt: skip
    assert current["scope"] == "CHANNEL"
    assert current["objects"] == [{"jid": CHANNEL, "type": "CHANNEL"}]
    assert current["description"] == "channel key"
    assert "ch" not in str(current["id"]).split("-")
    listed = await (await keyed.get("/v3/keys", headers=auth("co"))).json()
    assert [k["scope"] for k in listed] == ["CHANNEL", "ASSISTANT", "COMPANY", "OWNER"]
    assert current in listed


async def test_channels_lists_what_the_key_may_use(keyed: SimClient) -> None:
    """GET /channels: a scoped key sees its own channels, an all-channel key every known one."""
    own = await (await keyed.get("/v3/channels", headers=auth("ch"))).json()
    assert [c["jid"] for c in own] == [CHANNEL]
    assert set(own[0]) == {"dataRetentionInDays", "jid", "name", "priority"}
    every = await (await keyed.get("/v3/channels", headers=auth("ow"))).json()
    assert CHANNEL in [c["jid"] for c in every]


async def test_templates_with_their_states(keyed: SimClient) -> None:
    """GET templates: the reference's example, where hello's only translation is REJECTED."""
    resp = await keyed.get(f"/v3/channels/{CHANNEL}/templates", headers=auth("ch"))
    body = await resp.json()
    assert set(body) == {"namespace", "templates"}
    states = {
        (t["name"], tr["localeName"]): tr["status"]
        for t in body["templates"]
        for tr in t["translations"]
    }
    assert states[("hello", "en")] == "REJECTED"
    assert states[("delivery_notification", "en")] == "APPROVED"
    assert states[("delivery_notification", "nl")] == "APPROVED"
    assert set(states.values()) <= {"APPROVED", "REJECTED", "PENDING"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v3/companies/current"),
        ("GET", f"/v3/channels/{CHANNEL}/contacts/blacklist"),
        ("POST", f"/v3/channels/{CHANNEL}/contacts"),
        ("GET", f"/v3/channels/{CHANNEL}/profile"),
        ("GET", "/v3/companies/c1/teams"),
    ],
)
async def test_unimplemented_endpoints_are_501_in_the_error_format(
    keyed: SimClient, method: str, path: str
) -> None:
    """Endpoints of the reference the simulator lacks are 501, never a misleading 404."""
    resp = await keyed.request(method, path, json={}, headers=auth("ow"))
    assert resp.status == 501
    assert await code_of(resp) == 1004


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ('[{"key": "k", "scope": "root"}]', "SIMULATOR_API_KEYS[0].scope"),
        ('[{"scope": "owner"}]', "SIMULATOR_API_KEYS[0]"),
        ('[{"key": "k", "channels": ["nope"]}]', "SIMULATOR_API_KEYS[0].channels"),
        ('{"key": "k"}', "SIMULATOR_API_KEYS"),
        ("[", "SIMULATOR_API_KEYS"),
        ("[]", "SIMULATOR_API_KEYS"),
    ],
)
def test_bad_key_configuration_is_named(raw: str, problem: str) -> None:
    """A bad SIMULATOR_API_KEYS is a SimulatorConfigError naming the variable (and the item)."""
    with pytest.raises(SimulatorConfigError) as excinfo:
        SimulatorSettings.from_env({"SIMULATOR_API_KEYS": raw})
    assert any(p.startswith(problem) for p in excinfo.value.problems)


def test_json_key_configuration() -> None:
    """The JSON form gives each key its scope and channels; plain keys are owner keys."""
    settings = SimulatorSettings.from_env(
        {
            "SIMULATOR_API_KEYS": (
                f'[{{"key": "k1", "scope": "channel", "channels": ["{CHANNEL}"]}}, {{"key": "k2"}}]'
            )
        }
    )
    assert settings.api_keys == (
        ApiKey(Secret("k1"), "channel", (CHANNEL,)),
        ApiKey(Secret("k2"), "owner", ()),
    )
    plain = SimulatorSettings.from_env({"SIMULATOR_API_KEYS": "sim-key"})
    assert plain.api_keys == (ApiKey(Secret("sim-key"), "owner", ()),)


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("Bearer ow", 200),  # "Authentication": Authorization: Bearer <key>
        ("bearer ow", 200),  # the scheme in any case (rules.ASSUMPTIONS["bearer"])
        ("Bearer   ow", 200),  # more than one space before the key
        ("Bearer ow extra", 401),  # nothing after the key
        ("Basic ow", 401),
        ("ow", 401),
        ("Bearer", 401),
        ("Bearer ", 401),
        ("Bearer wo", 401),
    ],
)
async def test_the_key_is_read_from_a_bearer_header(
    keyed: SimClient, header: str, status: int
) -> None:
    resp = await keyed.get("/v3/keys/current", headers={"Authorization": header})
    assert resp.status == status
    if status == 401:
        assert await code_of(resp) == 1001
