"""Offsets of consumed records and where it is safe to commit (pure, no I/O).

Records of a partition finish out of order (different conversations run concurrently); the
offset that may be committed is the one after the longest run of finished records from the
start, so a commit never skips a record that is still running: at-least-once with no gaps.

Behind a record that does not finish, the records after it are kept (about 112 bytes each)
until it does: the consumer pauses a partition whose tracker holds :data:`WINDOW` records and
resumes it once the head finishes, so that memory is bounded per partition.
"""

from __future__ import annotations

from collections import deque

#: Records taken off one partition and not yet committed at which the partition is paused.
WINDOW = 10_000


class OffsetTracker:
    """Offsets of one partition in consumption order; the commit point is the first unfinished."""

    def __init__(self) -> None:
        self._entries: deque[list[int]] = deque()  # [offset, finished]
        self._by_offset: dict[int, list[int]] = {}
        self.committed: int | None = None
        self._point: int | None = None

    def add(self, offset: int) -> None:
        entry = [offset, 0]
        self._entries.append(entry)
        self._by_offset[offset] = entry

    def finish(self, offset: int) -> None:
        entry = self._by_offset.pop(offset, None)
        if entry is not None:
            entry[1] = 1

    def commit_point(self) -> int | None:
        """The offset to commit (next to consume) when it is past ``committed``, else None.

        It pops the finished run from the front; the consumer sets ``committed`` once Kafka
        took the commit, so a commit that failed or was interrupted is offered again.
        """
        while self._entries and self._entries[0][1]:
            self._point = self._entries.popleft()[0] + 1
        return self._point if self._point != self.committed else None

    @property
    def pending(self) -> int:
        return len(self._entries)
