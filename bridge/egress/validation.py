"""The platform's request rules: send-message bodies and conversation updates (pure core).

Egress checks a command with these functions before it calls the platform, and the simulator
checks what it receives with the same functions, so the two can never disagree. Each function
returns *every* problem, as ``"<field path>: <reason>"`` strings; an empty list means valid.
This module imports no I/O library, only the standard library and other core modules.

Sources: the reference's "Messages" tables, "Send messages", its "WhatsApp examples" (button,
list, product, productList) and "Update a conversation". The rule (DESIGN.md, "Egress"): check
exactly the fields the reference marks mandatory, with the types it gives, and the types of the
optional fields it lists; pass every other field through unchanged. Where the reference is
silent the bridge invents nothing:

* How media content is supplied is not shown: a media message needs only its ``mimeType``
  (plus ``fileName`` and ``title`` for documents); a top-level ``media`` beside ``message`` is
  passed through unchecked, and the platform's answer (1008) is the result.
* ``template`` is an "array" (a JSON array, or an object: the reference gives no structure),
  and so is ``contacts``; their content is the platform's to judge (1005, 1006, 1013).
* Interactive messages follow the shapes of the examples (components each type needs); the
  limits on counts and lengths come from WhatsApp's interactive-message limits (inferred).
* Optional fields may be ``null``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from bridge.contract.jids import jid_kind

MESSAGE_TYPES: tuple[str, ...] = (
    "text", "image", "gif", "video", "audio", "ptt", "sticker", "document",
    "location", "contact", "template", "interactive",
)  # fmt: skip
#: Message types whose content is a file, attached through the request body's ``media``.
MEDIA_TYPES: frozenset[str] = frozenset(
    {"image", "gif", "video", "audio", "ptt", "sticker", "document"}
)
#: The fields "Update a conversation" accepts.
CONVERSATION_FIELDS: tuple[str, ...] = ("assignee", "labels", "status", "team", "unreadCount")
CONVERSATION_STATUSES: tuple[str, ...] = ("OPEN", "CLOSED")
INTERACTIVE_TYPES: tuple[str, ...] = ("button", "list", "product", "productList")
SEND_BODY_FIELDS: tuple[str, ...] = ("message", "media")

TEXT_MAX = 4096
CAPTION_MAX = 1024
MAX_BUTTONS = 3
BUTTON_TITLE_MAX = 20
ROW_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72
MAX_ROWS = 10
MAX_SECTIONS = 10
MAX_PRODUCTS = 30

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# Per simple message type: field -> (required, maximum length or None). "type" is implied.
# Lengths: the reference gives none, so none are checked here.
_STRING_FIELDS: Mapping[str, Mapping[str, tuple[bool, int | None]]] = {
    "text": {"body": (True, None)},
    "image": {"mimeType": (True, None), "caption": (False, None)},
    "gif": {"mimeType": (True, None), "caption": (False, None)},
    "video": {"mimeType": (True, None), "caption": (False, None)},
    "audio": {"mimeType": (True, None)},
    "ptt": {"mimeType": (True, None)},
    "sticker": {"mimeType": (True, None)},
    "document": {"fileName": (True, None), "mimeType": (True, None), "title": (True, None)},
    "location": {"name": (False, None), "url": (False, None)},
}

# Per other message type: its fields, checked by their own code below.
_OTHER_FIELDS: Mapping[str, tuple[str, ...]] = {
    "location": ("latitude", "longitude"),
    "contact": ("contacts",),
    "template": ("template",),
    "interactive": ("interactive",),
}

# Interactive components per interactive type: (required, optional).
_COMPONENTS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "button": (("body", "buttons"), ("header", "footer")),
    "list": (("body", "list"), ("header", "footer")),
    "product": (("product",), ("body", "footer")),
    "productList": (("header", "body", "productList"), ("footer",)),
}


class _Check:
    """Collects problems; small typed helpers that each report under a field path."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def result(self) -> list[str]:
        """The problems in order, each once (a missing field is seen by two checks)."""
        return list(dict.fromkeys(self.problems))

    def add(self, path: str, reason: str) -> None:
        self.problems.append(f"{path}: {reason}")

    def obj(self, value: object, path: str) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.add(path, "required" if value is None else "must be an object")
        return None

    def array(self, value: object, path: str) -> list[Any] | None:
        if isinstance(value, list):
            return value
        self.add(path, "required" if value is None else "must be an array")
        return None

    def fields(
        self,
        obj: Mapping[str, Any],
        path: str,
        required: tuple[str, ...],
        optional: tuple[str, ...],
    ) -> None:
        """Report missing required fields (others pass through to the platform)."""
        self.problems.extend(f"{path}.{k}: required" for k in required if k not in obj)

    def string(
        self,
        obj: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool = True,
        max_len: int | None = None,
    ) -> str | None:
        value = obj.get(key)
        where = f"{path}.{key}"
        if value is None:
            if required:
                self.add(where, "required")
            return None
        if not isinstance(value, str):
            self.add(where, "must be a string")
        elif max_len is not None and len(value) > max_len:
            self.add(where, f"at most {max_len} characters, got {len(value)}")
        else:
            return value
        return None

    def number(self, obj: Mapping[str, Any], key: str, path: str, bound: float) -> None:
        value = obj.get(key)
        where = f"{path}.{key}"
        if value is None:
            self.add(where, "required")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            self.add(where, "must be a number")
        elif not math.isfinite(value) or not -bound <= value <= bound:
            self.add(where, f"must be between {-bound:g} and {bound:g}")


