"""Channel and contact with and without the deployment's channel list (DESIGN.md, Ingress 6:
"which JID is the channel comes from the channel list when it is known")."""

from __future__ import annotations

from typing import Any

import orjson

from bridge.contract.records import Topics
from bridge.ingress.intake import decode_and_normalize
from bridge.ingress.normalize import normalize

CHANNEL = "31612345678@whatsapp.eazy.im"
CONTACT = "31611111111@whatsapp.eazy.im"
TOPICS = Topics("spotler")


def event(body: dict[str, Any], channels: frozenset[str] = frozenset()) -> tuple[Any, bytes | None]:
    record = normalize(orjson.dumps(body), TOPICS, received_at=1.0, channels=channels)
    return orjson.loads(record.value), record.key


# A receipt for a message the channel sent, shaped like that message (from the channel, to the
# contact), with no direction: both JIDs are on the same network, so position alone decides.
RECEIPT = {
    "type": "receipt",
    "from": {"jid": CHANNEL},
    "to": CONTACT,
    "message": {"id": "wamid-1", "status": "delivered"},
    "timestamp": 1700000000,
}


def test_receipt_by_position_alone_is_a_guess_the_channel_list_corrects() -> None:
    without, key_without = event(RECEIPT)
    assert without["data"]["channel"]["jid"] == CONTACT  # the inference picks the wrong JID
    known, key = event(RECEIPT, frozenset({CHANNEL}))
    assert known["data"]["channel"]["jid"] == CHANNEL
    assert known["data"]["contact"]["jid"] == CONTACT
    assert known["source"] == f"/channels/{CHANNEL}"
    assert known["subject"] == CONTACT
    assert key == f"{CHANNEL}/{CONTACT}".encode()
    assert key_without != key
    assert known["data"]["direction"] == "outbound"  # sent by the channel


def test_agent_echo_naming_only_the_channel() -> None:
    """An agent's echo to a channel JID: without the list that JID is taken as the contact."""
    body = {
        "type": "echo",
        "from": {"jid": "jane@agent.eazy.im"},
        "to": CHANNEL,
        "message": {"id": "m-2", "type": "text", "body": "hi"},
    }
    without, _ = event(body)
    assert without["data"]["contact"]["jid"] == CHANNEL
    known, key = event(body, frozenset({CHANNEL}))
    assert known["data"]["channel"]["jid"] == CHANNEL
    assert known["data"]["contact"] is None
    assert key == CHANNEL.encode()


def test_a_stated_direction_stays_and_a_right_inference_is_unchanged() -> None:
    inbound = {
        "type": "message",
        "direction": "received",
        "from": {"jid": CONTACT},
        "to": CHANNEL,
        "message": {"id": "m-3", "type": "text", "body": "hello"},
    }
    plain, key_plain = event(inbound)
    known, key_known = event(inbound, frozenset({CHANNEL}))
    assert known == plain
    assert key_known == key_plain == f"{CHANNEL}/{CONTACT}".encode()
    # a body stating a direction that contradicts the list: the list decides the channel,
    # the stated direction is kept as it is
    stated = {**RECEIPT, "direction": "sent"}
    doc, _ = event(stated, frozenset({CHANNEL}))
    assert doc["data"]["channel"]["jid"] == CHANNEL
    assert doc["data"]["direction"] == "outbound"


def test_the_list_reaches_normalize_through_decoding() -> None:
    record = decode_and_normalize(orjson.dumps(RECEIPT), "", TOPICS, 1 << 20, frozenset({CHANNEL}))
    assert record.key == f"{CHANNEL}/{CONTACT}".encode()
