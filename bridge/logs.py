"""Logging: structlog configured once, from the command line entry point, never at import.

One JSON line per unit of work (a webhook delivery, a command) on stdout. Message bodies,
tokens and keys are never passed to an info-level log call anywhere in the package.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

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
        factory = structlog.BytesLoggerFactory(sys.stdout.buffer)
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