def message_problems(message: object) -> list[str]:
    """Every problem with the ``message`` object of a send-message request."""
    check = _Check()
    _message(check, message, "message")
    return check.result()


def _message(check: _Check, message: object, path: str) -> None:
    msg = check.obj(message, path)
    if msg is None:
        return
    kind = msg.get("type")
    if kind is None:
        check.add(f"{path}.type", "required")
        return
    if kind not in MESSAGE_TYPES:
        check.add(f"{path}.type", f"unknown type {kind!r}; allowed: {', '.join(MESSAGE_TYPES)}")
        return
    strings = _STRING_FIELDS.get(kind, {})
    for key, (required, max_len) in strings.items():
        check.string(msg, key, path, required=required, max_len=max_len)
    if kind == "location":
        check.number(msg, "latitude", path, 90)
        check.number(msg, "longitude", path, 180)
    elif kind in ("contact", "template"):
        key = "contacts" if kind == "contact" else "template"
        value = msg.get(key)
        if not isinstance(value, list | dict):
            check.add(f"{path}.{key}", "required" if value is None else "must be an array")
    elif kind == "interactive":
        _interactive(check, msg.get("interactive"), f"{path}.interactive")


def _interactive(check: _Check, value: object, path: str) -> None:
    obj = check.obj(value, path)
    if obj is None:
        return
    kind = obj.get("type")
    if kind not in INTERACTIVE_TYPES:
        reason = "required" if kind is None else f"unknown type {kind!r}; allowed: "
        check.add(f"{path}.type", reason + (", ".join(INTERACTIVE_TYPES) if kind else ""))
        return
    path = f"{path}.components"
    comps = check.obj(obj.get("components"), path)
    if comps is None:
        return
    required, optional = _COMPONENTS[kind]
    check.fields(comps, path, required, optional)
    for name in (*required, *optional):
        if name in comps:
            _COMPONENT_CHECKS[name](check, comps[name], f"{path}.{name}")


def _text_component(check: _Check, value: object, path: str, max_len: int) -> None:
    # A plain function bound with partial() below, not a closure built at import time: mutation
    # testing (docs/testing.md) can then see which tests run it.
    obj = check.obj(value, path)
    if obj is None:
        return
    check.fields(obj, path, ("text",), ("type",))
    check.string(obj, "text", path, max_len=max_len)
    if obj.get("type", "text") != "text":
        check.add(f"{path}.type", "must be 'text'")


def _buttons(check: _Check, value: object, path: str) -> None:
    buttons = check.array(value, path)
    if buttons is None:
        return
    if not buttons:
        check.add(path, f"1 to {MAX_BUTTONS} buttons required")
    seen: set[str] = set()
    for i, item in enumerate(buttons):
        where = f"{path}[{i}]"
        if i >= MAX_BUTTONS:
            check.add(where, f"at most {MAX_BUTTONS} buttons")
            break
        button = check.obj(item, where)
        if button is None:
            continue
        check.fields(button, where, ("reply", "type"), ())
        if "type" in button and button["type"] != "reply":
            check.add(f"{where}.type", "must be 'reply'")
        reply = check.obj(button.get("reply"), f"{where}.reply")
        if reply is None:
            continue
        check.fields(reply, f"{where}.reply", ("payload", "title"), ())
        payload = check.string(reply, "payload", f"{where}.reply", max_len=256)
        check.string(reply, "title", f"{where}.reply", max_len=BUTTON_TITLE_MAX)
        if payload is not None and payload in seen:
            check.add(f"{where}.reply.payload", f"duplicate payload {payload!r}")
        seen.add(payload or "")


