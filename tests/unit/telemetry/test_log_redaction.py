"""Secrets and control characters in logs (issue 15 items 4 and 8), in a real child process.

Each case configures logging the way ``bridge`` does (``logs.configure`` with the configured
secrets) in a fresh interpreter, logs, and the test reads what reached stdout and stderr.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

API_KEY = "api-key-Zq81xV0m4412"
TOKEN = "webhook-token-Hh27Yt0a"


def run(fmt: str, body: str) -> str:
    code = textwrap.dedent(
        f"""
        import logging, structlog
        from bridge.telemetry import logs
        logs.configure("info", {fmt!r}, secrets=[{API_KEY!r}, {TOKEN!r}])
        log = structlog.get_logger("t")
        """
    ) + textwrap.dedent(body)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


CRASH = """
    def call_api(key):
        headers = {"Authorization": "Bearer " + key}
        raise RuntimeError("platform unreachable")
    try:
        call_api(API)
    except RuntimeError:
        log.exception("api.crashed")
"""


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_tracebacks_show_no_locals_and_no_secrets(fmt: str) -> None:
    """A traceback whose frame holds ``Authorization: Bearer <key>`` never prints the key."""
    out = run(fmt, f"API = {API_KEY!r}\n" + textwrap.dedent(CRASH))
    assert "platform unreachable" in out  # the traceback is there
    assert API_KEY not in out
    assert "Bearer " + API_KEY[:8] not in out
    assert "locals" not in out.lower()


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_library_lines_quoting_a_header_are_redacted(fmt: str) -> None:
    """aiohttp's server logger quotes a malformed header's value: the token must not show."""
    out = run(
        fmt,
        f"""
        bad = b"Authorization: Bearer {TOKEN}\\x0b"
        logging.getLogger("aiohttp.server").error("Invalid header value char: %r", bad)
        other = "Authorization: Bearer some-unconfigured-credential"
        logging.getLogger("aiohttp.client").warning("sent %s", other)
        log.warning("echo", header=other, key={API_KEY!r})
        """,
    )
    assert "Invalid header value char" in out
    assert TOKEN not in out
    assert API_KEY not in out
    assert "some-unconfigured-credential" not in out
    assert out.count("****") >= 4


def test_console_escapes_control_characters_and_ansi() -> None:
    """ESC sequences and other control characters in values print escaped, not raw."""
    out = run(
        "console",
        """
        log.info("webhook", event_id="x\\x1b[2J\\x1b]0;owned\\x07y", remote="a\\rb\\x00c")
        logging.getLogger("aiohttp.server").warning("bad %s", "q\\x1b[31mred")
        """,
    )
    for raw in ("\x1b[2J", "\x1b]0;", "\x07", "\r", "\x00", "\x1b[31mred"):
        assert raw not in out
    assert "\\x1b[2J" in out
    assert "\\x1b[31mred" in out
