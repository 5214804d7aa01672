"""bridge.egress.validation: message types, send-message bodies and conversation updates."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bridge.contract.jids import conversation_problem
from bridge.egress.validation import (
    CONVERSATION_FIELDS,
    MEDIA_TYPES,
    MESSAGE_TYPES,
    conversation_changes_problems,
    message_problems,
    send_body_problems,
)

MEDIA = {"url": "https://cdn.example.com/file"}

# The reference's "WhatsApp examples", verbatim.
BUTTON: dict[str, Any] = {
    "message": {
        "interactive": {
            "components": {
                "body": {"text": "How can we help you?", "type": "text"},
                "buttons": [
                    {"reply": {"payload": "button_id_1", "title": "Option 1"}, "type": "reply"},
                    {"reply": {"payload": "button_id_2", "title": "Option 2"}, "type": "reply"},
                ],
            },
            "type": "button",
        },
        "type": "interactive",
    }
}
LIST: dict[str, Any] = {
    "message": {
        "interactive": {
            "components": {
                "body": {"text": "How can we help you?", "type": "text"},
                "list": {
                    "title": "Make a choice",
                    "sections": [
                        {
                            "rows": [
                                {
                                    "description": "Optional description",
                                    "payload": "button_id_1",
                                    "title": "Option 2",
                                },
                                {
                                    "description": "Optional description",
                                    "payload": "button_id_2",
                                    "title": "Option 2",
                                },
                                {
                                    "description": "Optional description",
                                    "payload": "button_id_3",
                                    "title": "Option 3",
                                },
                            ],
                            "title": "Section 1",
                        }
                    ],
                },
            },
            "type": "list",
        },
        "type": "interactive",
    }
}
PRODUCT: dict[str, Any] = {
    "message": {
        "interactive": {
            "components": {
                "body": {"text": "Here is a suggested product for you", "type": "text"},
                "product": {"productId": "1105524"},
            },
            "type": "product",
        },
        "type": "interactive",
    }
}
PRODUCT_LIST: dict[str, Any] = {
    "message": {
        "interactive": {
            "components": {
                "header": {"text": "Make a selection", "type": "text"},
                "body": {"text": "Here are some suggested products for you", "type": "text"},
                "productList": {
                    "sections": [
                        {
                            "items": [
                                {"productId": "1105521"},
                                {"productId": "1105522"},
                                {"productId": "1105523"},
                            ],
                            "title": "Our Collection",
                        }
                    ]
                },
            },
            "type": "productList",
        },
        "type": "interactive",
    }
}

VALID_MESSAGES: dict[str, dict[str, Any]] = {
    "text": {"body": "Have a nice day!", "type": "text"},
    "image": {"caption": "Look", "mimeType": "image/jpeg", "type": "image"},
    "gif": {"mimeType": "video/mp4", "type": "gif"},
    "video": {"caption": "Watch", "mimeType": "video/mp4", "type": "video"},
    "audio": {"mimeType": "audio/ogg", "type": "audio"},
    "ptt": {"mimeType": "audio/ogg; codecs=opus", "type": "ptt"},
    "sticker": {"mimeType": "image/webp", "type": "sticker"},
    "document": {
        "fileName": "ticket.pdf",
        "mimeType": "application/pdf",
        "title": "Your ticket",
        "type": "document",
    },
    "location": {
        "latitude": 52.37,
        "longitude": 4.89,
        "name": "Amsterdam",
        "url": "https://example.com",
        "type": "location",
    },
    "contact": {"contacts": [{"name": "John Doe", "phone": "+31611111111"}], "type": "contact"},
    "template": {
        "template": {"name": "hello", "language": "en", "parameters": ["John"]},
        "type": "template",
    },
}


def body_for(message: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if message["type"] in MEDIA_TYPES:
        body["media"] = MEDIA
    return body


def interactive(example: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(example["message"])


def components(message: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = message["interactive"]["components"]
    return result


def test_constants_cover_the_reference_tables() -> None:
    """Every type in the reference's tables, and interactive, is known; media is a subset."""
    assert set(VALID_MESSAGES) | {"interactive"} == set(MESSAGE_TYPES)
    assert set(MEDIA_TYPES) < set(MESSAGE_TYPES)
    assert CONVERSATION_FIELDS == ("assignee", "labels", "status", "team", "unreadCount")