def _sections(
    check: _Check, value: object, path: str, entries: str, limit: int, entry: Callable[..., None]
) -> None:
    """Sections of a list (``rows``) or product list (``items``): 1-10, ``limit`` entries."""
    sections = check.array(value, path)
    if sections is None:
        return
    if not 1 <= len(sections) <= MAX_SECTIONS:
        check.add(path, f"1 to {MAX_SECTIONS} sections required, got {len(sections)}")
    total = 0
    for i, item in enumerate(sections):
        where = f"{path}[{i}]"
        section = check.obj(item, where)
        if section is None:
            continue
        check.fields(section, where, (entries, "title"), ())
        check.string(section, "title", where, max_len=ROW_TITLE_MAX)
        if entries not in section:
            continue
        rows = check.array(section[entries], f"{where}.{entries}")
        if rows == []:
            check.add(f"{where}.{entries}", "must not be empty")
        for j, row in enumerate(rows or ()):
            total += 1
            if total > limit:
                check.add(f"{where}.{entries}[{j}]", f"at most {limit} {entries} in total")
                return
            entry(check, row, f"{where}.{entries}[{j}]")


def _row(check: _Check, value: object, path: str) -> None:
    row = check.obj(value, path)
    if row is not None:
        check.fields(row, path, ("payload", "title"), ("description",))
        check.string(row, "payload", path, max_len=200)
        check.string(row, "title", path, max_len=ROW_TITLE_MAX)
        check.string(row, "description", path, required=False, max_len=ROW_DESCRIPTION_MAX)


def _product_item(check: _Check, value: object, path: str) -> None:
    item = check.obj(value, path)
    if item is not None:
        check.fields(item, path, ("productId",), ())
        check.string(item, "productId", path)


def _list(check: _Check, value: object, path: str) -> None:
    obj = check.obj(value, path)
    if obj is not None:
        check.fields(obj, path, ("sections", "title"), ())
        check.string(obj, "title", path, max_len=20)
        if "sections" in obj:
            _sections(check, obj["sections"], f"{path}.sections", "rows", MAX_ROWS, _row)


def _product_list(check: _Check, value: object, path: str) -> None:
    obj = check.obj(value, path)
    if obj is not None:
        check.fields(obj, path, ("sections",), ())
        if "sections" in obj:
            sections = obj["sections"]
            _sections(check, sections, f"{path}.sections", "items", MAX_PRODUCTS, _product_item)


_COMPONENT_CHECKS: Mapping[str, Callable[[_Check, object, str], None]] = {
    "header": partial(_text_component, max_len=60),
    "body": partial(_text_component, max_len=1024),
    "footer": partial(_text_component, max_len=60),
    "buttons": _buttons,
    "list": _list,
    "product": _product_item,
    "productList": _product_list,
}


def send_body_problems(body: object) -> list[str]:
    """Every problem with a whole send-message request body ``{"message", ...}``.

    Only ``message`` is checked; anything beside it (a ``media`` object, say) is passed through.
    """
    if not isinstance(body, dict):
        return ["body: must be a JSON object"]
    if "message" not in body:
        return ["message: required"]
    return message_problems(body["message"])


def is_http_url(value: object) -> bool:
    """True for an absolute ``http://`` or ``https://`` URL with a host."""
    if not isinstance(value, str) or any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def conversation_changes_problems(changes: object) -> list[str]:
    """Every problem with an "Update a conversation" (PATCH) body."""
    if not isinstance(changes, dict):
        return ["body: must be a JSON object"]
    check = _Check()
    check.problems.extend(f"{k}: unknown field" for k in changes if k not in CONVERSATION_FIELDS)
    if not any(k in changes for k in CONVERSATION_FIELDS):
        check.add("body", f"at least one of {', '.join(CONVERSATION_FIELDS)} required")
    if "assignee" in changes and not _is_assignee(changes["assignee"]):
        check.add("assignee", "must be null, an e-mail, or an @agent.eazy.im/@ai.eazy.im JID")
    if "labels" in changes:
        labels = changes["labels"]
        if not isinstance(labels, list):
            check.add("labels", "must be an array of @label.eazy.im JIDs")
        else:
            for i, label in enumerate(labels):
                if jid_kind(label) != "label":
                    check.add(
                        f"labels[{i}]", "must be a label JID like 1580486175684@label.eazy.im"
                    )
                elif labels.index(label) != i:
                    check.add(f"labels[{i}]", f"duplicate label {label!r}")
    if "status" in changes and changes["status"] not in CONVERSATION_STATUSES:
        check.add("status", f"must be one of {', '.join(CONVERSATION_STATUSES)}")
    if "team" in changes and changes["team"] is not None and jid_kind(changes["team"]) != "team":
        check.add("team", "must be null or a team JID like 1601626130348@team.eazy.im")
    if "unreadCount" in changes:
        count = changes["unreadCount"]
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            check.add("unreadCount", "must be null or an integer")
        elif count is not None and count < 0:
            check.add("unreadCount", "must not be negative")
    return check.result()


def _is_assignee(value: object) -> bool:
    if value is None:
        return True
    if not isinstance(value, str):
        return False
    kind = jid_kind(value)
    if kind is not None or value.endswith(".eazy.im"):
        return kind in ("agent", "ai")
    return bool(_EMAIL.match(value))
