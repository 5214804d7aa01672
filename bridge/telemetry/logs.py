"""Logging: structlog configured once, from the command line entry point, never at import.

One JSON line per unit of work (a webhook delivery, a command) on stdout. Message bodies,
tokens and keys are never passed to an info-level log call anywhere in the package, and what
reaches the output anyway (a library's message quoting a malformed header, a traceback) passes
:class:`Redactor` on the way out: the configured secrets and the values of credential headers
become ``****`` in every line, ours and the libraries' (stdlib logging, e.g. aiohttp and
aiokafka). Tracebacks never show frame locals. Text output (the console format, and library
lines on stderr) escapes control characters, so a hostile value cannot drive the terminal.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as dt
import functools
import logging
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO, TextIO

import orjson
import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure(level: str = "info", fmt: str = "json", secrets: Iterable[str] = ()) -> None:
    """Set up structlog (and route stdlib logging, e.g. aiokafka's, through the same level).

    ``secrets`` are the configured tokens and keys: they never appear in any log line.
    """
    numeric = _LEVELS.get(level, logging.INFO)
    redact = Redactor(secrets)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        timestamp,
    ]
    if fmt == "console":
        console = structlog.dev.ConsoleRenderer(exception_formatter=plain_traceback)
        processors: list[structlog.typing.Processor] = [
            *shared,
            escape_values,
            lambda logger, name, event: redact(console(logger, name, event)),
        ]
        factory: structlog.typing.WrappedLogger = structlog.PrintLoggerFactory(sys.stdout)
    else:
        # One processor does what add_log_level, the timestamp, format_exc_info and the JSON
        # renderer would do one call each: the delivery line is logged thousands of times a second.
        def render_json(logger: object, name: str, event: structlog.typing.EventDict) -> bytes:
            event["level"] = _LEVEL_NAMES.get(name, name)
            now = time.time()
            second = int(now)
            event["timestamp"] = f"{_utc_second(second)}.{int((now - second) * 1e6):06d}Z"
            if "exc_info" in event:
                event = _format_exc_info(logger, name, event)
            return redact.bytes(orjson.dumps(event, default=repr))

        processors = [render_json]
        sink = CoalescingLogger(sys.stdout.buffer)
        _SINKS.append(sink)
        atexit.register(sink.flush)
        factory = sink.factory
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    # Libraries log through the standard library: keep them quiet unless debugging.
    logging.basicConfig(
        stream=sys.stderr,
        level=numeric if numeric <= logging.DEBUG else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatFilter())
        handler.addFilter(RedactFilter(redact))


def timestamp(
    logger: object, name: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """``timestamp``: UTC ISO 8601 with microseconds, as structlog's ``TimeStamper(fmt="iso",
    utc=True)`` writes it, with the date and time of day formatted once per second."""
    now = time.time()
    second = int(now)
    event["timestamp"] = f"{_utc_second(second)}.{int((now - second) * 1e6):06d}Z"
    return event


@functools.lru_cache(maxsize=4)
def _utc_second(second: int) -> str:
    return dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


#: structlog's level names by method name (``add_log_level``; contextvars are not used).
_LEVEL_NAMES = {"warn": "warning", "exception": "error"}
_format_exc_info = structlog.processors.format_exc_info


#: Headers whose values are credentials, however a library quotes them (``Name: value``,
#: ``'Name': 'value'``, ``b'Name: value'``), and bearer/basic credentials anywhere.
_CREDENTIALS = re.compile(
    r"(?i)(?P<name>\b(?:proxy-)?authorization|\bx-api-key|\bapi[-_]key|\bcookie|\bset-cookie)"
    r"(?P<sep>['\"]?\s*[:=]\s*b?['\"]?)(?P<value>[^'\"\r\n,}]+)"
    r"|(?P<scheme>\b(?:bearer|basic)\s+)(?P<token>[^\s'\"\\,}]+)"
)
# Control characters (C0 but newline, DEL, C1) as escapes; tracebacks keep their newlines.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x20), *range(0x7F, 0xA0))}
_CONTROLS_BUT_NEWLINE = {c: e for c, e in _CONTROLS.items() if c != 0x0A}


def _as_bytes(line: str | bytes) -> bytes:
    return line.encode() if isinstance(line, str) else line


class Redactor:
    """Replaces the configured secrets and credential header values with ``****``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so that a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self._secret_bytes = tuple(s.encode() for s in self._secrets)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "****")
        return _CREDENTIALS.sub(_mask, text)

    def bytes(self, line: bytes) -> bytes:
        """:meth:`__call__` for a rendered line; a line that holds no secret and no credential
        word (the common case) is returned as it is after plain substring searches."""
        for secret in self._secret_bytes:
            if secret in line:
                return self(line.decode("utf-8", "replace")).encode()
        if _may_hold_credentials(line):
            return self(line.decode("utf-8", "replace")).encode()
        return line


