"""The command schemas against the bridge's own validation (bridge/egress/commands.parse).

Each schema accepts every request body of the reference (copied from its text below) and
rejects what the bridge rejects; the few rules a JSON Schema cannot state (comparisons between
fields, totals across sections) are named in the schemas' descriptions and listed here.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.contract.catalog import TOPICS
from bridge.core.errors import InvalidCommand
from bridge.egress.commands import Kind, parse
from tests.contract_check import problems

CHANNEL = "31612345678@whatsapp.eazy.im"
CONTACT = "31611111111@whatsapp.eazy.im"
SEND = next(t for t in TOPICS if t.suffix == "commands.send-message")
UPDATE = next(t for t in TOPICS if t.suffix == "commands.update-conversation")

# --- request bodies from the reference text (api-v3-reference.txt) -------------------------
# "Send messages"
REF_SEND: dict[str, Any] = {"message": {"body": "Have a nice day!", "type": "text"}}
# "WhatsApp examples": Button message
REF_BUTTON: dict[str, Any] = {"message": {"interactive": {"components": {
    "body": {"text": "How can we help you?", "type": "text"},
    "buttons": [
        {"reply": {"payload": "button_id_1", "title": "Option 1"}, "type": "reply"},
        {"reply": {"payload": "button_id_2", "title": "Option 2"}, "type": "reply"},
    ]}, "type": "button"}, "type": "interactive"}}  # fmt: skip
# List message
REF_LIST: dict[str, Any] = {"message": {"interactive": {"components": {
    "body": {"text": "How can we help you?", "type": "text"},
    "list": {"title": "Make a choice", "sections": [{"rows": [
        {"description": "Optional description", "payload": "button_id_1", "title": "Option 2"},
        {"description": "Optional description", "payload": "button_id_2", "title": "Option 2"},
        {"description": "Optional description", "payload": "button_id_3", "title": "Option 3"},
    ], "title": "Section 1"}]}}, "type": "list"}, "type": "interactive"}}  # fmt: skip
# Single product message
REF_PRODUCT: dict[str, Any] = {"message": {"interactive": {"components": {
    "body": {"text": "Here is a suggested product for you", "type": "text"},
    "product": {"productId": "1105524"}}, "type": "product"}, "type": "interactive"}}  # fmt: skip
# Multi product message
REF_PRODUCT_LIST: dict[str, Any] = {"message": {"interactive": {"components": {
    "header": {"text": "Make a selection", "type": "text"},
    "body": {"text": "Here are some suggested products for you", "type": "text"},
    "productList": {"sections": [{"items": [
        {"productId": "1105521"}, {"productId": "1105522"}, {"productId": "1105523"}],
        "title": "Our Collection"}]}}, "type": "productList"}, "type": "interactive"}}  # fmt: skip
# "Messages": each type with the elements its table marks mandatory (Y), then all of them
REF_TABLES: list[dict[str, Any]] = [
    {"mimeType": "audio/ogg", "type": "audio"},
    {"contacts": [], "type": "contact"},
    {"fileName": "a.pdf", "mimeType": "application/pdf", "title": "A", "type": "document"},
    {"mimeType": "image/gif", "type": "gif"},
    {"caption": "c", "mimeType": "image/gif", "type": "gif"},
    {"mimeType": "image/jpeg", "type": "image"},
    {"caption": "c", "mimeType": "image/jpeg", "type": "image"},
    {"latitude": 52.1, "longitude": 5.1, "type": "location"},
    {"latitude": 52.1, "longitude": 5.1, "name": "n", "type": "location", "url": "https://x.nl"},
    {"mimeType": "audio/ogg", "type": "ptt"},
    {"mimeType": "image/webp", "type": "sticker"},
    {"template": [], "type": "template"},
    {"body": "b", "type": "text"},
    {"mimeType": "video/mp4", "type": "video"},
    {"caption": "c", "mimeType": "video/mp4", "type": "video"},
]
# "Update a conversation": the example, and each field it says can be updated
REF_CHANGES: list[dict[str, Any]] = [
    {"status": "CLOSED"},
    {"assignee": "john@mycompany.com"},
    {"labels": []},
    {"status": "OPEN"},
    {"team": "1601626130348@team.eazy.im"},
    {"unreadCount": None},
]
REF_EXAMPLES = [REF_SEND, REF_BUTTON, REF_LIST, REF_PRODUCT, REF_PRODUCT_LIST]
REF_BODIES: list[dict[str, Any]] = REF_EXAMPLES + [{"message": m} for m in REF_TABLES]


def send_command(body: dict[str, Any]) -> dict[str, Any]:
    return {"id": "c-1", "channelJid": CHANNEL, "contactJid": CONTACT, **body}


def update_command(changes: Any) -> dict[str, Any]:
    return {"id": "c-1", "channelJid": CHANNEL, "contactJid": CONTACT, "changes": changes}


def bridge_problem(doc: Any, kind: Kind) -> str | None:
    """The bridge's reason for refusing ``doc``, or None when it accepts it."""
    try:
        parse(orjson.dumps(doc), kind)
    except InvalidCommand as exc:
        return str(exc)
    return None


