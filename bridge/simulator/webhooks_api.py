"""The simulated webhook configuration endpoints: list, create, update, delete.

Owns ``/v3/channels/{channelJid}/webhooks[/{id}]`` ("Create a webhook", "Read webhooks",
"Update a webhook", "Delete a webhook" in the Spotler API v3 reference). A body is checked by
:func:`bridge.simulator.checks.check_webhook`; fields the reference does not list are ignored,
and the choices it leaves open are ``rules.ASSUMPTIONS["webhook-url"]``.
"""

from __future__ import annotations

import time
import uuid

from aiohttp import web

from bridge.simulator import checks
from bridge.simulator.responses import ApiProblem, json_response, not_found, read_json
from bridge.simulator.state import STATE, Webhook


def _channel(request: web.Request) -> str:
    return checks.check_jid(request.match_info["channelJid"], "channelJid")


def _conflict(hooks: dict[str, Webhook], url: str, events: list[str], own_id: str | None) -> None:
    for hook in hooks.values():
        if hook.id != own_id and hook.url == url and set(hook.events) & set(events):
            raise ApiProblem(409, 1014, f"A webhook for {url} and these events already exists")


async def list_webhooks(request: web.Request) -> web.Response:
    hooks = request.app[STATE].webhooks.get(_channel(request), {})
    return json_response([hook.to_json() for hook in hooks.values()])


async def create_webhook(request: web.Request) -> web.Response:
    channel = _channel(request)
    body = checks.check_webhook(await read_json(request), create=True)
    hooks = request.app[STATE].webhooks.setdefault(channel, {})
    events = list(dict.fromkeys(body["events"]))
    _conflict(hooks, body["url"], events, None)
    hook = Webhook(
        id=str(uuid.uuid4()),
        url=body["url"],
        events=events,
        headers=body.get("headers"),
        enabled=body.get("enabled", True),
    )
    hooks[hook.id] = hook
    return json_response(hook.to_json(), status=201)


def _find(request: web.Request) -> tuple[dict[str, Webhook], Webhook]:
    hooks = request.app[STATE].webhooks.get(_channel(request), {})
    hook = hooks.get(request.match_info["id"])
    if hook is None:
        raise not_found("Webhook not found")
    return hooks, hook


async def update_webhook(request: web.Request) -> web.Response:
    hooks, hook = _find(request)
    body = checks.check_webhook(await read_json(request), create=False)
    events = list(dict.fromkeys(body.get("events", hook.events)))
    _conflict(hooks, body.get("url", hook.url), events, hook.id)
    hook.url = body.get("url", hook.url)
    hook.events = events
    hook.headers = body.get("headers", hook.headers)
    hook.enabled = body.get("enabled", hook.enabled)
    hook.updated_at = time.time()
    return json_response(hook.to_json())


async def delete_webhook(request: web.Request) -> web.Response:
    hooks, hook = _find(request)
    del hooks[hook.id]
    return web.Response(status=204)
