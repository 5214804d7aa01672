"""Kafka publishing with librdkafka (confluent-kafka): the optional publisher, off by default.

``BRIDGE_KAFKA_CLIENT=librdkafka`` selects it (install the ``rdkafka`` extra); aiokafka
(:mod:`bridge.kafka.producer`) stays the default. The contract is the same as
:class:`~bridge.kafka.producer.KafkaPublisher`'s: ``acks=all`` and the idempotent producer, keys
partitioned with murmur2 as the Java client and aiokafka do (so a conversation keeps its
partition whichever client publishes), ``publish`` returns once Kafka acknowledged, and every
librdkafka error is translated here into :class:`~bridge.core.errors.PublishError` (or
:class:`~bridge.core.errors.RecordRejected` when Kafka refuses the record itself).

librdkafka batches, retries and keeps its idempotent session itself (it bumps the epoch after a
failed batch, which aiokafka does not), in its own C threads, and fails a record after
``message.timeout.ms`` (``BRIDGE_KAFKA_DELIVERY_TIMEOUT``, the delivery bound). A *fatal* error
makes a producer unusable: the session then ends, what it held fails, and a new producer starts,
as with aiokafka. So does a record that fails for a reason other than Kafka refusing it (timed
out, librdkafka's queue full): its caller sends it again, and the records published after it
must not land before it (issue 26), so they fail with it and are sent again in order.
Delivery reports are served by one poll thread and handed to the event loop once per poll, not
once per record.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, Producer

from bridge.contract.records import Record
from bridge.core.backoff import Backoff
from bridge.core.config import KafkaSettings
from bridge.core.errors import PublishError, PublishTimeout, RecordRejected
from bridge.kafka.connect import RECONNECT_MAX, KafkaRefused, refusal
from bridge.kafka.sessions import Deadlines, SessionKeeper
from bridge.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)

#: Kafka refused the record itself: sending it again cannot succeed (as ``producer.REFUSED``).
REFUSED_CODES = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        2,  # CORRUPT_MESSAGE (not named in confluent-kafka)
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
    }
)


def translate(err: KafkaError) -> PublishError:
    """The bridge's error for a librdkafka error."""
    text = f"{err.name()}: {err.str()}"
    if err.code() in REFUSED_CODES:
        return RecordRejected(text)
    return PublishError(text)


def settings_for(kafka: KafkaSettings, max_request_size: int) -> dict[str, Any]:
    """librdkafka configuration with the same guarantees as the aiokafka producer's."""
    conf: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "client.id": "spotler-bridge",
        "acks": "all",
        "enable.idempotence": True,
        "partitioner": "murmur2_random",  # the Java client's (and aiokafka's) partitions
        "linger.ms": kafka.linger_ms,
        "message.timeout.ms": int(kafka.delivery_timeout * 1000),
        "message.max.bytes": max_request_size,
        "security.protocol": kafka.security_protocol,
    }
    if kafka.security_protocol.startswith("SASL_"):
        conf["sasl.mechanisms"] = kafka.sasl_mechanism
        conf["sasl.username"] = kafka.sasl_username
        conf["sasl.password"] = kafka.sasl_password.reveal() if kafka.sasl_password else None
    if kafka.security_protocol in ("SSL", "SASL_SSL") and kafka.ssl_cafile:
        conf["ssl.ca.location"] = kafka.ssl_cafile
    return conf


class _Session:
    """One librdkafka producer, the thread that serves its delivery reports, and its end."""

    def __init__(self, conf: dict[str, Any], number: int, loop: asyncio.AbstractEventLoop) -> None:
        self.number = number
        self.loop = loop
        self.ended: str | None = None
        self.fatal: str | None = None
        self.failed = False  # a record failed in delivery (written by the poll thread)
        self.broken = asyncio.Event()  # a fatal error, or the poll thread ended
        self.stop = threading.Event()
        self.reports: list[tuple[asyncio.Future[None], KafkaError | None]] = []
        self.producer = Producer({**conf, "error_cb": self._on_error})
        self.thread = threading.Thread(target=self._poll, name="kafka-poll", daemon=True)

    def _on_error(self, err: KafkaError) -> None:
        # librdkafka's errors are mostly transient (a broker away) and it retries them itself;
        # a fatal one (e.g. the idempotent session cannot go on) ends this producer.
        if err.fatal():
            self.fatal = f"{err.name()}: {err.str()}"
            self.loop.call_soon_threadsafe(self.broken.set)

    def delivered(self, future: asyncio.Future[None], err: KafkaError | None, _msg: Any) -> None:
        # Runs in the poll thread, inside poll(): collected, handed over after poll returns.
        self.reports.append((future, err))
        if err is not None and err.code() not in REFUSED_CODES and not self.failed:
            self.end(f"delivery failed: {err.name()}: {err.str()}")
            self.failed = True

    def end(self, reason: str) -> None:
        """A record failed, and its caller will send it again: no record published after it may
        land before it (issue 26). ``publish`` takes no more records; the poll thread fails what
        the producer still holds after a failed delivery (later records), or lets it finish
        when the failed record never got in (the queue was full: it holds earlier records
        only). Then the session ends and a new one starts."""
        self.fatal = self.fatal or reason

    def _poll(self) -> None:
        try:
            while not self.stop.is_set():
                self.producer.poll(0.1)
                if self.failed:
                    self.producer.purge()  # what it still holds fails, definitely
                    self.producer.poll(0)  # serves the reports of purged records
                if self.fatal is not None and (self.failed or len(self.producer) == 0):
                    break
                self.hand_over()
        finally:
            self.hand_over()
            self.loop.call_soon_threadsafe(self.broken.set)

    def hand_over(self) -> None:
        if self.reports:
            batch, self.reports = self.reports, []
            self.loop.call_soon_threadsafe(_resolve, batch)