def bridge_accepts(doc: Any, kind: Kind) -> bool:
    return bridge_problem(doc, kind) is None


#: The bridge's reasons for the rules a JSON Schema cannot state (BEYOND_SCHEMA).
BEYOND_REASONS = (
    "must differ from channelJid",
    "must be on the same network",
    "duplicate payload",
    "in total",
    "must be null or an integer",
)


@pytest.mark.parametrize("body", REF_BODIES)
def test_reference_send_bodies_are_valid_commands(body: dict[str, Any]) -> None:
    command = send_command(body)
    assert problems(SEND, command) == []
    assert bridge_accepts(command, "send-message")
    wrapped = {"specversion": "1.0", "id": "c-2", "source": "/x", "type": "t", "data": command}
    assert problems(SEND, wrapped) == []


@pytest.mark.parametrize("changes", REF_CHANGES)
def test_reference_updates_are_valid_commands(changes: dict[str, Any]) -> None:
    assert problems(UPDATE, update_command(changes)) == []
    assert bridge_accepts(update_command(changes), "update-conversation")


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = copy.deepcopy(doc)
    target = doc
    for part in path[:-1]:
        target = target[part]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


_DELETE = object()
ENVELOPE = {"specversion": "1.0", "id": "x", "source": "/s", "type": "t"}
WITHOUT_ID = {"channelJid": CHANNEL, "contactJid": CONTACT, "changes": {"status": "OPEN"}}
BUTTON = {"reply": {"payload": "button_id_1", "title": "Option 1"}, "type": "reply"}
SECTION = {
    "rows": [{"payload": f"button_id_{i}", "title": f"Option {i}"} for i in range(3)],
    "title": "Section 1",
}


def msg(message: dict[str, Any]) -> dict[str, Any]:
    return send_command({"message": message})


def field(name: str, value: Any) -> dict[str, Any]:
    """The reference's text command with one top-level field changed (``_DELETE``: removed)."""
    result: dict[str, Any] = _set(send_command(REF_SEND), (name,), value)
    return result


def comp(ref: dict[str, Any], *path: Any, value: Any) -> dict[str, Any]:
    """``ref`` as a command with one interactive component changed (``_DELETE``: removed)."""
    result: dict[str, Any] = _set(
        send_command(ref), ("message", "interactive", "components", *path), value
    )
    return result


