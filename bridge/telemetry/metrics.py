"""Every Prometheus metric the bridge exports, defined in one place on an injected registry.

Names are ``spotler_bridge_*``; counters end in ``_total``, durations are ``_seconds``
histograms. Labels are low-cardinality only (event type, outcome, api_endpoint, status, code),
never ids or JIDs, and never a target label the Prometheus Operator adds (``endpoint``,
``instance``, ``job``, ``namespace``, ``pod``, ``service``, ``container``): Prometheus would rename
ours to ``exported_*`` and queries by it would collapse. Histogram buckets are placed around the
timeouts and deadlines each one measures (see the bucket constants). The dashboard and alerts
in ``deploy/`` use exactly these names, and a test
checks that each name they use is exported.
"""

from __future__ import annotations

from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bridge.contract.records import EVENT_TYPES
from bridge.telemetry.status_metrics import StatusMetrics

M = TypeVar("M", Counter, Gauge, Histogram)

#: Kafka acknowledgement: fine below a second, then around the webhook's publish timeout (5 s by
#: default) and up to the producer's delivery bound (BRIDGE_KAFKA_DELIVERY_TIMEOUT, 60 s).
ACK_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.0, 3.0, 4.0, 5.0, 5.5, 6.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0,
)  # fmt: skip
#: A command from Kafka to its result: retried for up to BRIDGE_EGRESS_RETRY_DEADLINE (300 s).
COMMAND_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
    60.0, 90.0, 120.0, 180.0, 240.0, 300.0, 360.0,
)  # fmt: skip
#: One API call: bounded by the client's request timeout.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
)


# API call labels (issue 9 item 11): every value comes from these sets, anything else is "other".
API_ENDPOINTS = ("send_message", "update_conversation")
#: Why an entry under the spool root is not adopted (bridge/ingress/adoption.py).
SPOOL_SET_ASIDE_REASONS = (
    "symlink",
    "not_a_directory",
    "foreign",
    "unreadable",
    "unlockable",
    "foreign_files_inside",
)
#: The platform lifecycle's calls (``bridge channels``/``webhooks``/``doctor``; ingress's channel
#: list): series of their own, zeroed like the others.
PLATFORM_ENDPOINTS = (
    "read_channels",
    "read_current_key",
    "list_webhooks",
    "create_webhook",
    "update_webhook",
    "delete_webhook",
)
API_STATUSES = frozenset(
    {0, 200, 201, 204, 301, 302, 303, 307, 308, 400, 401, 403, 404, 408, 409, 413, 422, 429}
    | {500, 502, 503, 504}
)
#: The reference's documented error codes ("Errors") with the status each usually comes with.
API_CODE_STATUS = {
    1001: 401, 1002: 403, 1003: 503, 1004: 500, 1005: 400, 1006: 400, 1007: 400, 1008: 400,
    1009: 404, 1010: 403, 1011: 400, 1012: 502, 1013: 400, 1014: 409, 1015: 400,
}  # fmt: skip


def api_status_label(status: int) -> str:
    """The ``status`` label of an API call: a known HTTP status, else ``other``."""
    return str(status) if status in API_STATUSES else "other"


def api_code_label(code: str | int | None) -> str:
    """The ``code`` label: a documented platform code, ``""`` for none, else ``other``."""
    if code is None or code == "":
        return ""
    try:
        number = int(code)
    except ValueError:
        return "other"
    return str(number) if number in API_CODE_STATUS else "other"