@pytest.mark.parametrize("kind", sorted(VALID_MESSAGES))
def test_each_message_type_is_valid(kind: str) -> None:
    """A well-formed message of each type has no problems, alone and as a send body."""
    message = VALID_MESSAGES[kind]
    assert message_problems(message) == []
    assert send_body_problems(body_for(message)) == []


def test_reference_send_example_is_valid() -> None:
    """The reference's "Send messages" body is valid verbatim."""
    body = {"message": {"body": "Have a nice day!", "type": "text"}}
    assert send_body_problems(body) == []


@pytest.mark.parametrize("example", [BUTTON, LIST, PRODUCT, PRODUCT_LIST])
def test_reference_whatsapp_examples_are_valid(example: dict[str, Any]) -> None:
    """The four WhatsApp interactive examples pass verbatim."""
    assert send_body_problems(example) == []


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("text", "body"),
        ("image", "mimeType"),
        ("video", "mimeType"),
        ("audio", "mimeType"),
        ("document", "fileName"),
        ("document", "title"),
        ("location", "latitude"),
        ("location", "longitude"),
        ("contact", "contacts"),
        ("template", "template"),
    ],
)
def test_missing_required_field_is_named(kind: str, field: str) -> None:
    """Leaving out a mandatory field reports ``message.<field>: required``."""
    message = dict(VALID_MESSAGES[kind])
    del message[field]
    assert f"message.{field}: required" in message_problems(message)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"type": "text", "body": 5}, "message.body: must be a string"),
        ({"type": "image", "mimeType": "image/png", "caption": 3}, "message.caption: must be"),
        (
            {"type": "location", "latitude": True, "longitude": 4},
            "message.latitude: must be a number",
        ),
        (
            {"type": "location", "latitude": "52", "longitude": 4},
            "message.latitude: must be a number",
        ),
        ({"type": "location", "latitude": 91, "longitude": 4}, "message.latitude: must be between"),
        (
            {"type": "location", "latitude": 1, "longitude": -181},
            "message.longitude: must be between",
        ),
        ({"type": "contact", "contacts": "John"}, "message.contacts: must be an array"),
        ({"type": "contact"}, "message.contacts: required"),
        ({"type": "template", "template": "hello"}, "message.template: must be an array"),
        ({"type": "template", "template": 3}, "message.template: must be an array"),
        ({"type": "image", "mimeType": 3}, "message.mimeType: must be a string"),
        ({"type": "document", "mimeType": "a/b", "fileName": "f"}, "message.title: required"),
        ({"body": "hi"}, "message.type: required"),
        ([], "message: must be an object"),
    ],
)
def test_invalid_messages(message: Any, expected: str) -> None:
    """Wrong types, empty strings, out-of-range numbers and unknown fields are reported by path."""
    problems = message_problems(message)
    assert any(p.startswith(expected) for p in problems), problems


def test_unknown_type_names_the_allowed_types() -> None:
    """An unknown ``type`` lists every allowed type."""
    (problem,) = message_problems({"type": "fax", "body": "x"})
    assert problem.startswith("message.type: unknown type 'fax'")
    assert all(kind in problem for kind in MESSAGE_TYPES)


def test_fields_beyond_the_reference_pass_through() -> None:
    """Issue 9 item 12: no invented rules: unknown fields, empty strings, any MIME text,
    long bodies and any template or contact structure pass; the platform judges them."""
    assert message_problems({"type": "text", "body": "x" * 10_000, "preview": True}) == []
    assert message_problems({"type": "image", "mimeType": "jpeg", "caption": "x" * 5000}) == []
    assert message_problems({"type": "contact", "contacts": []}) == []
    assert message_problems({"type": "template", "template": ["hello"]}) == []
    assert message_problems({"type": "template", "template": {"id": "x"}}) == []


def test_every_problem_is_reported() -> None:
    """All problems come back at once, not only the first."""
    problems = message_problems({"type": "document", "mimeType": 1, "extra": True})
    assert len(problems) == 3, problems


