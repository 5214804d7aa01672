"""Logging: structlog configured once, from the command line entry point, never at import.

One JSON line per unit of work (a webhook delivery, a command) on stdout. Message bodies,
tokens and keys are never passed to an info-level log call anywhere in the package.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, BinaryIO

import orjson
import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure(level: str = "info", fmt: str = "json") -> None:
    """Set up structlog (and route stdlib logging, e.g. aiokafka's, through the same level)."""
    numeric = _LEVELS.get(level, logging.INFO)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "console":
        processors: list[structlog.typing.Processor] = [*shared, structlog.dev.ConsoleRenderer()]
        factory: structlog.typing.WrappedLogger = structlog.PrintLoggerFactory(sys.stdout)
    else:
        processors = [
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ]
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
