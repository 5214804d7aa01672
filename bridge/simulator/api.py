"""The simulated platform endpoints: send messages, read and update conversations.

Owns ``/v3/channels/{channelJid}/messages/{contactJid}`` and
``/v3/channels/{channelJid}/conversations/{contactJid}``. Requests are checked with the same
rules egress uses (:mod:`bridge.egress.validation`); authentication, faults and error formatting are
the middleware's.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from aiohttp import web

from bridge.contract.jids import conversation_problem
from bridge.egress.validation import conversation_changes_problems, send_body_problems
from bridge.simulator import events
from bridge.simulator.emitter import EMITTER
from bridge.simulator.responses import (
    ApiProblem,
    json_response,
    not_found,
    read_json,
    validation_error,
)
from bridge.simulator.state import STATE, TEMPLATES


def _jids(request: web.Request) -> tuple[str, str]:
    channel = request.match_info["channelJid"]
    contact = request.match_info["contactJid"]
    problem = conversation_problem(channel, contact)
    if problem:
        raise validation_error(problem)
    return channel, contact


def _check_template(template: dict[str, Any]) -> None:
    """1006 for an unknown template or language, 1013 for a wrong number of parameters."""
    name, language = template["name"], template["language"]
    languages = TEMPLATES.get(name)
    if languages is None:
        raise ApiProblem(400, 1006, f"Template name does not exist: {name!r}")
    if language not in languages:
        raise ApiProblem(400, 1006, f"Template {name!r} has no translation for {language!r}")
    if "parameters" in template:
        given = len(template.get("parameters") or ())
    else:
        components = template.get("components") or ()
        given = sum(len(c.get("parameters") or ()) for c in components)
    expected = languages[language]
    if given != expected:
        raise ApiProblem(
            400,
            1013,
            f"Parameter count mismatch: template {name!r} takes {expected}, got {given}",
        )


async def send_message(request: web.Request) -> web.Response:
    channel, contact = _jids(request)
    body = await read_json(request)
    problems = send_body_problems(body)
    if problems:
        raise validation_error(problems[0])
    message = body["message"]
    if message["type"] == "template":
        _check_template(message["template"])
    state = request.app[STATE]
    message_id = secrets.token_hex(20)
    now = time.time()
    conversation = state.conversation(channel, contact)
    conversation.sent += 1
    conversation.last_sent = now
    record: dict[str, Any] = {"id": message_id, "message": message, "time": now}
    if "media" in body:
        record["media"] = body["media"]
    state.messages.setdefault((channel, contact), []).append(record)
    request.app[EMITTER].schedule_receipts(channel, contact, message_id)
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
    changes = await read_json(request)
    problems = conversation_changes_problems(changes)
    if problems:
        raise validation_error(problems[0])
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


def add_routes(app: web.Application) -> None:
    conversation = "/v3/channels/{channelJid}/conversations/{contactJid}"
    app.router.add_post(
        "/v3/channels/{channelJid}/messages/{contactJid}", send_message, name="send_message"
    )
    app.router.add_get(conversation, get_conversation, name="get_conversation")
    app.router.add_patch(conversation, patch_conversation, name="patch_conversation")


#: Routes that ``/_sim/faults`` applies to.
FAULTY_ROUTES = frozenset({"send_message", "get_conversation", "patch_conversation"})