def test_at_most_three_buttons() -> None:
    """A fourth button is reported at its index."""
    message = interactive(BUTTON)
    buttons = components(message)["buttons"]
    buttons += [
        {"reply": {"payload": f"button_id_{i}", "title": f"Option {i}"}, "type": "reply"}
        for i in (3, 4)
    ]
    assert message_problems(message) == [
        "message.interactive.components.buttons[3]: at most 3 buttons"
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: c["buttons"].clear(), "message.interactive.components.buttons: 1 to 3"),
        (
            lambda c: c["buttons"][0]["reply"].update(title="x" * 21),
            "message.interactive.components.buttons[0].reply.title: at most 20 characters",
        ),
        (
            lambda c: c["buttons"][1]["reply"].pop("payload"),
            "message.interactive.components.buttons[1].reply.payload: required",
        ),
        (
            lambda c: c["buttons"][1].update(type="url"),
            "message.interactive.components.buttons[1].type: must be 'reply'",
        ),
        (
            lambda c: c["buttons"][1]["reply"].update(payload="button_id_1"),
            "message.interactive.components.buttons[1].reply.payload: duplicate",
        ),
        (lambda c: c.pop("body"), "message.interactive.components.body: required"),
        (lambda c: c["body"].pop("text"), "message.interactive.components.body.text: required"),
    ],
)
def test_invalid_buttons(change: Any, expected: str) -> None:
    """Button messages: 1-3 reply buttons with a payload and a title of at most 20 characters."""
    message = interactive(BUTTON)
    change(components(message))
    problems = message_problems(message)
    assert any(p.startswith(expected) for p in problems), problems


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda c: c["list"]["sections"][0]["rows"][0].update(title="x" * 25),
            ".list.sections[0].rows[0].title: at most 24 characters",
        ),
        (
            lambda c: c["list"]["sections"][0]["rows"][0].update(description="x" * 73),
            ".list.sections[0].rows[0].description: at most 72 characters",
        ),
        (lambda c: c["list"].pop("title"), ".list.title: required"),
        (lambda c: c["list"]["sections"].clear(), ".list.sections: 1 to 10 sections"),
        (lambda c: c["list"]["sections"][0].pop("title"), ".list.sections[0].title: required"),
        (lambda c: c["list"]["sections"][0]["rows"].clear(), ".sections[0].rows: must not be"),
        (
            lambda c: c["list"]["sections"].append(
                {"title": "More", "rows": [{"payload": f"p{i}", "title": "t"} for i in range(8)]}
            ),
            ".list.sections[1].rows[7]: at most 10 rows in total",
        ),
    ],
)
def test_invalid_lists(change: Any, expected: str) -> None:
    """List messages: sections with titles and rows, row limits, at most 10 rows in total."""
    message = interactive(LIST)
    change(components(message))
    problems = message_problems(message)
    assert any(expected in p for p in problems), problems


def test_a_list_row_needs_no_description() -> None:
    """The reference's list example calls a row's description "Optional description"."""
    message = interactive(LIST)
    for row in components(message)["list"]["sections"][0]["rows"]:
        del row["description"]
    assert message_problems(message) == []


def test_products() -> None:
    """A product needs a productId; a body is optional; product lists hold at most 30 items."""
    message = interactive(PRODUCT)
    del components(message)["body"]
    assert message_problems(message) == []
    components(message)["product"] = {}
    assert message_problems(message) == [
        "message.interactive.components.product.productId: required"
    ]
    message = interactive(PRODUCT_LIST)
    sections = components(message)["productList"]["sections"]
    sections.append({"title": "More", "items": [{"productId": str(i)} for i in range(28)]})
    assert message_problems(message) == [
        "message.interactive.components.productList.sections[1].items[27]: "
        "at most 30 items in total"
    ]
    message = interactive(PRODUCT_LIST)
    del components(message)["header"]
    assert message_problems(message) == ["message.interactive.components.header: required"]


def test_unknown_interactive_type() -> None:
    """The interactive ``type`` must be button, list, product or productList."""
    message = interactive(BUTTON)
    message["interactive"]["type"] = "carousel"
    (problem,) = message_problems(message)
    assert problem.startswith("message.interactive.type: unknown type 'carousel'")


@pytest.mark.parametrize("kind", sorted(MEDIA_TYPES))
def test_media_messages_need_only_what_the_reference_names(kind: str) -> None:
    """Issue 9 item 12: a media message copied from the reference (no ``media`` object) is
    valid, and a ``media`` object beside it is passed through unchecked."""
    message = dict(VALID_MESSAGES[kind])
    assert send_body_problems({"message": message}) == []
    assert send_body_problems({"message": message, "media": {"url": "ftp://x/y", "x": 1}}) == []


