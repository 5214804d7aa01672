"""The simulator's own control endpoints under ``/_sim`` (no authentication).

Owns what tests and people use to drive and inspect the simulator: recorded API requests and
webhook deliveries, messages sent per conversation, inbound customer messages, arbitrary
webhook bodies, faults, reset.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from aiohttp import web

from bridge.simulator import checks, events, rules
from bridge.simulator.emitter import EMITTER
from bridge.simulator.faults import FaultConfig
from bridge.simulator.responses import json_response, read_json, read_object, validation_error
from bridge.simulator.state import STATE

INBOUND_FIELDS = ("channelJid", "contactJid", "message", "media", "name", "locale")


async def get_requests(request: web.Request) -> web.Response:
    return json_response(list(request.app[STATE].requests))


async def clear_requests(request: web.Request) -> web.Response:
    request.app[STATE].requests.clear()
    return web.Response(status=204)


async def get_deliveries(request: web.Request) -> web.Response:
    return json_response(list(request.app[STATE].deliveries))


async def clear_deliveries(request: web.Request) -> web.Response:
    request.app[STATE].deliveries.clear()
    return web.Response(status=204)


async def get_messages(request: web.Request) -> web.Response:
    """Messages sent per conversation, in order; ``?channelJid=&contactJid=`` filter."""
    channel = request.query.get("channelJid")
    contact = request.query.get("contactJid")
    return json_response(
        [
            {"channelJid": ch, "contactJid": co, "messages": messages}
            for (ch, co), messages in request.app[STATE].messages.items()
            if channel in (None, ch) and contact in (None, co)
        ]
    )


def _inbound_media(kind: str, media: Any, message_id: str) -> dict[str, Any] | None:
    if kind not in rules.MEDIA_TYPES:
        if media is not None:
            raise validation_error("media: only for media messages")
        return None
    if media is None:  # a placeholder where the real platform would host the file
        return {"size": 0, "url": f"https://media.simulator.invalid/{message_id}"}
    if not isinstance(media, dict) or not checks.is_http_url(media.get("url")):
        raise validation_error('media: must be an object like {"url": "https://...", "size": 1}')
    size = media.get("size", 0)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0 or len(media) > 2:
        raise validation_error("media: only url and size (an integer >= 0)")
    return {"size": size, "url": media["url"]}


async def inbound(request: web.Request) -> web.Response:
    """Emit a customer's ``message`` webhook; answer 202 with the body that was sent."""
    body = await read_object(request)
    for key in body:
        if key not in INBOUND_FIELDS:
            raise validation_error(f"{key}: unknown field; allowed: {', '.join(INBOUND_FIELDS)}")
    channel = checks.check_jid(body.get("channelJid"), "channelJid")
    contact = checks.check_jid(body.get("contactJid"), "contactJid")
    message = body.get("message")
    if not isinstance(message, dict):
        raise validation_error("message: must be an object")
    message = dict(message)
    message_id = message.pop("id", None) or secrets.token_hex(20)
    if not isinstance(message_id, str):
        raise validation_error("message.id: must be a string")
    checks.check_message(message)
    for key in ("name", "locale"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise validation_error(f"{key}: must be a string")
    media = _inbound_media(message["type"], body.get("media"), message_id)
    sent = events.inbound_message(
        channel,
        contact,
        {**message, "id": message_id},
        media=media,
        name=body.get("name"),
        locale=body.get("locale") or "en_US",
    )
    state = request.app[STATE]
    conversation = state.conversation(channel, contact)
    conversation.received += 1
    conversation.last_received = time.time()
    conversation.unread_count = (conversation.unread_count or 0) + 1
    conversation.status = "OPEN"  # inferred: a customer's message reopens a closed conversation
    request.app[EMITTER].emit(channel, sent)
    return json_response(sent, status=202)


async def emit_event(request: web.Request) -> web.Response:
    """Emit any webhook body as given (postback, typing, revoke...) to the channel's webhooks."""
    body = await read_object(request)
    for key in body:
        if key not in ("channelJid", "body"):
            raise validation_error(f"{key}: unknown field; allowed: channelJid, body")
    channel, event = checks.check_jid(body.get("channelJid"), "channelJid"), body.get("body")
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise validation_error('body: must be an object with a string "type"')
    count = request.app[EMITTER].emit(channel, event)
    return json_response({"body": event, "webhooks": count}, status=202)


async def get_faults(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].faults.to_json())


async def set_faults(request: web.Request) -> web.Response:
    """Replace the fault configuration; fields left out take their defaults."""
    config = FaultConfig.from_json(await read_json(request))
    faults = request.app[STATE].faults
    faults.configure(config)
    return json_response(faults.to_json())


async def clear_faults(request: web.Request) -> web.Response:
    request.app[STATE].faults.configure(FaultConfig())
    return web.Response(status=204)


async def reset(request: web.Request) -> web.Response:
    """Forget everything but the settings; pending deliveries and receipts are cancelled."""
    await request.app[EMITTER].cancel_all()
    request.app[STATE].reset()
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/_sim/requests", get_requests)
    r.add_delete("/_sim/requests", clear_requests)
    r.add_get("/_sim/deliveries", get_deliveries)
    r.add_delete("/_sim/deliveries", clear_deliveries)
    r.add_get("/_sim/messages", get_messages)
    r.add_post("/_sim/inbound", inbound)
    r.add_post("/_sim/events", emit_event)
    r.add_get("/_sim/faults", get_faults)
    r.add_post("/_sim/faults", set_faults)
    r.add_delete("/_sim/faults", clear_faults)
    r.add_post("/_sim/reset", reset)
