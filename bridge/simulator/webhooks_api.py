"""The simulated webhook configuration endpoints: list, create, update, delete.

Owns ``/v3/channels/{channelJid}/webhooks[/{id}]`` and the rules for a webhook object: the ten
documented events, an http(s) URL (the platform demands https; the simulator also takes http
so local receivers work), headers as an object of strings. Inferred: registering a URL that
already takes one of the same events on the channel is 409/1014 (it would double-deliver).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from aiohttp import web

from bridge.contract.jids import jid_problem
from bridge.egress.validation import is_http_url
from bridge.simulator.responses import (
    ApiProblem,
    json_response,
    not_found,
    read_object,
    validation_error,
)
from bridge.simulator.state import STATE, WEBHOOK_EVENTS, Webhook

#: What "Create a webhook" takes and "Update a webhook" may change.
WEBHOOK_FIELDS = ("enabled", "events", "headers", "url")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def webhook_problems(body: dict[str, Any], *, create: bool) -> list[str]:
    """Every problem with a create (``create=True``) or update body."""
    allowed = WEBHOOK_FIELDS
    problems = [f"{k}: unknown field" for k in body if k not in allowed]
    if create:
        problems += [f"{k}: required" for k in ("events", "url") if k not in body]
    elif not any(k in body for k in allowed):
        problems.append(f"body: at least one of {', '.join(allowed)} required")
    if "url" in body and not is_http_url(body["url"]):
        problems.append("url: must be an http(s) URL")
    if "enabled" in body and not isinstance(body["enabled"], bool):
        problems.append("enabled: must be true or false")
    if "events" in body:
        events = body["events"]
        if not isinstance(events, list) or not events:
            problems.append("events: must be a non-empty array")
        else:
            for i, event in enumerate(events):
                if event not in WEBHOOK_EVENTS:
                    allowed_events = ", ".join(WEBHOOK_EVENTS)
                    problems.append(
                        f"events[{i}]: unknown event {event!r}; allowed: {allowed_events}"
                    )
                elif events.index(event) != i:
                    problems.append(f"events[{i}]: duplicate event {event!r}")
    if body.get("headers") is not None:
        headers = body["headers"]
        if not isinstance(headers, dict):
            problems.append("headers: must be an object of strings or null")
        else:
            for name, value in headers.items():
                if not _TOKEN.match(name):
                    problems.append(f"headers.{name}: not a valid header name")
                elif not isinstance(value, str) or "\r" in value or "\n" in value:
                    problems.append(f"headers.{name}: must be a string on one line")
    return problems


def _channel(request: web.Request) -> str:
    channel = request.match_info["channelJid"]
    problem = jid_problem(channel, "channelJid")
    if problem:
        raise validation_error(problem)
    return channel


def _conflict(hooks: dict[str, Webhook], url: str, events: list[str], own_id: str | None) -> None:
    for hook in hooks.values():
        if hook.id != own_id and hook.url == url and set(hook.events) & set(events):
            raise ApiProblem(409, 1014, f"A webhook for {url} and these events already exists")


async def list_webhooks(request: web.Request) -> web.Response:
    hooks = request.app[STATE].webhooks.get(_channel(request), {})
    return json_response([hook.to_json() for hook in hooks.values()])


async def create_webhook(request: web.Request) -> web.Response:
    channel = _channel(request)
    body = await read_object(request)
    problems = webhook_problems(body, create=True)
    if problems:
        raise validation_error(problems[0])
    hooks = request.app[STATE].webhooks.setdefault(channel, {})
    _conflict(hooks, body["url"], body["events"], None)
    hook = Webhook(
        id=str(uuid.uuid4()),
        url=body["url"],
        events=list(body["events"]),
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
    body = await read_object(request)
    problems = webhook_problems(body, create=False)
    if problems:
        raise validation_error(problems[0])
    _conflict(hooks, body.get("url", hook.url), body.get("events", hook.events), hook.id)
    hook.url = body.get("url", hook.url)
    hook.events = list(body.get("events", hook.events))
    hook.headers = body.get("headers", hook.headers)
    hook.enabled = body.get("enabled", hook.enabled)
    hook.updated_at = time.time()
    return json_response(hook.to_json())


async def delete_webhook(request: web.Request) -> web.Response:
    hooks, hook = _find(request)
    del hooks[hook.id]
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    base = "/v3/channels/{channelJid}/webhooks"
    app.router.add_get(base, list_webhooks)
    app.router.add_post(base, create_webhook)
    app.router.add_patch(base + "/{id}", update_webhook)
    app.router.add_delete(base + "/{id}", delete_webhook)
