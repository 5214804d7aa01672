"""Duplicate detection: a bounded memory of event ids recently made durable.

The platform retries deliveries, so the same event can arrive again. Ingress remembers the
ids of events it has already made durable (at most ``size`` ids, each for ``ttl`` seconds) and
acknowledges a repeat without publishing it again. Pure: no I/O.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class RecentIds:
    """An insertion-ordered set of ids with a size bound and a time-to-live."""

    def __init__(self, size: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._size = size
        self._ttl = ttl
        self._clock = clock
        self._ids: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, event_id: object) -> bool:
        if not isinstance(event_id, str):
            return False
        added = self._ids.get(event_id)
        if added is None:
            return False
        if self._clock() - added > self._ttl:
            del self._ids[event_id]
            return False
        return True

    def add(self, event_id: str) -> None:
        if self._size <= 0:
            return
        self._ids[event_id] = self._clock()
        self._ids.move_to_end(event_id)
        while len(self._ids) > self._size:
            self._ids.popitem(last=False)
