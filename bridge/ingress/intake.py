"""Webhook intake: what a body costs in memory, and how it is decoded before normalization.

The webhook (:mod:`bridge.ingress.webhook`) asks :class:`Budget` before reading a body, so that
the bytes of bodies being read and normalized at once stay bounded (``BRIDGE_MAX_INFLIGHT_BYTES``),
and hands the body to :func:`decode_and_normalize`: ``Content-Encoding`` decoded within the body
limit, then :func:`bridge.ingress.normalize.normalize`. A body that does not decode is a dead
letter with its raw bytes, never a refusal the platform would retry forever.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
import zlib

from bridge.contract.records import Record, Topics
from bridge.ingress.normalize import deadletter, normalize

#: Bodies larger than this are normalized in a worker thread, off the event loop.
OFF_LOOP_BYTES = 64 * 1024


class Budget:
    """Bytes of request bodies being read and normalized right now, against a limit.

    A request that would pass the limit is refused (503, the platform retries) unless nothing is
    in flight, so one body up to the body limit always gets through.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.large = False  # a large body was handled since memory was last given back

    def take(self, size: int) -> bool:
        if self.used and self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size

    def idle_after_large(self) -> bool:
        if self.used or not self.large:
            return False
        self.large = False
        return True


def trim_memory() -> None:
    """Return freed heap memory to the system (glibc ``malloc_trim``); a no-op elsewhere."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 (present in glibc only)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _load_libc()


class TooLarge(Exception):
    """A compressed body that decodes to more than the body limit (a gzip bomb)."""


# wbits for zlib: gzip header, zlib header (what HTTP calls deflate), or raw deflate.
_DECODERS: dict[str, tuple[int, ...]] = {
    "gzip": (16 + zlib.MAX_WBITS,),
    "x-gzip": (16 + zlib.MAX_WBITS,),
    "deflate": (zlib.MAX_WBITS, -zlib.MAX_WBITS),
}


def decode_and_normalize(
    body: bytes,
    content_encoding: str,
    topics: Topics,
    limit: int,
    channels: frozenset[str] = frozenset(),
) -> Record:
    """Decode ``Content-Encoding`` within the body limit, then normalize.

    A body that claims an encoding it does not decode with (or an encoding the bridge does not
    know) is dead-lettered with the raw bytes, since the platform would retry a refusal forever;
    one that decodes past ``limit`` bytes is refused with 413.
    """
    received_at = time.time()
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return normalize(body, topics, received_at=received_at, channels=channels)
    wbits_options = _DECODERS.get(encoding)
    if wbits_options is None:
        reason = f"unsupported Content-Encoding {encoding[:40]!r}"
        return deadletter(body, topics, reason, received_at)
    for wbits in wbits_options:
        decoder = zlib.decompressobj(wbits)
        try:
            decoded = decoder.decompress(body, limit + 1)
        except zlib.error:
            continue
        if len(decoded) > limit or decoder.unconsumed_tail:
            raise TooLarge
        if decoder.eof and not decoder.unused_data:
            return normalize(decoded, topics, received_at=received_at, channels=channels)
    reason = f"body does not decode as Content-Encoding {encoding}"
    return deadletter(body, topics, reason, received_at)
