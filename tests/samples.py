"""Webhook bodies for tests: the confirmed ``message`` body and plausible shapes of the rest."""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
import time
from typing import Any

CHANNEL = "31612345678@whatsapp.eazy.im"
CONTACT = "31611111111@whatsapp.eazy.im"
AGENT = "615b4043-5126-4af8-9128-2321fceb7358@agent.eazy.im"

#: The real Apple Messages delivery quoted in docs/platform.md, byte for byte in content.
CONFIRMED_MESSAGE: dict[str, Any] = {
    "contextInfo": {"conversation": {}, "metadata": {}, "originator": None},
    "direction": "received",
    "from": {
        "jid": "3ecce6e1-3c6a-4aeb-a837-1822c4f6bcad@apple.eazy.im",
        "locale": "en_US",
        "name": None,
        "picture": None,
    },
    "message": {"body": "Thank you ", "id": "26145a84-49f3-4c3c-a99b-98f932cae585", "type": "text"},
    "timestamp": 1663619718,
    "to": "7dd751fa-1ed7-4382-9ce0-0e0baf01d9c7@apple.eazy.im",
    "type": "message",
    "version": 2,
}

MEDIA = {"url": "https://media.eazy.im/abc123", "size": 12345}

#: Per message type: the ``message`` part and whether the body carries top-level ``media``.
MESSAGE_PARTS: dict[str, tuple[dict[str, Any], bool]] = {
    "text": ({"body": "Hello"}, False),
    "image": ({"mimeType": "image/jpeg", "caption": "a photo"}, True),
    "gif": ({"mimeType": "video/mp4"}, True),
    "video": ({"mimeType": "video/mp4", "caption": "a clip"}, True),
    "audio": ({"mimeType": "audio/ogg"}, True),
    "ptt": ({"mimeType": "audio/ogg; codecs=opus"}, True),
    "sticker": ({"mimeType": "image/webp"}, True),
    "document": ({"mimeType": "application/pdf", "fileName": "t.pdf", "title": "Ticket"}, True),
    "location": ({"latitude": 52.09, "longitude": 5.12, "name": "Utrecht"}, False),
    "contact": ({"contacts": [{"name": {"formatted_name": "Jane"}, "phones": []}]}, False),
}


def new_id() -> str:
    return secrets.token_hex(20)


def message_body(
    kind: str = "text",
    *,
    channel: str = CHANNEL,
    contact: str = CONTACT,
    message_id: str | None = None,
    event: str = "message",
    direction: str | None = "received",
) -> dict[str, Any]:
    """An inbound WhatsApp ``message`` webhook of type ``kind``, shaped like the confirmed one."""
    part, has_media = MESSAGE_PARTS[kind]
    body: dict[str, Any] = {
        "contextInfo": {"conversation": {}, "metadata": {}, "originator": None},
        "from": {"jid": contact, "locale": "nl_NL", "name": "Jan", "picture": None},
        "message": {"id": message_id or new_id(), "type": kind, **copy.deepcopy(part)},
        "timestamp": int(time.time()),
        "to": channel,
        "type": event,
        "version": 2,
    }
    if direction is not None:
        body["direction"] = direction
    if has_media:
        body["media"] = dict(MEDIA)
    return body


def other_events() -> dict[str, dict[str, Any]]:
    """Plausible (inferred) bodies of the nine events besides ``message``, and ``revoke``."""
    ts = int(time.time())
    env = {"version": 2, "timestamp": ts}
    inbound = {**env, "from": {"jid": CONTACT, "name": "Jan"}, "to": CHANNEL}
    return {
        "echo": {
            **env,
            "type": "echo",
            "direction": "sent",
            "from": {"jid": CHANNEL},
            "to": CONTACT,
            "contextInfo": {"originator": {"jid": AGENT}},
            "message": {"id": new_id(), "type": "text", "body": "How can I help?"},
        },
        "receipt": {
            **inbound,
            "type": "receipt",
            "message": {"id": new_id(), "status": "DELIVERED"},
        },
        "postback": {
            **inbound,
            "type": "postback",
            "postback": {"payload": "button_id_1", "title": "Option 1"},
        },
        "handover": {**inbound, "type": "handover", "assignee": "john@mycompany.com"},
        "label": {**inbound, "type": "label", "labels": ["1580486175684@label.eazy.im"]},
        "note": {
            **inbound,
            "type": "note",
            "action": "created",
            "note": {
                "id": "edff51c3-4d8c-4d06-bd48-d61e993ecc57",
                "body": "Customer number #63553",
                "createdAt": "2020-03-11T19:00:02.000000Z",
                "createdBy": "1558982559179@ai.eazy.im",
                "isPinned": False,
                "isReadOnly": False,
                "referenceId": "CUSTOMER_NUMBER",
            },
        },
        "template_pack": {
            **env,
            "type": "template_pack",
            "to": CHANNEL,
            "templates": [{"name": "hello", "localeName": "en", "status": "APPROVED"}],
        },
        "typing": {**inbound, "type": "typing", "typing": {"state": "composing"}},
        "custom": {**inbound, "type": "custom", "custom": {"anything": [1, 2, 3]}},
        "revoke": {**inbound, "type": "revoke", "message": {"id": new_id()}},
    }


