"""Every endpoint of the reference, routed: the key, channel and template reads, and 501s.

Owns the ``/v3`` route table, built from :data:`bridge.simulator.rules.ENDPOINTS` so each route
carries the endpoint's name (the middleware looks up its scope label by that name), and the
read-only endpoints ``GET /keys``, ``GET /keys/current``, ``GET /channels`` and
``GET /channels/{channelJid}/templates``. Endpoints the simulator does not implement answer 501
in the reference's error format (``rules.ASSUMPTIONS["not-implemented"]``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from bridge.simulator import api, checks, rules, webhooks_api
from bridge.simulator.keys import ApiKey
from bridge.simulator.responses import ApiProblem, json_response
from bridge.simulator.settings import SimulatorSettings
from bridge.simulator.state import SETTINGS, STATE

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The key the middleware found for this request.
REQUEST_KEY = web.RequestKey("simulator_api_key", ApiKey)


def request_key(request: web.Request) -> ApiKey:
    if REQUEST_KEY not in request:
        raise ApiProblem(401, 1001, "Unauthorized")
    return request[REQUEST_KEY]


def all_channels(settings: SimulatorSettings) -> list[str]:
    """The configured channels and every channel a key names, once each, in order."""
    named = [jid for key in settings.api_keys for jid in key.channels]
    return list(dict.fromkeys([*settings.channels, *named]))


async def read_keys(request: web.Request) -> web.Response:
    """ "Read API keys": every key (the platform stores only hashes; so does the answer)."""
    return json_response([key.to_json() for key in request.app[SETTINGS].api_keys])


async def read_current_key(request: web.Request) -> web.Response:
    return json_response(request_key(request).to_json())


async def read_channels(request: web.Request) -> web.Response:
    """ "Read channels": the channels this key may use (``rules.ASSUMPTIONS["channels"]``)."""
    key = request_key(request)
    channels = [jid for jid in all_channels(request.app[SETTINGS]) if key.may_use(jid)]
    return json_response(
        [
            {"dataRetentionInDays": 90, "jid": jid, "name": jid.split("@", 1)[0], "priority": None}
            for jid in channels
        ]
    )


async def read_templates(request: web.Request) -> web.Response:
    """ "Read templates": the channel's templates with their translations' states."""
    checks.check_jid(request.match_info["channelJid"], "channelJid")
    templates = request.app[STATE].templates
    return json_response({"namespace": rules.TEMPLATE_NAMESPACE, "templates": templates})


async def not_implemented(request: web.Request) -> web.Response:
    name = request.match_info.route.name or "this endpoint"
    raise ApiProblem(501, 1004, f"Not implemented by the simulator: {name}")


HANDLERS: Mapping[str, Handler] = {
    "read_keys": read_keys,
    "read_current_key": read_current_key,
    "read_channels": read_channels,
    "read_templates": read_templates,
    "send_message": api.send_message,
    "get_conversation": api.get_conversation,
    "patch_conversation": api.patch_conversation,
    "list_webhooks": webhooks_api.list_webhooks,
    "create_webhook": webhooks_api.create_webhook,
    "update_webhook": webhooks_api.update_webhook,
    "delete_webhook": webhooks_api.delete_webhook,
}


def add_routes(app: web.Application) -> None:
    """Route every endpoint of the reference under ``/v3``, named after it."""
    for endpoint in rules.ENDPOINTS:
        handler = HANDLERS.get(endpoint.name, not_implemented)
        app.router.add_route(endpoint.method, "/v3" + endpoint.path, handler, name=endpoint.name)
