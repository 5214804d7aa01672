"""Request checks that apply :mod:`bridge.simulator.rules` to what the simulator receives (pure).

Owns turning a request body or path value into an :class:`ApiProblem` (or nothing): exactly what
the rules mark mandatory, with the types they give, and the assumptions they name; everything
else passes. Any JSON value is safe to pass to every function here: malformed input is a 4xx
problem, never an exception of another kind. No I/O, and no rule of the bridge's own.
"""

from __future__ import annotations

import re
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from bridge.simulator import rules
from bridge.simulator.responses import ApiProblem, validation_error

# "Channels & JIDs": JIDs "have the same format as an e-mail address". A local part without
# whitespace, control characters or '@', and a dotted domain name; matched in full.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
_JID = re.compile(rf"[^@\s\x00-\x1f\x7f]{{1,256}}@{_LABEL}(?:\.{_LABEL})+")
_PLACEHOLDER = re.compile(r"\{\{\s*\d+\s*\}\}")


def is_jid(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a JID as "Channels & JIDs" describes it (an e-mail-like address)."""
    return isinstance(value, str) and _JID.fullmatch(value) is not None


def check_jid(value: object, field: str) -> str:
    if is_jid(value):
        return value
    shown = repr(value)[:80]
    raise validation_error(f"{field}: {shown} is not a JID like 31611111111@whatsapp.eazy.im")


def is_http_url(value: object) -> bool:
    """An absolute http(s) URL with a host (ASSUMPTIONS["media"], ["webhook-url"])."""
    if not isinstance(value, str) or any(c.isspace() or ord(c) < 32 for c in value):
        return False
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host)


def _is_type(value: object, json_type: str) -> bool:
    if json_type == "string":
        return isinstance(value, str)
    if json_type == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if json_type == "array":
        return isinstance(value, list)
    return isinstance(value, dict)


def check_message(message: object) -> dict[str, Any]:
    """The ``message`` of "Send messages", checked against its type's "Messages" table."""
    if not isinstance(message, dict):
        raise validation_error("message: required, an object")
    kind = message.get("type")
    rule = rules.MESSAGE_RULES.get(kind) if isinstance(kind, str) else None
    if rule is None:
        allowed = ", ".join(rules.MESSAGE_RULES)
        raise validation_error(f"message.type: {str(kind)[:40]!r} is not one of {allowed}")
    for field, json_type in rule.mandatory.items():
        if field not in message:
            raise validation_error(f"message.{field}: required ({rule.section})")
        if not _is_type(message[field], json_type):
            raise validation_error(f"message.{field}: must be a JSON {json_type} ({rule.section})")
    return message


def check_send_body(body: object) -> dict[str, Any]:
    """A "Send messages" body: ``message`` mandatory; ``media`` per ASSUMPTIONS["media"]."""
    if not isinstance(body, dict):
        raise validation_error("body: must be a JSON object")
    check_message(body.get("message"))
    if "media" in body:
        media = body["media"]
        if not isinstance(media, dict) or not is_http_url(media.get("url")):
            raise ApiProblem(400, 1008, 'media: must be an object like {"url": "https://..."}')
    return body


def template_placeholders(translation: dict[str, Any]) -> int:
    """How many ``{{n}}`` placeholders a translation's component texts hold."""
    count = 0
    for component in translation.get("components", ()):
        text = component.get("text") if isinstance(component, dict) else None
        if isinstance(text, str):
            count += len(_PLACEHOLDER.findall(text))
    return count


def _given_parameters(template: dict[str, Any]) -> int:
    if "parameters" in template:
        params = template["parameters"]
        if not isinstance(params, list):
            raise validation_error("message.template.parameters: must be an array")
        return len(params)
    components = template.get("components", [])
    if not isinstance(components, list):
        raise validation_error("message.template.components: must be an array")
    given = 0
    for i, component in enumerate(components):
        if not isinstance(component, dict):
            raise validation_error(f"message.template.components[{i}]: must be an object")
        params = component.get("parameters", [])
        if not isinstance(params, list):
            raise validation_error(f"message.template.components[{i}].parameters: an array")
        given += len(params)
    return given


def check_template(template: dict[str, Any], templates: list[dict[str, Any]]) -> None:
    """1006, 1011 or 1013 for a template message (ASSUMPTIONS["template-*"])."""
    name, language = template.get("name"), template.get("language")
    if not isinstance(name, str) or not isinstance(language, str):
        raise validation_error("message.template: name and language must be strings")
    found = next((t for t in templates if t.get("name") == name), None)
    if found is None:
        raise ApiProblem(400, 1006, f"Template name does not exist: {name[:80]!r}")
    translation = next((t for t in found["translations"] if t.get("localeName") == language), None)
    if translation is None:
        raise ApiProblem(400, 1006, f"Template {name!r} has no translation {language[:20]!r}")
    if translation.get("status") != "APPROVED":
        raise ApiProblem(400, 1011, f"Template {name!r} ({language}) is {translation['status']}")
    expected, given = template_placeholders(translation), _given_parameters(template)
    if given != expected:
        raise ApiProblem(400, 1013, f"Template {name!r} takes {expected} parameters, got {given}")


def check_conversation_changes(changes: object) -> dict[str, Any]:
    """An "Update a conversation" body (ASSUMPTIONS["conversation-values"])."""
    if not isinstance(changes, dict):
        raise validation_error("body: must be a JSON object")
    known = {k: v for k, v in changes.items() if k in rules.CONVERSATION_FIELDS}
    assignee = known.get("assignee")
    if assignee is not None and not isinstance(assignee, str):
        raise validation_error("assignee: must be a string or null")
    if "labels" in known:
        labels = known["labels"]
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise validation_error("labels: must be an array of label JIDs")
    if "status" in known and known["status"] not in rules.CONVERSATION_STATUSES:
        raise validation_error(f"status: must be one of {', '.join(rules.CONVERSATION_STATUSES)}")
    if "team" in known and known["team"] is not None and not is_jid(known["team"]):
        raise validation_error("team: must be a team JID or null")
    if "unreadCount" in known:
        count = known["unreadCount"]
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            raise validation_error("unreadCount: must be null or an integer")
        if isinstance(count, int) and count < 0:
            raise validation_error("unreadCount: must not be negative")
    return known


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")  # printable ASCII: sendable as it is


def check_webhook(body: object, *, create: bool) -> dict[str, Any]:
    """A "Create a webhook" (``create``) or "Update a webhook" body; unknown fields ignored."""
    if not isinstance(body, dict):
        raise validation_error("body: must be a JSON object")
    known = {k: v for k, v in body.items() if k in rules.WEBHOOK_FIELDS}
    if create:
        for field in rules.WEBHOOK_CREATE_MANDATORY:
            if field not in known:
                raise validation_error(f"{field}: required")
    if "url" in known and not is_http_url(known["url"]):
        raise validation_error("url: must be an http(s) URL")
    if "enabled" in known and not isinstance(known["enabled"], bool):
        raise validation_error("enabled: must be true or false")
    if "events" in known:
        events = known["events"]
        if not isinstance(events, list) or not events:
            raise validation_error("events: must be a non-empty array")
        for i, event in enumerate(events):
            if event not in rules.WEBHOOK_EVENTS:
                allowed = ", ".join(rules.WEBHOOK_EVENTS)
                raise validation_error(f"events[{i}]: unknown event; allowed: {allowed}")
    if known.get("headers") is not None:
        headers = known["headers"]
        if not isinstance(headers, dict):
            raise validation_error("headers: must be an object of strings or null")
        for name, value in headers.items():
            if not _TOKEN.fullmatch(name):
                raise validation_error(f"headers.{name[:40]}: not a valid header name")
            if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
                raise validation_error(f"headers.{name}: must be a string on one line")
    return known