SEND_MEDIA = {"url": "https://cdn.example.com/file"}

_BODY = {"text": "How can we help you?", "type": "text"}
#: A send-message request body of every type, per the reference's tables and WhatsApp examples.
SEND_BODIES: dict[str, dict[str, Any]] = {
    "text": {"message": {"type": "text", "body": "Your order has shipped"}},
    "image": {
        "message": {"type": "image", "mimeType": "image/jpeg", "caption": "c"},
        "media": SEND_MEDIA,
    },
    "gif": {"message": {"type": "gif", "mimeType": "video/mp4"}, "media": SEND_MEDIA},
    "video": {"message": {"type": "video", "mimeType": "video/mp4"}, "media": SEND_MEDIA},
    "audio": {"message": {"type": "audio", "mimeType": "audio/ogg"}, "media": SEND_MEDIA},
    "ptt": {"message": {"type": "ptt", "mimeType": "audio/ogg"}, "media": SEND_MEDIA},
    "sticker": {"message": {"type": "sticker", "mimeType": "image/webp"}, "media": SEND_MEDIA},
    "document": {
        "message": {
            "type": "document",
            "mimeType": "application/pdf",
            "fileName": "a.pdf",
            "title": "Ticket",
        },
        "media": SEND_MEDIA,
    },
    "location": {"message": {"type": "location", "latitude": 52.1, "longitude": 5.1}},
    "contact": {"message": {"type": "contact", "contacts": [{"name": {"formatted_name": "J"}}]}},
    "template": {
        "message": {
            "type": "template",
            # "Read templates": delivery_notification (en) is APPROVED with {{1}} and {{2}}.
            "template": {
                "name": "delivery_notification",
                "language": "en",
                "parameters": ["Jan", "51616"],
            },
        }
    },
    "button": {
        "message": {
            "type": "interactive",
            "interactive": {
                "type": "button",
                "components": {
                    "body": _BODY,
                    "buttons": [
                        {"type": "reply", "reply": {"payload": "b1", "title": "Option 1"}},
                        {"type": "reply", "reply": {"payload": "b2", "title": "Option 2"}},
                    ],
                },
            },
        }
    },
    "list": {
        "message": {
            "type": "interactive",
            "interactive": {
                "type": "list",
                "components": {
                    "body": _BODY,
                    "list": {
                        "title": "Make a choice",
                        "sections": [
                            {
                                "title": "Section 1",
                                "rows": [
                                    {"description": "d", "payload": "r1", "title": "Option 1"}
                                ],
                            }
                        ],
                    },
                },
            },
        }
    },
    "product": {
        "message": {
            "type": "interactive",
            "interactive": {
                "type": "product",
                "components": {"body": _BODY, "product": {"productId": "1105524"}},
            },
        }
    },
    "productList": {
        "message": {
            "type": "interactive",
            "interactive": {
                "type": "productList",
                "components": {
                    "header": {"text": "Make a selection", "type": "text"},
                    "body": _BODY,
                    "productList": {
                        "sections": [
                            {"title": "Our Collection", "items": [{"productId": "1105521"}]}
                        ]
                    },
                },
            },
        }
    },
}


def canonical_hash(body: dict[str, Any]) -> str:
    """docs/platform.md, "Event ids": sha256 of the body with sorted keys and no whitespace."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def message_event_id(body: dict[str, Any]) -> str:
    """The event id README.md gives a message-like body: natural key, then canonical hash."""
    return f"{body['type']}/{body['message']['id']}/sha256:{canonical_hash(body)}"