def _resolve(batch: list[tuple[asyncio.Future[None], KafkaError | None]]) -> None:
    for future, err in batch:
        if not future.done():  # a caller that stopped waiting cancelled its own future
            if err is None:
                future.set_result(None)
            else:
                future.set_exception(translate(err))


class RdKafkaPublisher(SessionKeeper[_Session]):
    """The process's librdkafka producer: :meth:`run_connect` keeps a working session,
    :meth:`close` flushes and stops it. A :class:`~bridge.kafka.publisher.SessionPublisher`."""

    def __init__(
        self, kafka: KafkaSettings, metrics: Metrics, *, max_request_size: int = 4 * 1024**2
    ) -> None:
        super().__init__()
        self._kafka = kafka
        self._metrics = metrics
        self._conf = settings_for(kafka, max_request_size)
        self._deadlines = Deadlines()

    async def _start(self) -> _Session:
        """A producer that reached the brokers (metadata answered), retried with backoff; a
        refusal the brokers will repeat forever raises :class:`KafkaRefused`."""
        loop = asyncio.get_running_loop()
        retry = Backoff(0.2, RECONNECT_MAX)
        while True:
            session = _Session(self._conf, self._sessions + 1, loop)
            try:
                await asyncio.to_thread(session.producer.list_topics, timeout=5)
            except KafkaException as exc:
                problem = await refusal(self._kafka)
                if problem is not None:
                    log.error("kafka.refused", error=problem)
                    raise KafkaRefused([problem]) from None
                delay = retry.next()
                log.warning("kafka.connect_failed", error=str(exc), retry_in=round(delay, 1))
                await asyncio.sleep(delay)
                continue
            self._sessions += 1
            session.thread.start()
            return session

    async def run_connect(self) -> None:
        """Connect, then keep a working session until cancelled (see the module docstring)."""
        pause = Backoff(0.2, RECONNECT_MAX)
        while True:
            session = await self._start()
            self._announce(session)
            bootstrap = self._kafka.bootstrap_servers
            log.info("kafka.connected", bootstrap=bootstrap, client="librdkafka")
            await session.broken.wait()
            reason = session.fatal or "the poll thread stopped"
            session.ended = reason
            self._session = None
            self._metrics.producer_recreations.inc()
            log.warning("kafka.producer_recreated", reason=reason)
            await self._stop(session, flush_timeout=0)
            if (delay := pause.next()) and pause.failures > 1:
                await asyncio.sleep(delay)

    @staticmethod
    async def _stop(session: _Session, flush_timeout: float) -> None:
        """Flush up to ``flush_timeout`` seconds, fail what is left, resolve every caller."""
        session.stop.set()
        await asyncio.to_thread(session.thread.join)
        producer = session.producer
        if flush_timeout > 0:
            await asyncio.to_thread(producer.flush, flush_timeout)
        producer.purge()
        await asyncio.to_thread(producer.flush, 0)  # serves the reports of purged records
        session.hand_over()

    async def publish(self, record: Record, *, timeout: float | None = None) -> None:
        """Send one record and wait for Kafka's answer (as ``KafkaPublisher.publish``)."""
        session = self._session
        if session is None or session.ended is not None or session.fatal is not None:
            raise PublishError("no Kafka producer session (connecting)")
        started = time.perf_counter()
        outcome = "error"
        future: asyncio.Future[None] = session.loop.create_future()
        try:
            try:
                session.producer.produce(
                    record.topic,
                    record.value,
                    record.key,
                    headers=list(record.headers),
                    on_delivery=functools.partial(session.delivered, future),
                )
            except BufferError as exc:  # later records must not go before this one
                session.end(f"librdkafka queue full: {exc}")
                raise PublishError(f"librdkafka queue full: {exc}") from exc
            except KafkaException as exc:
                raise translate(exc.args[0]) from exc
            if timeout is not None:
                self._deadlines.add(future, timeout)
            await future
            outcome = "ok"
        except TimeoutError as exc:
            outcome = "timeout"
            raise PublishTimeout(f"no acknowledgement within {timeout}s") from exc
        finally:
            self._metrics.child(self._metrics.publish_duration, outcome).observe(
                time.perf_counter() - started
            )

    async def close(self, flush_timeout: float = 10.0) -> None:
        """Flush what is pending (at most ``flush_timeout`` seconds) and stop; what could not
        be flushed fails, and the spool still holds its copy."""
        session, self._session = self._session, None
        self._connected = False
        if session is not None:
            session.ended = "closed"
            await self._stop(session, flush_timeout)
            log.info("kafka.producer_closed")