class Metrics:
    """The metric objects, registered on ``registry`` (a fresh one per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        p = "spotler_bridge_"

        # ingress
        self.webhooks = Counter(
            p + "webhooks",
            "Webhook deliveries by event type and outcome "
            "(published, spooled, duplicate, deadletter, rejected, unavailable).",
            ["event", "outcome"],
            registry=r,
        )
        self.webhook_rejections = Counter(
            p + "webhook_rejections",
            "Webhook requests refused before reading the event, by reason "
            "(unauthorized, too_large, timeout, busy).",
            ["reason"],
            registry=r,
        )
        self.webhook_duration = Histogram(
            p + "webhook_request_duration_seconds",
            "Time from receiving a webhook request to answering it, by HTTP status.",
            ["status"],
            buckets=ACK_BUCKETS,
            registry=r,
        )
        self.publish_duration = Histogram(
            p + "publish_duration_seconds",
            "Time for Kafka to acknowledge a record (acks=all), by outcome (ok, error, timeout).",
            ["outcome"],
            buckets=ACK_BUCKETS,
            registry=r,
        )
        self.producer_recreations = Counter(
            p + "kafka_producer_recreations",
            "Kafka producer sessions abandoned and replaced by a new producer (new producer id) "
            "after a failed or overdue delivery.",
            registry=r,
        )
        self.kafka_batches = Counter(
            p + "kafka_batches",
            "Record batches handed to the Kafka producer (one per partition per group commit); "
            "records published divided by this is the records per batch.",
            registry=r,
        )
        self.channel_list_refreshes = Counter(
            p + "channel_list_refreshes",
            "Refreshes of the channel list from GET /channels, by outcome (ok, unauthorized, "
            "timeout, unreachable, server_error, error); a failure keeps the last list.",
            ["outcome"],
            registry=r,
        )
        self.channel_list_age = Gauge(
            p + "channel_list_age_seconds",
            "Seconds since the channel list was last loaded from GET /channels (since start-up "
            "before the first success), computed at scrape time; 0 with a fixed list.",
            registry=r,
        )
        self.channel_list_interval = Gauge(
            p + "channel_list_refresh_interval_seconds",
            "Seconds between channel list refreshes (BRIDGE_CHANNELS_REFRESH_SECONDS); "
            "0 when the list is fixed or not used.",
            registry=r,
        )
        self.dedup_entries = Gauge(
            p + "dedup_entries", "Event ids remembered for duplicate detection.", registry=r
        )

        # spool
        self.spool_records = Gauge(
            p + "spool_records", "Records in the spool waiting for Kafka.", registry=r
        )
        self.spool_bytes = Gauge(p + "spool_bytes", "Bytes on disk in the spool.", registry=r)
        self.spool_oldest_age = Gauge(
            p + "spool_oldest_age_seconds",
            "Age of the oldest record still in the spool (0 when empty).",
            registry=r,
        )
        self.spool_spooled = Counter(
            p + "spool_spooled", "Records written to the spool.", registry=r
        )
        self.spool_drained = Counter(
            p + "spool_drained", "Spooled records acknowledged by Kafka.", registry=r
        )
        self.spool_corruptions = Counter(
            p + "spool_corruptions",
            "Spool frames lost to damage: torn tails cut at start-up, damaged frames skipped by "
            "resync, and frames that pass their checksum but do not decode.",
            registry=r,
        )
        self.spool_disk_errors = Counter(
            p + "spool_disk_errors",
            "Spool disk operations that failed (ENOSPC, EIO), by operation "
            "(write, fsync, segment, read, mark, delete).",
            ["op"],
            registry=r,
        )
        self.spool_adopted = Counter(
            p + "spool_adopted",
            "Spools of processes that are gone, drained to Kafka and removed by this one.",
            registry=r,
        )
        self.spool_adopted_records = Counter(
            p + "spool_adopted_records",
            "Records found in adopted spools (each drained to Kafka before the spool is removed).",
            registry=r,
        )
        self.spool_set_aside = Counter(
            p + "spool_set_aside",
            "Entries under the spool root that are not a spool to adopt, each counted once by "
            "reason (symlink, not_a_directory, foreign, unreadable, unlockable, "
            "foreign_files_inside); never deleted.",
            ["reason"],
            registry=r,
        )
        self.spool_orphan_age = Gauge(
            p + "spool_orphan_age_seconds",
            "Seconds since the oldest spool found without an owner was found, while it is not "
            "drained yet (0 when none).",
            registry=r,
        )
        self.spool_unwritable = Gauge(
            p + "spool_unwritable",
            "1 while the spool refuses records (disk failing or size bound reached), else 0.",
            registry=r,
        )
        self.spool_stalled = Gauge(
            p + "spool_stalled",
            "1 while the spool holds records and has not drained for BRIDGE_SPOOL_STALL_SECONDS "
            "although Kafka is connected (ingress is then not ready), else 0.",
            registry=r,
        )
        self.spool_drain_attempts = Counter(
            p + "spool_drain_attempts",
            "Attempts to publish a chunk of spooled records, by outcome (ok, failed); one per "
            "chunk, however many records it holds.",
            ["outcome"],
            registry=r,
        )
        self.records_set_aside = Counter(
            p + "records_set_aside",
            "Records Kafka refused for good, by what took their place (deadletter: a small dead "
            "letter; minimal_result: a command result without the platform's response; dropped: "
            "the replacement was refused too).",
            ["outcome"],
            registry=r,
        )

        # egress
        self.commands = Counter(
            p + "commands",
            "Commands by type and outcome (succeeded, failed, deadletter, expired, duplicate).",
            ["command", "outcome"],
            registry=r,
        )
        self.command_duration = Histogram(
            p + "command_duration_seconds",
            "Time from taking a command off Kafka to publishing its result.",
            ["command"],
            buckets=COMMAND_BUCKETS,
            registry=r,
        )
        self.api_requests = Counter(
            p + "api_requests",
            "Calls to the Spotler API by endpoint, HTTP status (0: no response) and platform code.",
            ["api_endpoint", "status", "code"],
            registry=r,
        )
        self.api_duration = Histogram(
            p + "api_request_duration_seconds",
            "Spotler API call latency by endpoint.",
            ["api_endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            p + "command_retries", "Retried API calls by command type.", ["command"], registry=r
        )
        self.retry_after_capped = Counter(
            p + "retry_after_capped",
            "Retry-After values from the platform longer than BRIDGE_RETRY_AFTER_MAX, honoured "
            "only up to it.",
            registry=r,
        )
        self.circuit_state = Gauge(
            p + "circuit_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            registry=r,
        )
        self.circuit_transitions = Counter(
            p + "circuit_transitions",
            "Circuit breaker state changes, by the state entered (closed, half_open, open): "
            "flaps shorter than a scrape still show.",
            ["to"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            p + "consumer_lag",
            "Command records not yet committed: the partition's high-water mark minus the "
            "committed offset, per topic and partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.commands_uncommitted = Gauge(
            p + "commands_uncommitted",
            "Command records taken off a partition and not yet committed: the oldest unfinished "
            "one and every record behind it, per topic and partition. The partition is paused "
            "while this is at the window (10000): memory stays bounded behind a stuck command.",
            ["topic", "partition"],
            registry=r,
        )
        self.commands_in_flight = Gauge(
            p + "commands_in_flight", "Commands taken off Kafka and not yet finished.", registry=r
        )
        self.circuit_not_closed = Gauge(
            p + "circuit_not_closed_seconds",
            "Seconds since the circuit breaker last left the closed state (0 while closed).",
            registry=r,
        )
        self.results_unpublished = Gauge(
            p + "results_unpublished_seconds",
            "Seconds the oldest command result has been failing to reach Kafka (0 when none).",
            registry=r,
        )
        self.status = StatusMetrics(r)  # delivery status (docs/status.md)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._zero_known_series()

    def child(self, metric: M, *labels: str) -> M:
        """``metric.labels(*labels)``, looked up once: labels() validates and locks each call,
        a measurable cost at thousands of webhooks a second."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def _zero_known_series(self) -> None:
        """Export the known label sets at 0 from the start, so rate() and increase() see the
        first event (a series that appears with value 1 is invisible to them)."""
        for event in (*EVENT_TYPES, "unknown", "deadletter"):
            for outcome in ("published", "spooled", "duplicate", "unavailable"):
                self.webhooks.labels(event, outcome)
        for event in (*EVENT_TYPES, "unknown", "deadletter"):
            self.webhooks.labels(event, "deadletter")
        for op in ("write", "fsync", "segment", "read", "mark", "delete"):
            self.spool_disk_errors.labels(op)
        for outcome in ("ok", "failed"):
            self.spool_drain_attempts.labels(outcome)
        for reason in SPOOL_SET_ASIDE_REASONS:
            self.spool_set_aside.labels(reason)
        for outcome in ("deadletter", "minimal_result", "dropped"):
            self.records_set_aside.labels(outcome)
        for outcome in ("ok", "unauthorized", "timeout", "unreachable", "server_error", "error"):
            self.channel_list_refreshes.labels(outcome)
        self.webhooks.labels("none", "rejected")
        for reason in ("unauthorized", "too_large", "timeout", "busy"):
            self.webhook_rejections.labels(reason)
        for command in ("send-message", "update-conversation"):
            for outcome in ("succeeded", "failed", "deadletter", "expired", "duplicate"):
                self.commands.labels(command, outcome)
            self.retries.labels(command)
        for endpoint in API_ENDPOINTS + PLATFORM_ENDPOINTS:
            self.api_duration.labels(endpoint)
            combos = {(s, "") for s in API_STATUSES}
            combos |= {(status, str(code)) for code, status in API_CODE_STATUS.items()}
            for status, code in combos:
                self.api_requests.labels(endpoint, str(status), code)
            self.api_requests.labels(endpoint, "other", "")
            self.api_requests.labels(endpoint, "other", "other")
        for state in ("closed", "half_open", "open"):
            self.circuit_transitions.labels(state)
