"""Parsing of ``BRIDGE_*`` values: text in, a checked value out (or ``ValueError`` with a message
that completes "NAME: ..."), :class:`Secret` for values that must never print, and
:func:`setting`, the declaration of one settings field. The settings themselves are
:mod:`bridge.core.config`'s. Imports no I/O library.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

N = TypeVar("N", int, float)


class Secret:
    """A string that never shows itself in ``repr``/``str``; call :meth:`reveal` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# -- parsers: text in, value out, ValueError with a message that completes "NAME: ..." ---------

Parser = Callable[[str], Any]


def text(raw: str) -> str:
    return raw


# The factories bind plain functions with partial() rather than return closures: the parsers
# are built at import time, and mutation testing (docs/testing.md) sees only what runs in a test.
def integer(low: int = 0, high: int | None = None) -> Parser:
    return partial(_integer, low=low, high=high)


def _integer(raw: str, low: int, high: int | None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"expected an integer, got {raw!r}") from None
    return _bounded(value, low, high)


def number(low: float = 0.0, high: float | None = None) -> Parser:
    return partial(_number, low=low, high=high)


def _number(raw: str, low: float, high: float | None) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None
    if not math.isfinite(value):  # NaN never fails a bound and inf passes every lower one
        raise ValueError(f"expected a finite number, got {raw!r}")
    return _bounded(value, low, high)


def _bounded(value: N, low: N, high: N | None) -> N:
    if value < low or (high is not None and value > high):
        span = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"must be {span}, got {value}")
    return value


def choice(allowed: tuple[str, ...], case: Callable[[str], str] = str.lower) -> Parser:
    return partial(_choice, allowed=allowed, case=case)


def _choice(raw: str, allowed: tuple[str, ...], case: Callable[[str], str]) -> str:
    value = case(raw)
    if value not in allowed:
        raise ValueError(f"must be one of {', '.join(allowed)}, got {raw!r}")
    return value


def matching(pattern: re.Pattern[str]) -> Parser:
    return partial(_matching, pattern=pattern)


def _matching(raw: str, pattern: re.Pattern[str]) -> str:
    if not pattern.fullmatch(raw):
        raise ValueError(f"must match {pattern.pattern}, got {raw!r}")
    return raw


def http_url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError(f"must be an http:// or https:// URL, got {raw!r}")
    return raw.rstrip("/")


def flag(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def is_loopback_url(url: str) -> bool:
    """True when ``url``'s host is ``localhost`` or a loopback address (no I/O, no DNS)."""
    rest = url.split("://", 1)[-1]
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    host = host[1 : host.index("]")] if host.startswith("[") and "]" in host else host
    host = host.split(":", 1)[0] if host.count(":") <= 1 else host
    return host.lower() in ("localhost", "::1") or host.startswith("127.")


def jid_list(raw: str) -> tuple[str, ...]:
    """Comma-separated JIDs (``local@domain``), each once, in the order given."""
    jids = [j.strip() for j in raw.split(",") if j.strip()]
    bad = [j for j in jids if j.count("@") != 1 or j.startswith("@") or j.endswith("@")]
    if bad or any(not j.isprintable() or " " in j for j in jids):
        raise ValueError(
            f"expected comma-separated JIDs like 31612345678@whatsapp.eazy.im, got {raw!r}"
        )
    return tuple(dict.fromkeys(jids))


def secret(raw: str) -> Secret:
    return Secret(raw)


def secrets(raw: str) -> tuple[Secret, ...]:
    return tuple(Secret(t.strip()) for t in raw.split(",") if t.strip())


#: Shortest accepted webhook token: a guessable token is no authentication.
MIN_TOKEN_LENGTH = 16


def tokens(raw: str) -> tuple[Secret, ...]:
    """Comma-separated bearer tokens, each at least :data:`MIN_TOKEN_LENGTH` characters."""
    parsed = secrets(raw)
    short = [str(n) for n, t in enumerate(parsed, 1) if len(t.reveal()) < MIN_TOKEN_LENGTH]
    if short:
        raise ValueError(
            f"every token must be at least {MIN_TOKEN_LENGTH} characters "
            f"(token {', '.join(short)} of {len(parsed)} is shorter)"
        )
    return parsed


@dataclass(frozen=True, slots=True)
class Variable:
    """One ``BRIDGE_*`` variable: where it lands in :class:`Settings` and its default."""

    name: str
    path: str  # e.g. "ingress.port"
    default: Any
    help: str


def setting(name: str, default: Any, parse: Parser = text, help: str = "") -> Any:
    """A settings field read from ``name``; unset or blank means ``default``."""
    return field(default=default, metadata={"env": name, "parse": parse, "help": help})