# Invalid commands: (kind, document). Each is rejected by the bridge (asserted) and the schema.
INVALID: list[tuple[Kind, Any]] = [
    ("send-message", msg({"type": "text"})),
    ("send-message", msg({"type": "text", "body": 5})),
    ("send-message", msg({"type": "text", "body": None})),
    ("send-message", msg({"type": "sms", "body": "x"})),
    ("send-message", send_command({"message": {"body": "x"}})),
    ("send-message", send_command({"message": "hello"})),
    ("send-message", send_command({})),
    ("send-message", {**send_command(REF_SEND), "extra": 1}),
    ("send-message", field("id", _DELETE)),
    ("send-message", field("id", "")),
    ("send-message", field("id", "x" * 201)),
    ("send-message", field("id", "a\nb")),
    ("send-message", field("id", "ab\n")),
    ("send-message", field("id", "a\u200bb")),
    ("send-message", field("id", 7)),
    ("send-message", field("channelJid", "31612345678")),
    ("send-message", field("channelJid", CHANNEL + "\n")),
    ("send-message", field("channelJid", "+3161234567@whatsapp.eazy.im")),
    ("send-message", field("contactJid", "1@agent.eazy.im")),
    ("send-message", field("contactJid", None)),
    ("send-message", msg({"type": "image"})),
    ("send-message", msg({"type": "image", "mimeType": "i/j", "caption": 3})),
    ("send-message", msg({"type": "document", "mimeType": "a", "title": "t"})),
    ("send-message", msg({"type": "location", "latitude": 91, "longitude": 0})),
    ("send-message", msg({"type": "location", "latitude": 0, "longitude": -181})),
    ("send-message", msg({"type": "location", "latitude": "1", "longitude": 0})),
    ("send-message", msg({"type": "location", "latitude": True, "longitude": 0})),
    ("send-message", msg({"type": "location", "longitude": 0})),
    ("send-message", msg({"type": "contact"})),
    ("send-message", msg({"type": "contact", "contacts": "x"})),
    ("send-message", msg({"type": "template", "template": 1})),
    ("send-message", msg({"type": "interactive"})),
    ("send-message", _set(send_command(REF_BUTTON), ("message", "interactive", "type"), "x")),
    (
        "send-message",
        _set(send_command(REF_BUTTON), ("message", "interactive", "components"), None),
    ),
    ("send-message", comp(REF_BUTTON, "buttons", value=[])),
    ("send-message", comp(REF_BUTTON, "buttons", value=[BUTTON] * 4)),
    ("send-message", comp(REF_BUTTON, "buttons", 0, "type", value="url")),
    ("send-message", comp(REF_BUTTON, "buttons", 0, "reply", "title", value="x" * 21)),
    ("send-message", comp(REF_BUTTON, "buttons", 0, "reply", "payload", value=_DELETE)),
    ("send-message", comp(REF_BUTTON, "body", value=_DELETE)),
    ("send-message", comp(REF_BUTTON, "body", "text", value="x" * 1025)),
    ("send-message", comp(REF_BUTTON, "body", "type", value="image")),
    ("send-message", comp(REF_BUTTON, "header", value={"text": "x" * 61})),
    ("send-message", comp(REF_BUTTON, "footer", value=None)),
    ("send-message", comp(REF_LIST, "list", "title", value="x" * 21)),
    ("send-message", comp(REF_LIST, "list", "sections", value=[])),
    ("send-message", comp(REF_LIST, "list", "sections", 0, "rows", value=[])),
    ("send-message", comp(REF_LIST, "list", "sections", 0, "title", value=_DELETE)),
    (
        "send-message",
        comp(REF_LIST, "list", "sections", 0, "rows", 0, "description", value="x" * 73),
    ),
    ("send-message", comp(REF_LIST, "list", "sections", 0, "rows", 0, "title", value="x" * 25)),
    ("send-message", comp(REF_LIST, "list", "sections", 0, "rows", 0, "payload", value="x" * 201)),
    ("send-message", comp(REF_PRODUCT, "product", value={})),
    ("send-message", comp(REF_PRODUCT, "product", "productId", value=1105524)),
    ("send-message", comp(REF_PRODUCT_LIST, "header", value=_DELETE)),
    ("send-message", comp(REF_PRODUCT_LIST, "productList", "sections", 0, "items", value=[])),
    ("update-conversation", update_command({})),
    ("update-conversation", update_command("CLOSED")),
    ("update-conversation", update_command({"status": "closed"})),
    ("update-conversation", update_command({"status": "CLOSED", "priority": 1})),
    ("update-conversation", update_command({"assignee": "john"})),
    ("update-conversation", update_command({"assignee": "x@whatsapp.eazy.im"})),
    ("update-conversation", update_command({"assignee": 5})),
    ("update-conversation", update_command({"labels": "1580486175684@label.eazy.im"})),
    ("update-conversation", update_command({"labels": ["1@team.eazy.im"]})),
    ("update-conversation", update_command({"labels": ["1@label.eazy.im", "1@label.eazy.im"]})),
    ("update-conversation", update_command({"team": "1@label.eazy.im"})),
    ("update-conversation", update_command({"unreadCount": -1})),
    ("update-conversation", update_command({"unreadCount": "3"})),
    ("update-conversation", update_command({"unreadCount": True})),
    ("update-conversation", _set(update_command({"status": "OPEN"}), ("changes",), _DELETE)),
    ("update-conversation", {**update_command({"status": "OPEN"}), "message": REF_SEND["message"]}),
    ("update-conversation", {**ENVELOPE, "data": "no"}),
    ("update-conversation", {**ENVELOPE, "data": update_command({"status": "GONE"})}),
    ("update-conversation", {**ENVELOPE, "id": None, "data": WITHOUT_ID}),
    ("update-conversation", {**ENVELOPE, "id": "a\tb", "data": WITHOUT_ID}),
]