def _may_hold_credentials(line: bytes) -> bool:
    """Whether ``line`` holds a word that precedes every credential :data:`_CREDENTIALS` masks.

    Substring searches of the lowered line, spelled out: several times cheaper than one
    case-insensitive regex scan, or than a generator over the words.
    """
    low = line.lower()
    return (
        b"authorization" in low
        or b"bearer" in low
        or b"basic" in low
        or b"cookie" in low
        or b"api-key" in low
        or b"api_key" in low
    )


def _mask(match: re.Match[str]) -> str:
    if match["name"]:
        return f"{match['name']}{match['sep']}****"
    return f"{match['scheme']}****"


def escape_controls(text: str, keep_newlines: bool = False) -> str:
    """``text`` with control characters and ANSI escapes shown as ``\\xNN``."""
    return text.translate(_CONTROLS_BUT_NEWLINE if keep_newlines else _CONTROLS)


def escape_values(
    logger: object, name: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """structlog processor for text output: escape control characters in every string value."""
    for key, value in event.items():
        # Other values are shown by repr(), which escapes control characters in strings itself.
        if isinstance(value, str):
            event[key] = escape_controls(value, keep_newlines=key == "exception")
    return event


def plain_traceback(sio: TextIO, exc_info: structlog.typing.ExcInfo) -> None:
    """Console tracebacks: the standard format, never frame locals (rich would print them)."""
    text = "".join(traceback.format_exception(*exc_info))
    sio.write("\n" + escape_controls(text, keep_newlines=True))


class RedactFilter(logging.Filter):
    """For stdlib records (libraries): redact, and escape control characters, message and
    traceback alike, before any handler formats them."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = escape_controls(self._redact(record.getMessage()))
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = escape_controls(self._redact(record.exc_text), keep_newlines=True)
        if record.stack_info:
            record.stack_info = escape_controls(self._redact(record.stack_info), True)
        return True


class CoalescingLogger:
    """Writes log lines to stdout once per event-loop iteration instead of once per line.

    structlog's BytesLogger writes and flushes every line: one system call per webhook, about a
    tenth of ingress CPU under load. Lines logged in one turn of the loop are joined into one
    write, scheduled with ``call_soon``; outside a loop, past 64 KiB, and for errors, the write
    happens at once. :func:`flush` empties the buffer (at exit, and before a forced exit).
    """

    def __init__(self, stream: BinaryIO, limit: int = 64 * 1024) -> None:
        self._stream = stream
        self._limit = limit
        self._lines: list[bytes] = []
        self._size = 0
        self._scheduled = False

    def factory(self, *args: Any) -> CoalescingLogger:
        return self

    def msg(self, message: bytes) -> None:
        self._lines.append(message)
        self._size += len(message)
        if self._scheduled:
            if self._size > self._limit:
                self.flush()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    def now(self, message: bytes) -> None:
        self._lines.append(message)
        self.flush()

    def flush(self) -> None:
        self._scheduled = False
        if not self._lines:
            return
        data = b"\n".join(self._lines) + b"\n"
        self._lines, self._size = [], 0
        try:
            self._stream.write(data)
            self._stream.flush()
        except (OSError, ValueError):  # stdout closed or gone: logging must never crash us
            pass

    debug = info = warning = warn = log = msg
    error = err = critical = exception = fatal = failure = now


#: The sinks :func:`configure` made (one per process in practice): logging is process-wide.
_SINKS: list[CoalescingLogger] = []


def flush() -> None:
    """Write out buffered log lines (before a forced exit)."""
    for sink in _SINKS:
        sink.flush()


class RepeatFilter(logging.Filter):
    """Let one record per (logger, message template) through every ``window`` seconds.

    aiokafka logs "Unable connect to node" and the like in a tight loop while a broker is away:
    tens of thousands of lines in seconds, at the very moment someone reads the logs. The first
    line of each kind still shows, then a count of what was held back.
    """

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._window = window
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self._clock()
        last, held = self._seen.get(key, (float("-inf"), 0))
        if now - last < self._window:
            self._seen[key] = (last, held + 1)
            return False
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {self._window:g}s)"
        return True
