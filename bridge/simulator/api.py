"""The simulated platform endpoints: send messages, read and update conversations.

Owns ``/v3/channels/{channelJid}/messages/{contactJid}`` and
``/v3/channels/{channelJid}/conversations/{contactJid}``. Requests are checked against the
reference's rules as the simulator transcribed them (:mod:`bridge.simulator.checks`), never the
bridge's; authentication, scopes, faults and error formatting are the middleware's.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from aiohttp import web

from bridge.simulator import checks, events
from bridge.simulator.emitter import EMITTER
from bridge.simulator.responses import json_response, not_found, read_json
from bridge.simulator.state import STATE


def _jids(request: web.Request) -> tuple[str, str]:
    channel = checks.check_jid(request.match_info["channelJid"], "channelJid")
    contact = checks.check_jid(request.match_info["contactJid"], "contactJid")
    return channel, contact


async def send_message(request: web.Request) -> web.Response:
    channel, contact = _jids(request)
    body = checks.check_send_body(await read_json(request))
    message = body["message"]
    state = request.app[STATE]
    if message["type"] == "template":
        checks.check_template(message["template"], state.templates)
    message_id = secrets.token_hex(20)
    now = time.time()
    conversation = state.conversation(channel, contact)
    conversation.sent += 1
    conversation.last_sent = now
    record: dict[str, Any] = {"id": message_id, "message": message, "time": now}
    if "media" in body:
        record["media"] = body["media"]
    state.messages.setdefault((channel, contact), []).append(record)
    emitter = request.app[EMITTER]
    emitter.receipts.requests[message_id] = request.headers.get("X-Request-Id", "")
    emitter.schedule_receipts(channel, contact, message_id)
    return json_response({"id": message_id}, status=201)


async def get_conversation(request: web.Request) -> web.Response:
    channel, contact = _jids(request)
    conversation = request.app[STATE].conversations.get((channel, contact))
    if conversation is None:
        raise not_found("Conversation not found")
    return json_response(conversation.to_json())


async def patch_conversation(request: web.Request) -> web.Response:
    channel, contact = _jids(request)
    conversation = request.app[STATE].conversations.get((channel, contact))
    if conversation is None:
        raise not_found("Conversation not found")
    changes = checks.check_conversation_changes(await read_json(request))
    emitter = request.app[EMITTER]
    if "assignee" in changes and changes["assignee"] != conversation.assignee:
        conversation.assignee = changes["assignee"]
        emitter.emit(channel, events.handover(channel, contact, conversation.assignee))
    if "labels" in changes and changes["labels"] != conversation.labels:
        conversation.labels = list(changes["labels"])
        emitter.emit(channel, events.label(channel, contact, conversation.labels))
    if "status" in changes:
        conversation.status = changes["status"]
    if "team" in changes:
        conversation.team = changes["team"]
    if "unreadCount" in changes:
        conversation.unread_count = changes["unreadCount"]
    return json_response(conversation.to_json())


#: Routes that ``/_sim/faults`` applies to.
FAULTY_ROUTES = frozenset({"send_message", "get_conversation", "patch_conversation"})
