"""Group commit for the aiokafka publisher: one :class:`Lane` per partition collects the records
of concurrent callers into batches, in the order they came.

The lane's task that hands the batches to aiokafka (``send_batch``) and fails what is queued
behind a batch that was not handed over is :class:`bridge.kafka.producer.KafkaPublisher`'s.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from bridge.kafka.sessions import settle

#: Records appended to one batch builder, and the futures of their callers, in order.
Batch = tuple[Any, list["asyncio.Future[None]"]]


class Lane:
    """Group commit for one partition: the records of concurrent callers go into one batch.

    Records are appended to an open batch builder as they come; one task per lane hands the
    builders to the producer in order (``send_batch`` waits while the partition's previous
    batch is not yet on its way), so every record that arrives while a batch is queued or in
    flight joins the next one. One future per batch from aiokafka instead of one per record:
    that is where the per-record cost of ``send`` goes (issue 13). Order within the partition
    is the order of :meth:`append`; each batch keeps the size limit of ``max_batch_size``.
    """

    __slots__ = ("builder", "full", "partition", "task", "topic", "waiters")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.builder: Any = None
        self.waiters: list[asyncio.Future[None]] = []
        self.full: deque[Batch] = deque()
        self.task: asyncio.Task[None] | None = None

    def append(
        self,
        producer: Any,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]],
        waiter: asyncio.Future[None],
    ) -> None:
        builder = self.builder
        if builder is None:
            builder = self.builder = producer.create_batch()
        if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
            self.full.append((builder, self.waiters))  # full, and closed by aiokafka
            builder = self.builder = producer.create_batch()
            self.waiters = []
            builder.append(timestamp=None, key=key, value=value, headers=headers)  # fits: first
        self.waiters.append(waiter)

    def take(self) -> Batch | None:
        if self.full:
            return self.full.popleft()
        if self.builder is None:
            return None
        batch = self.builder, self.waiters
        self.builder, self.waiters = None, []
        return batch

    def fail(self, exc: BaseException) -> None:
        while (batch := self.take()) is not None:
            settle(batch[1], exc)
