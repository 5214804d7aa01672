"""Offsets of consumed records and where it is safe to commit (pure, no I/O).

Records of a partition finish out of order (different conversations run concurrently); the
offset that may be committed is the one after the longest run of finished records from the
start, so a commit never skips a record that is still running: at-least-once with no gaps.
"""

from __future__ import annotations

from collections import deque


class OffsetTracker:
    """Offsets of one partition in consumption order; the commit point is the first unfinished."""

    def __init__(self) -> None:
        self._entries: deque[list[int]] = deque()  # [offset, finished]
        self._by_offset: dict[int, list[int]] = {}
        self.committed: int | None = None

    def add(self, offset: int) -> None:
        entry = [offset, 0]
        self._entries.append(entry)
        self._by_offset[offset] = entry

    def finish(self, offset: int) -> None:
        entry = self._by_offset.pop(offset, None)
        if entry is not None:
            entry[1] = 1

    def commit_point(self) -> int | None:
        """The offset to commit (next to consume) if records finished since the last call.

        It pops the finished run from the front, so each offset is returned once; the consumer
        records what it committed in ``committed`` (this method does not read it).
        """
        point = None
        while self._entries and self._entries[0][1]:
            point = self._entries.popleft()[0] + 1
        return point

    @property
    def pending(self) -> int:
        return len(self._entries)
