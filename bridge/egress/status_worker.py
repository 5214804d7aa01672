"""The status worker: the send log and the receipts, joined into ``P.commands.status``.

Owns the Kafka side of delivery status (docs/status.md). One consumer group
(``BRIDGE_STATUS_GROUP_ID``, a member in every egress process) reads ``P.commands.sent`` and
``P.events.receipt``, both keyed by conversation and with the same partition count, with the
range assignor: partition ``n`` of both topics goes to the same member, which is then the only
writer of the status of the commands of those conversations. Each partition number has its own
:class:`~bridge.egress.status_join.StatusJoin`.

State is rebuilt, never stored: on assignment each partition is read again from the start of the
window (``BRIDGE_STATUS_WINDOW``, by timestamp) up to the group's committed offset without
writing anything, then records from the committed offset on are live. Status records of a batch
are acknowledged by Kafka before its offsets are committed (at least once: after a crash a
status record can be written again, with the same id). Records of one command are published in
order, one after the other. The receipt topic itself is never held up: ingress publishes
receipts whatever this worker does.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from bridge.contract.records import Record, Topics
from bridge.contract.status import parse_receipt, parse_send_log, status_record
from bridge.core.backoff import Backoff
from bridge.core.config import Settings
from bridge.core.errors import PublishError
from bridge.egress.status_join import Change, Held, StatusJoin
from bridge.kafka.connect import client_options, start_with_retry
from bridge.kafka.publisher import Publisher
from bridge.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)


class StatusWorker:
    def __init__(self, settings: Settings, metrics: Metrics, publisher: Publisher) -> None:
        self._s = settings.status
        self._kafka = settings.kafka
        self._topics = Topics(settings.kafka.topic_prefix)
        self._m = metrics.status
        self._publisher = publisher
        self._stop = asyncio.Event()
        self._joins: dict[int, StatusJoin] = {}
        self._held = Held(settings.status.max_entries)  # the cap is per process
        self._live_from: dict[TopicPartition, int] = {}
        self._expect: dict[TopicPartition, int] = {}  # the next offset each partition must give
        self._gaps: set[TopicPartition] = set()
        self._logged: set[str] = set()  # kinds of bad record already logged (once each)
        self._positions: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self.assigned = False

    async def run(self) -> None:
        def make() -> AIOKafkaConsumer:
            consumer = AIOKafkaConsumer(
                group_id=self._s.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                partition_assignment_strategy=(RangePartitionAssignor,),
                **client_options(self._kafka),
            )
            consumer.subscribe(
                [self._topics.sent, self._topics.event("receipt")], listener=_Listener(self)
            )
            self._consumer = consumer  # the first assignment comes while it starts
            return consumer

        consumer: AIOKafkaConsumer = await start_with_retry(make, "status", kafka=self._kafka)
        log.info("status.started", group=self._s.group_id)
        try:
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=300, max_records=1000)
                await self._handle(batch)
                await self._commit()
        finally:
            await self._commit()
            await consumer.stop()
            log.info("status.stopped")

    async def stop(self) -> None:
        self._stop.set()

    async def _handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        now = time.time()
        out: dict[bytes, list[tuple[Record, Change]]] = defaultdict(list)
        for tp, records in batch.items():
            join = self._joins.get(tp.partition)
            records = self._in_sequence(tp, records)
            if join is None or not records:
                continue  # revoked meanwhile, or fetched before the replay's seek
            live_from = self._live_from[tp]
            for record in records:
                live = record.offset >= live_from
                for change in self._feed(join, tp.topic, record.value, now, live):
                    if change.live:
                        status = self._status(change, now)
                        out[status.key or b""].append((status, change))
            self._positions[tp] = self._expect[tp] = records[-1].offset + 1
        unmatched = sum(join.expire(now) for join in self._joins.values())
        if unmatched:
            self._m.receipts.labels("unmatched").inc(unmatched)
        await asyncio.gather(*(self._publish_in_order(items) for items in out.values()))
        self._m.entries.set(sum(len(j) for j in self._joins.values()))
        self._m.pending.set(sum(j.pending for j in self._joins.values()))

    def _in_sequence(self, tp: TopicPartition, records: list[Any]) -> list[Any]:
        """The records that continue where this partition's replay or last batch ended.

        Records fetched from the committed offset before :meth:`on_assigned` moved the
        partition back to the window would otherwise be taken live ahead of the replay (seen in
        the SIGKILL scenario: a ``read`` replayed after a live ``delivered`` was never written).
        A gap (a record removed by retention) is accepted the second time it shows.
        """
        expect = self._expect.get(tp)
        if expect is None or not records:
            return []
        records = [r for r in records if r.offset >= expect]
        if records and records[0].offset != expect:
            if tp not in self._gaps and self._consumer is not None:
                self._gaps.add(tp)
                self._consumer.seek(tp, expect)
                return []
            log.warning("status.offset_gap", partition=str(tp), expected=expect)
        self._gaps.discard(tp)
        return records

    def _feed(
        self, join: StatusJoin, topic: str, value: bytes | None, now: float, live: bool
    ) -> list[Change]:
        if topic == self._topics.sent:
            entry = parse_send_log(value)
            if entry is None:
                if live:
                    self._log_once("unreadable_send_log_record")
                return []
            evicted = join.evicted
            changes = join.on_send(entry, now, live)
            if live:
                self._m.evicted.inc(join.evicted - evicted)
            # receipts that came before the send, counted when they were read live
            waited = sum(c.receipt and c.live for c in changes)
            if waited:
                self._m.receipts.labels("matched").inc(waited)
            return changes
        receipt = parse_receipt(value)
        if receipt is None:
            if live:
                self._m.receipts.labels("unusable").inc()
                self._log_once("not_a_cloudevent")
            return []
        outcome, change = join.on_receipt(receipt, now, live)
        if live and outcome != "pending":
            self._m.receipts.labels(outcome).inc()
            if outcome == "unusable":
                self._log_once("no_usable_message_id", event_id=receipt.event_id[:200])
        return [change] if change is not None else []

    def _log_once(self, kind: str, **fields: Any) -> None:
        """The first bad receipt of each kind is logged; the rest only counted (metrics)."""
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning("status.unusable_receipt", kind=kind, **fields)

    def _status(self, change: Change, now: float) -> Record:
        tracked = change.tracked
        delivery = tracked.delivery
        received = delivery.received_at
        if change.reached is not None and change.at is not None and received is not None:
            self._m.delivery.labels(change.reached).observe(max(0.0, change.at - received))
        record = status_record(self._topics, delivery, tracked.channel, tracked.contact, now)
        self._m.records.labels(record.label).inc()
        return record

    async def _publish_in_order(self, items: list[tuple[Record, Change]]) -> None:
        for record, _change in items:
            retry = Backoff(0.2, 5.0)
            while True:
                try:
                    await self._publisher.publish(record)
                    break
                except PublishError as exc:
                    if self._stop.is_set() and retry.failures >= 3:
                        raise
                    log.warning("status.publish_failed", error=str(exc))
                    await asyncio.sleep(retry.next())

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        consumer = self._consumer
        offsets = {
            tp: OffsetAndMetadata(pos, "")
            for tp, pos in self._positions.items()
            if only is None or tp in only
        }
        if consumer is None or not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:  # a later commit covers it; the records are read again
            log.warning("status.commit_failed", error=str(exc))
            return
        for tp in offsets:
            if self._positions.get(tp) == offsets[tp].offset:
                del self._positions[tp]

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._commit(only=revoked)
        for tp in revoked:
            self._live_from.pop(tp, None)
            self._expect.pop(tp, None)
            self._positions.pop(tp, None)
        kept = {tp.partition for tp in self._live_from}
        for number in list(self._joins):
            if number not in kept:
                self._joins.pop(number).drop()

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Rebuild the joins of new partitions: replay the window up to the committed offset."""
        consumer = self._consumer
        if consumer is None:
            return
        sent = {tp.partition for tp in assigned if tp.topic == self._topics.sent}
        receipts = {tp.partition for tp in assigned if tp.topic != self._topics.sent}
        if sent != receipts:
            log.error(
                "status.not_copartitioned",
                hint="P.commands.sent and P.events.receipt need the same partition count",
                sent=sorted(sent),
                receipts=sorted(receipts),
            )
        horizon_ms = int((time.time() - self._s.window) * 1000)
        consumer.pause(*assigned)  # nothing is taken until every partition is placed
        for tp in assigned:
            if tp.partition not in self._joins:
                self._joins[tp.partition] = StatusJoin(
                    self._s.window, self._s.max_entries, self._s.grace, self._held
                )
            committed = await consumer.committed(tp)
            if committed is None:  # a new group: everything is live, from the beginning
                start = committed = (await consumer.beginning_offsets([tp]))[tp]
            else:
                found = await consumer.offsets_for_times({tp: horizon_ms})
                start = min(found[tp].offset if found.get(tp) is not None else committed, committed)
            consumer.seek(tp, start)
            self._expect[tp] = start
            self._live_from[tp] = committed
        consumer.resume(*assigned)
        self.assigned = True
        log.info("status.assigned", partitions=sorted(f"{t.topic}/{t.partition}" for t in assigned))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: StatusWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._worker.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._worker.on_assigned(set(assigned))