#: What the bridge rejects that a JSON Schema cannot say (a comparison between two fields, a
#: total across sections, integers written as 1.0): the schemas' descriptions name them.
BEYOND_SCHEMA: list[tuple[Kind, Any]] = [
    ("send-message", {**send_command(REF_SEND), "contactJid": "3ecce6e1@apple.eazy.im"}),
    ("send-message", {**send_command(REF_SEND), "contactJid": CHANNEL}),
    ("send-message", comp(REF_BUTTON, "buttons", 1, "reply", "payload", value="button_id_1")),
    ("send-message", comp(REF_LIST, "list", "sections", value=[SECTION] * 4)),
    ("update-conversation", update_command({"unreadCount": 1.0})),
]


@pytest.mark.parametrize(("kind", "doc"), BEYOND_SCHEMA)
def test_beyond_schema_reasons_are_known(kind: Kind, doc: Any) -> None:
    reason = bridge_problem(doc, kind)
    assert reason is not None
    assert any(r in reason for r in BEYOND_REASONS), reason


@pytest.mark.parametrize(("kind", "doc"), INVALID)
def test_schema_rejects_what_the_bridge_rejects(kind: Kind, doc: Any) -> None:
    assert not bridge_accepts(doc, kind)
    assert problems(SEND if kind == "send-message" else UPDATE, doc) != []


@pytest.mark.parametrize(("kind", "doc"), BEYOND_SCHEMA)
def test_rules_beyond_a_schema_are_the_bridges(kind: Kind, doc: Any) -> None:
    assert not bridge_accepts(doc, kind)
    assert problems(SEND if kind == "send-message" else UPDATE, doc) == []


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.extend(_paths(v, (*prefix, i)))
    return out


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-200, 200),
    st.floats(-200, 200),
    st.sampled_from(["", "x", "x" * 30, "x" * 300, "a\tb", "text", "reply", CHANNEL, "CLOSED",
                     "1@label.eazy.im", "1@team.eazy.im", "a@b.nl"]),
    st.just([]),
    st.just({}),
)  # fmt: skip
_SEEDS: list[tuple[Kind, dict[str, Any]]] = [
    *(("send-message", send_command(dict(b))) for b in REF_BODIES),
    *(("update-conversation", update_command(c)) for c in REF_CHANGES),
]


@settings(
    max_examples=1000, derandomize=True, suppress_health_check=[HealthCheck.too_slow], deadline=None
)
@given(seed=st.sampled_from(_SEEDS), data=st.data())
def test_schema_and_bridge_agree_on_mutated_commands(seed: tuple[Kind, Any], data: Any) -> None:
    """Change one field of a valid command (delete it or give it another value): the schema
    and the bridge accept or reject it alike."""
    kind, doc = seed
    path = data.draw(st.sampled_from(_paths(doc)))
    value = data.draw(st.one_of(st.just(_DELETE), _VALUES))
    mutated = _set(doc, path, value)
    spec = SEND if kind == "send-message" else UPDATE
    reason, found = bridge_problem(mutated, kind), problems(spec, mutated)
    if reason is not None and not found:
        assert any(r in reason for r in BEYOND_REASONS), (mutated, reason)
    else:
        assert (reason is None) == (not found), (mutated, reason, found)
