"""Ingress's copy of the send log (issue 22): receipts name their command, memory is bounded."""

from __future__ import annotations

import time
import tracemalloc

import orjson

from bridge.contract.records import Record, Topics
from bridge.contract.status import SendEntry, send_log_record
from bridge.core.config import Settings
from bridge.ingress.receipt_names import ReceiptNames
from bridge.telemetry.metrics import Metrics

TOPICS = Topics("p")


def entry_value(n: int, at: float) -> bytes:
    entry = SendEntry("send-message", f"cmd-{n}", "c@whatsapp.eazy.im", "k@whatsapp.eazy.im",
                      "sent", f"{n:040x}", at, at - 1)  # fmt: skip
    return send_log_record(TOPICS, entry, None).value


def receipt_record(message_id: object) -> Record:
    event = {"specversion": "1.0", "id": "receipt/x", "source": "/channels/c", "type": "t",
             "time": "2026-01-01T00:00:00.000Z", "datacontenttype": "application/json",
             "data": {"event": "receipt", "receipt": {"messageId": message_id, "status": "read"},
                      "payload": {"type": "receipt"}}}  # fmt: skip
    return Record("p.events.receipt", b"k", orjson.dumps(event), "receipt/x", "receipt")


def names(**env: str) -> ReceiptNames:
    return ReceiptNames(Settings.from_env(env), Metrics())


def test_a_known_send_names_the_receipt_and_anything_else_passes_unchanged() -> None:
    view = names()
    view.learn(entry_value(1, time.time()), time.time())
    named = orjson.loads(view.name(receipt_record(f"{1:040x}")).value)
    assert (named["commandid"], named["data"]["commandId"]) == ("cmd-1", "cmd-1")
    for other in (f"{2:040x}", None, 5, "x" * 5000):
        record = receipt_record(other)
        assert view.name(record) is record
    message = Record("p.events.message", b"k", b"{}", "m", "message")
    assert view.name(message) is message
    view.learn(b"not json", time.time())  # a broken send-log record is skipped
    view.learn(None, time.time())


def test_200000_sends_in_the_window_stay_under_the_cap() -> None:
    view = names(BRIDGE_STATUS_MAX_ENTRIES="100000")
    now = time.time()
    values = [entry_value(n, now) for n in range(200_000)]
    tracemalloc.start()
    try:
        for value in values:
            view.learn(value, now)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(view) == 100_000
    assert held / len(view) < 600, f"{held / len(view):.0f} bytes per send"


def test_sends_older_than_the_window_are_forgotten() -> None:
    view = names(BRIDGE_STATUS_WINDOW="3600")
    now = time.time()
    view.learn(entry_value(1, now - 4000), now)
    view.learn(entry_value(2, now - 100), now)
    assert len(view) == 1
