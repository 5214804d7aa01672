"""Receipts name their command: ingress's copy of the send log, message id to command id.

Owns one job (docs/status.md): every ingress process reads the whole send log
(``P.commands.sent``, all partitions, no consumer group) from the start of the window
(``BRIDGE_STATUS_WINDOW``, by timestamp) and keeps ``messageId -> commandId`` for sends in the
window, at most ``BRIDGE_STATUS_MAX_ENTRIES`` (the oldest go first). A receipt whose message id
is known when it arrives is published with its command named (the CloudEvents extension
attribute ``commandid`` and ``data.commandId``); one that is not known yet is published
unchanged at once: naming never waits and never fails a delivery. (The status topic does not
depend on this: the status worker matches a late send within the grace period.)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import OrderedDict

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from bridge.contract.records import Record, Topics
from bridge.contract.status import parse_receipt, parse_send_log, with_command
from bridge.core.config import Settings
from bridge.kafka.connect import client_options
from bridge.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)


class ReceiptNames:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._s = settings.status
        self._kafka = settings.kafka
        self._topic = Topics(settings.kafka.topic_prefix).sent
        self._m = metrics.status
        self._ids: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def name(self, record: Record) -> Record:
        """``record`` with its command named when it is a receipt for a known send."""
        if record.label != "receipt":
            return record
        receipt = parse_receipt(record.value)
        found = self._ids.get(receipt.message_id) if receipt and receipt.message_id else None
        if found is None:
            self._m.named.labels("unnamed").inc()
            return record
        self._m.named.labels("named").inc()
        return dataclasses.replace(record, value=with_command(record.value, found[1]))

    def learn(self, value: bytes | None, now: float) -> None:
        """Take one send-log record; forget what is out of the window or over the cap."""
        entry = parse_send_log(value)
        if entry is not None and entry.state == "sent" and entry.message_id is not None:
            self._ids[entry.message_id] = (entry.at, entry.command_id)
            self._ids.move_to_end(entry.message_id)
        horizon = now - self._s.window
        while self._ids and (
            len(self._ids) > self._s.max_entries or next(iter(self._ids.values()))[0] < horizon
        ):
            self._ids.popitem(last=False)

    async def run(self) -> None:
        """Follow the send log for the process's lifetime; Kafka errors only delay it."""
        while True:
            consumer = AIOKafkaConsumer(
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="latest",
                **client_options(self._kafka),
            )
            try:
                await consumer.start()
                await self._follow(consumer)
            except (KafkaError, OSError) as exc:
                log.warning("receipt_names.kafka_error", error=str(exc))
            finally:
                with contextlib.suppress(KafkaError, OSError):
                    await consumer.stop()
            await asyncio.sleep(5.0)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        # No group: the consumer takes every partition of the topic (and new ones) itself, at
        # the end; each new partition is then moved back to the window's first record.
        consumer.subscribe([self._topic])
        placed: set[TopicPartition] = set()
        while True:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            new = consumer.assignment() - placed
            if new:
                await self._from_window(consumer, new)
                placed |= new
            now = time.time()
            for tp, records in batch.items():
                if tp in new:
                    continue  # read from before the seek: read again from the window
                for record in records:
                    self.learn(record.value, now)

    async def _from_window(self, consumer: AIOKafkaConsumer, parts: set[TopicPartition]) -> None:
        """Start each partition at the window's first record (the end when none is as recent)."""
        horizon_ms = int((time.time() - self._s.window) * 1000)
        found = await consumer.offsets_for_times(dict.fromkeys(parts, horizon_ms))
        ends = await consumer.end_offsets(list(parts))
        for tp in parts:
            start = found.get(tp)
            consumer.seek(tp, start.offset if start is not None else ends[tp])
        log.info("receipt_names.following", partitions=len(parts))
