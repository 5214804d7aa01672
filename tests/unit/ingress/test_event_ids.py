"""Event ids and keys (issue 9 items 2 and 3).

Expected forms come from DESIGN.md ("Ingress" 5, "Event records") and docs/platform.md
("Event ids"): equal bodies up to key order and whitespace share an id, bodies that differ in
substance never do; the key is ``<channel>/<contact>``, the channel alone, or none, never the
contact alone.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.contract.records import EVENT_TYPES, Topics
from bridge.ingress.normalize import normalize
from tests import samples

TOPICS = Topics("t")


def event_id(body: bytes) -> str:
    record = normalize(body, TOPICS, received_at=1_700_000_000.0)
    assert record.label != "deadletter", record
    return record.event_id


def canonical(doc: Any) -> str:
    """The canonical body of docs/platform.md: sorted keys, no whitespace."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def reformat(doc: Any, rng: random.Random) -> str:
    """The same JSON with keys in another order and other whitespace."""
    if isinstance(doc, dict):
        items = list(doc.items())
        rng.shuffle(items)
        inner = " ,\n ".join(f"{json.dumps(k)} :  {reformat(v, rng)}" for k, v in items)
        return "{ " + inner + "\t}"
    if isinstance(doc, list):
        return "[ " + " ,".join(reformat(v, rng) for v in doc) + " ]"
    return json.dumps(doc)


# Small pools so that generated pairs often share ids, actions and parties.
_ids = st.sampled_from(["m1", "m2", "edff51c3-4d8c"])
_scalars = st.one_of(st.sampled_from(["a", "b", "Hello", ""]), st.integers(0, 3), st.booleans())
_jids = st.sampled_from([samples.CHANNEL, samples.CONTACT, samples.AGENT])


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": draw(st.sampled_from([*EVENT_TYPES, "other"]))}
    optional = {
        "message": st.fixed_dictionaries(
            {"id": _ids}, optional={"type": st.just("text"), "body": _scalars, "status": _scalars}
        ),
        "note": st.fixed_dictionaries(
            {"id": _ids}, optional={"body": _scalars, "isPinned": st.booleans()}
        ),
        "action": st.sampled_from(["created", "pinned", "deleted"]),
        "status": st.sampled_from(["DELIVERED", "read"]),
        "from": _jids,
        "to": _jids,
        "timestamp": st.sampled_from([1663619718, 1663619719]),
        "extra": _scalars,
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            doc[name] = draw(strategy)
    return doc


@settings(max_examples=300)
@given(a=bodies(), b=bodies(), seed=st.integers(0, 2**32))
def test_ids_are_equal_exactly_when_bodies_are_equal(
    a: dict[str, Any], b: dict[str, Any], seed: int
) -> None:
    """Over every event type: same body (any order, any whitespace) ⇔ same id."""
    rng = random.Random(seed)
    id_a = event_id(reformat(a, rng).encode())
    assert id_a == event_id(orjson.dumps(a)), "key order or whitespace changed the id"
    assert (id_a == event_id(reformat(b, rng).encode())) == (canonical(a) == canonical(b))


def test_note_created_pinned_deleted_without_action_are_three_events() -> None:
    """The defect: all three got ``note/<id>`` and the later two were dropped as repeats."""
    note = {"id": "edff51c3-4d8c-4d06-bd48-d61e993ecc57", "body": "Call back"}
    created = {"type": "note", "note": note, "timestamp": 1663619718}
    pinned = {**created, "note": {**note, "isPinned": True}}
    deleted = {**created, "note": {**note, "deleted": True}}
    ids = [event_id(orjson.dumps(d)) for d in (created, pinned, deleted)]
    assert len(set(ids)) == 3
    for doc, id_ in zip((created, pinned, deleted), ids, strict=True):
        digest = hashlib.sha256(canonical(doc).encode()).hexdigest()[:40]
        assert id_ == f"note/{note['id']}/sha256:{digest}"


def test_natural_key_and_action_lead_the_id() -> None:
    """The natural key plus the named action, then the canonical hash (README's id forms)."""
    body = samples.other_events()["note"]
    digest = hashlib.sha256(canonical(body).encode()).hexdigest()[:40]
    assert event_id(orjson.dumps(body)) == (
        f"note/edff51c3-4d8c-4d06-bd48-d61e993ecc57/created/sha256:{digest}"
    )
    message = samples.CONFIRMED_MESSAGE
    digest = hashlib.sha256(canonical(message).encode()).hexdigest()[:40]
    assert event_id(orjson.dumps(message)) == (
        f"message/26145a84-49f3-4c3c-a99b-98f932cae585/sha256:{digest}"
    )


def test_control_characters_never_reach_an_id() -> None:
    """A message id with an ESC sequence is not used as the natural key (issue 15 item 8)."""
    body = samples.message_body("text", message_id="x\x1b[2Jy")
    id_ = event_id(orjson.dumps(body))
    assert id_.isprintable()
    assert id_.startswith("message/sha256:")


def test_agent_echo_without_channel_is_not_keyed_by_the_contact() -> None:
    """An agent's echo naming only the contact: no key rather than the contact alone."""
    body = {
        "type": "echo",
        "timestamp": 1663619718,
        "from": {"jid": samples.AGENT},
        "to": samples.CONTACT,
        "message": {"id": "e-1", "type": "text", "body": "Hi"},
    }
    record = normalize(orjson.dumps(body), TOPICS, received_at=1_700_000_000.0)
    event = orjson.loads(record.value)
    assert record.key is None
    assert event["subject"] == samples.CONTACT
    assert event["source"] == "/channels/unknown"
    assert event["data"]["channel"] is None
    assert "no channel" in event["data"]["channelMissing"]
    assert event["data"]["actor"]["jid"] == samples.AGENT


def test_channel_alone_and_full_keys() -> None:
    """A full conversation gets ``<channel>/<contact>``; an event with only the channel, the
    channel JID alone."""
    full = normalize(orjson.dumps(samples.message_body("text")), TOPICS, received_at=0.0)
    assert full.key == f"{samples.CHANNEL}/{samples.CONTACT}".encode()
    only_channel = {"type": "template_pack", "to": samples.CHANNEL, "templates": []}
    record = normalize(orjson.dumps(only_channel), TOPICS, received_at=0.0)
    assert record.key == samples.CHANNEL.encode()
    assert orjson.loads(record.value)["source"] == f"/channels/{samples.CHANNEL}"
