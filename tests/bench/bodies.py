"""Webhook bodies for the load generators: ~1 KB, a realistic mix of event types.

Each template is one line of compact JSON with the placeholder ``@ID@`` where a per-request
unique id goes (the message id, or a delivery id inside ``contextInfo`` for events whose id is a
hash of the body), so the bridge's duplicate detection never short-circuits a request. wrk's Lua
script and the Python generator both split a template at ``@ID@`` and join it with the id.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson

PLACEHOLDER = "@ID@"
CHANNEL = "31612345678@whatsapp.eazy.im"
AGENT = "615b4043-5126-4af8-9128-2321fceb7358@agent.eazy.im"
TARGET_SIZE = 1024  # bytes, roughly: the filler brings every template to 900-1150 bytes

_WORDS = [
    "order",
    "parcel",
    "delivery",
    "tomorrow",
    "thanks",
    "hello",
    "question",
    "invoice",
    "refund",
    "address",
    "tracking",
    "number",
    "shipped",
    "customer",
    "service",
    "weekend",
    "opening",
    "hours",
    "store",
    "payment",
    "return",
    "label",
    "size",
    "colour",
    "available",
    "please",
    "help",
    "status",
    "update",
    "account",
]

#: (event kind, weight): messages dominate, then receipts, echoes and typing.
MIX: tuple[tuple[str, int], ...] = (
    ("message:text", 16),
    ("message:image", 4),
    ("message:document", 2),
    ("message:location", 1),
    ("message:audio", 2),
    ("receipt:DELIVERED", 8),
    ("receipt:READ", 6),
    ("echo:text", 6),
    ("typing", 5),
    ("postback", 2),
    ("handover", 1),
    ("label", 1),
    ("note", 1),
    ("custom", 1),
)


def _contact(n: int) -> str:
    return f"316{20000000 + n:08d}@whatsapp.eazy.im"


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def _base(kind: str, contact: str, ts: int) -> dict[str, Any]:
    return {
        "contextInfo": {
            "conversation": {"id": f"conv-{contact[:11]}", "status": "OPEN"},
            "metadata": {"deliveryId": PLACEHOLDER, "source": "bench"},
            "originator": None,
        },
        "direction": "received",
        "from": {"jid": contact, "locale": "nl_NL", "name": "Jan de Vries", "picture": None},
        "timestamp": ts,
        "to": CHANNEL,
        "type": kind,
        "version": 2,
    }


def _body(kind: str, contact: str, ts: int, rng: random.Random) -> dict[str, Any]:
    event, _, sub = kind.partition(":")
    doc = _base(event, contact, ts)
    media = {"url": "https://media.eazy.im/6f1c2d3e4b5a", "size": 48213}
    if event == "message":
        message: dict[str, Any] = {"id": PLACEHOLDER, "type": sub}
        if sub == "text":
            message["body"] = _sentence(rng, 40)
        elif sub == "image":
            message.update(mimeType="image/jpeg", caption=_sentence(rng, 8))
            doc["media"] = media
        elif sub == "document":
            message.update(mimeType="application/pdf", fileName="invoice-51616.pdf")
            doc["media"] = media
        elif sub == "audio":
            message["mimeType"] = "audio/ogg; codecs=opus"
            doc["media"] = media
        elif sub == "location":
            message.update(latitude=52.0907, longitude=5.1214, name="Utrecht Centraal")
        doc["message"] = message
    elif event == "receipt":
        doc["message"] = {"id": PLACEHOLDER, "status": sub}
    elif event == "echo":
        doc["direction"] = "sent"
        doc["from"] = {"jid": CHANNEL}
        doc["to"] = contact
        doc["contextInfo"]["originator"] = {"jid": AGENT}
        doc["message"] = {"id": PLACEHOLDER, "type": "text", "body": _sentence(rng, 30)}
    elif event == "typing":
        doc["typing"] = {"state": "composing"}
    elif event == "postback":
        doc["postback"] = {"payload": "track_order", "title": "Track my order"}
    elif event == "handover":
        doc["assignee"] = "support@mycompany.com"
    elif event == "label":
        doc["labels"] = ["1580486175684@label.eazy.im", "1580486175685@label.eazy.im"]
    elif event == "note":
        doc["action"] = "created"
        doc["note"] = {
            "id": PLACEHOLDER,
            "body": _sentence(rng, 12),
            "createdAt": "2024-03-11T19:00:02.000000Z",
            "createdBy": "1558982559179@ai.eazy.im",
            "isPinned": False,
        }
    elif event == "custom":
        doc["custom"] = {"orderId": 51616, "items": [1, 2, 3], "total": "49.95"}
    return doc


def _pad(doc: dict[str, Any], rng: random.Random) -> bytes:
    """Grow ``contextInfo.metadata`` with realistic filler until the body is about 1 KB."""
    meta = doc["contextInfo"]["metadata"]
    raw = orjson.dumps(doc)
    i = 0
    while len(raw) < TARGET_SIZE - 60:
        meta[f"attr{i}"] = _sentence(rng, 6)
        i += 1
        raw = orjson.dumps(doc)
    return raw


#: ``message``: text messages only (~900 bytes, the shape of the only confirmed webhook body);
#: ``mix``: every event type by :data:`MIX`.
BODY_SETS = ("message", "mix")


def templates(count: int = 64, seed: int = 51616, kind: str = "mix") -> list[bytes]:
    """``count`` templates following :data:`MIX` (or text messages only), each for another
    conversation."""
    rng = random.Random(seed)
    mix = MIX if kind == "mix" else (("message:text", 1),)
    kinds = [kind for kind, weight in mix for _ in range(weight)]
    rng.shuffle(kinds)
    ts = 1_717_000_000
    out = []
    for n in range(count):
        kind = kinds[n % len(kinds)]
        out.append(_pad(_body(kind, _contact(n), ts + n, rng), rng))
    return out


def write_templates(path: Path, count: int = 64, kind: str = "mix") -> dict[str, Any]:
    """Write one template per line; return a description (sizes, mix) for the results."""
    items = templates(count, kind=kind)
    path.write_bytes(b"\n".join(items) + b"\n")
    sizes = sorted(len(t) for t in items)
    types: dict[str, int] = {}
    for t in items:
        kind = orjson.loads(t)["type"]
        types[kind] = types.get(kind, 0) + 1
    return {
        "set": kind,
        "templates": len(items),
        "bytes_min": sizes[0],
        "bytes_max": sizes[-1],
        "bytes_mean": round(sum(sizes) / len(sizes)),
        "types": types,
    }


def split(template: bytes) -> list[bytes]:
    return template.split(PLACEHOLDER.encode())