def test_send_body_rules() -> None:
    """Only ``message`` is required and checked; other top-level fields pass through."""
    text = VALID_MESSAGES["text"]
    assert send_body_problems({"message": text, "media": MEDIA}) == []
    assert send_body_problems({}) == ["message: required"]
    assert send_body_problems([text]) == ["body: must be a JSON object"]
    assert send_body_problems({"message": {"type": "text"}}) == ["message.body: required"]


@pytest.mark.parametrize(
    "changes",
    [
        {"status": "CLOSED"},
        {"assignee": "john@mycompany.com"},
        {"assignee": None},
        {"labels": ["1580486175684@label.eazy.im"]},
        {"labels": []},
        {"unreadCount": None},
        {"unreadCount": 0},
        {"assignee": "615b4043-5126-4af8-9128-2321fceb7358@agent.eazy.im"},
        {"assignee": "1563451622477@ai.eazy.im"},
        {"team": "1601626130348@team.eazy.im"},
        {"team": None, "status": "OPEN", "unreadCount": 3},
    ],
)
def test_conversation_use_cases_are_valid(changes: dict[str, Any]) -> None:
    """Each use case of the reference's "Update a conversation" table, and agent/team JIDs."""
    assert conversation_changes_problems(changes) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, "body: at least one of"),
        ({"priority": 1}, "priority: unknown field"),
        ({"status": "closed"}, "status: must be one of OPEN, CLOSED"),
        ({"status": "ARCHIVED"}, "status: must be one of OPEN, CLOSED"),
        ({"labels": ["Support"]}, "labels[0]: must be a label JID"),
        ({"labels": ["1@team.eazy.im"]}, "labels[0]: must be a label JID"),
        ({"labels": "1@label.eazy.im"}, "labels: must be an array"),
        ({"labels": ["1@label.eazy.im", "1@label.eazy.im"]}, "labels[1]: duplicate label"),
        ({"assignee": "john"}, "assignee: must be null, an e-mail"),
        ({"assignee": "1@team.eazy.im"}, "assignee: must be null, an e-mail"),
        ({"assignee": 5}, "assignee: must be null, an e-mail"),
        ({"team": "1@label.eazy.im"}, "team: must be null or a team JID"),
        ({"unreadCount": -1}, "unreadCount: must not be negative"),
        ({"unreadCount": True}, "unreadCount: must be null or an integer"),
        ({"unreadCount": 1.5}, "unreadCount: must be null or an integer"),
        ("CLOSED", "body: must be a JSON object"),
    ],
)
def test_invalid_conversation_changes(changes: Any, expected: str) -> None:
    """Unknown fields, bad statuses, label/team/assignee JIDs and unread counts are reported."""
    problems = conversation_changes_problems(changes)
    assert any(p.startswith(expected) for p in problems), problems


@pytest.mark.parametrize(
    ("channel", "contact", "expected"),
    [
        ("31612345678@whatsapp.eazy.im", "31611111111@whatsapp.eazy.im", None),
        ("31612345678@whatsapp.eazy.im", "+31611111111@whatsapp.eazy.im", "contactJid: whatsapp"),
        ("31612345678", "31611111111@whatsapp.eazy.im", "channelJid: '31612345678' is not a JID"),
        (
            "31612345678@whatsapp.eazy.im",
            "31611111111@sms.eazy.im",
            "contactJid: must be on the same",
        ),
        ("1@team.eazy.im", "1@team.eazy.im", "channelJid: team JIDs are not"),
    ],
)
def test_conversation_jid_problems(channel: str, contact: str, expected: str | None) -> None:
    """The JIDs that name a conversation: valid, not phone numbers, not JIDs, mixed networks."""
    problem = conversation_problem(channel, contact)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None
        assert problem.startswith(expected), problem


@pytest.mark.parametrize("kind", ["gif", "ptt", "sticker", "audio", "image", "video"])
def test_media_types_require_a_mime_type(kind: str) -> None:
    """The reference's "Messages" tables (Gif, Voice message, Sticker, ...) mark mimeType Y."""
    assert "message.mimeType: required" in message_problems({"type": kind})


def test_a_conversation_with_itself_names_both_fields() -> None:
    """The reason names the command's fields as DESIGN.md spells them (contactJid, channelJid)."""
    jid = "31612345678@whatsapp.eazy.im"
    problem = conversation_problem(jid, jid)
    assert problem is not None
    assert problem.startswith("contactJid: ")
    assert "channelJid" in problem
