"""The delivery state machine (issue 22): sent, delivered, read, failed; never backwards.

Expected values from issue 22 ("a state never moves backwards (a late delivered after read is
kept in the record's history, not as the state)") and spotler/webhooks.md ("receipt": status
names unknown, probably sent/delivered/read/failed in some case: compare case-insensitively).
"""

from __future__ import annotations

import orjson
import pytest

from bridge.contract.records import Topics
from bridge.contract.status import parse_receipt, status_record, with_command
from bridge.core.delivery import MAX_HISTORY, Delivery, state_of


@pytest.mark.parametrize(
    ("status", "state"),
    [("sent", "sent"), ("DELIVERED", "delivered"), ("Read", "read"), ("failed", "failed"),
     ("on-the-moon", None), (None, None), (5, None), (["read"], None), ("read" * 100, None)],
)  # fmt: skip
def test_statuses_map_case_insensitively_or_not_at_all(status: object, state: str | None) -> None:
    assert state_of(status) == state


def fact(d: Delivery, status: str, n: int) -> bool:
    return d.add(state=state_of(status), status=status, at=f"t{n}", source="receipt",
                 event_id=f"e{n}")  # fmt: skip


def test_a_late_delivered_after_read_is_history_not_the_state() -> None:
    d = Delivery("send-message", "c1")
    d.add(state="sent", status="sent", at="t0", source="egress")
    assert fact(d, "read", 1)
    assert fact(d, "delivered", 2)
    assert d.state == "read"
    assert [h["status"] for h in d.history] == ["sent", "read", "delivered"]


def test_delivery_outranks_a_failure_report_and_read_outranks_both() -> None:
    d = Delivery("send-message", "c1")
    d.add(state="sent", status="sent", at="t0", source="egress")
    fact(d, "failed", 1)
    assert d.state == "failed"
    fact(d, "delivered", 2)
    assert d.state == "delivered"
    fact(d, "failed", 3)
    assert d.state == "delivered"


def test_a_repeated_receipt_is_not_a_new_fact_and_an_unknown_status_moves_nothing() -> None:
    d = Delivery("send-message", "c1")
    d.add(state="sent", status="sent", at="t0", source="egress")
    assert fact(d, "delivered", 1)
    assert not fact(d, "delivered", 1)  # same event id
    assert fact(d, "on-the-moon", 2)
    assert d.state == "delivered"
    assert len(d.history) == 3


def test_history_is_bounded_and_keeps_the_first_and_latest_facts() -> None:
    d = Delivery("send-message", "c1")
    d.add(state="sent", status="sent", at="t0", source="egress")
    for n in range(1, 200):
        fact(d, "delivered", n)
    assert len(d.history) == MAX_HISTORY
    assert d.history[0]["source"] == "egress"
    assert d.history[-1]["eventId"] == "e199"
    record = status_record(Topics("p"), d, "a@whatsapp.eazy.im", "b@whatsapp.eazy.im", 0.0)
    assert len(record.value) < 16 * 1024
    assert orjson.loads(record.value)["data"]["historyDropped"] == 200 - MAX_HISTORY


def test_naming_a_receipt_keeps_its_payload_bytes_and_stays_json() -> None:
    payload = b'{"type":"receipt",  "message": {"id": "m1", "status": "read"}}'
    event = (
        b'{"specversion":"1.0","id":"receipt/m1/read","source":"/channels/x","type":"t",'
        b'"time":"2026-01-01T00:00:00.000Z","datacontenttype":"application/json","data":{'
        b'"event":"receipt","receipt":{"messageId":"m1","status":"read","statusRaw":"read"},'
        b'"payload":' + payload + b"}}"
    )
    named = with_command(event, 'c-"1"')
    doc = orjson.loads(named)
    assert doc["commandid"] == 'c-"1"'
    assert doc["data"]["commandId"] == 'c-"1"'
    assert payload in named
    assert parse_receipt(named) is not None
    assert orjson.loads(with_command(b'{"id":"x","data":{}}', "c"))["data"] == {"commandId": "c"}
