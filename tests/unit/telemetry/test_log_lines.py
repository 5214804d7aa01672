"""The log line's cheap paths: the redactor's pre-check and the timestamp (in process)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from bridge.telemetry.logs import Redactor, timestamp

SECRET = "webhook-token-Hh27Yt0a"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"event":"webhook","status":200}', b'{"event":"webhook","status":200}'),
        (f'{{"error":"sent {SECRET}"}}'.encode(), b'{"error":"sent ****"}'),
        (b'{"h":"AUTHORIZATION: abc"}', b'{"h":"AUTHORIZATION: ****"}'),
        (b'{"h":"X-Api-Key=abc"}', b'{"h":"X-Api-Key=****"}'),
        (b'{"h":"Cookie: a=b"}', b'{"h":"Cookie: ****"}'),
        (b'{"m":"got Bearer abc.def"}', b'{"m":"got Bearer ****"}'),
        (b'{"m":"got basic dXNlcjpwdw=="}', b'{"m":"got basic ****"}'),
    ],
)
def test_redactor_bytes_masks_what_the_text_redactor_masks(line: bytes, expected: bytes) -> None:
    assert Redactor([SECRET]).bytes(line) == expected
    assert Redactor([SECRET]).bytes(line).decode() == Redactor([SECRET])(line.decode())


def test_a_line_without_credentials_is_returned_unchanged() -> None:
    line = b'{"event":"webhook","event_id":"message/x/sha256:00","status":200}'
    assert Redactor([SECRET]).bytes(line) is line


def test_timestamp_is_utc_iso_with_microseconds_and_close_to_now() -> None:
    before = dt.datetime.now(dt.UTC)
    stamp = timestamp(None, "info", {})["timestamp"]
    after = dt.datetime.now(dt.UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
    parsed = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before - dt.timedelta(milliseconds=1) <= parsed <= after + dt.timedelta(milliseconds=1)
