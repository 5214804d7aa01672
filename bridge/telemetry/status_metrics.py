"""Delivery status metrics (docs/status.md): time to sent/delivered/read, and the receipt join.

Defined on the registry of :class:`bridge.telemetry.metrics.Metrics` (one per process), every
labelled series zeroed at start so the dashboard's rates have a baseline.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: From the command on Kafka to sent (seconds), to delivered and read (minutes to days).
DELIVERY_BUCKETS = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
    4 * 3600.0, 12 * 3600.0, 86400.0, 3 * 86400.0, 7 * 86400.0,
)  # fmt: skip
DELIVERY_STATES = ("sent", "delivered", "read", "failed")
#: matched: the receipt's send is known; unmatched: no send within the grace period (a message
#: not sent through the bridge, or older than the window); unusable: no message id, or one that
#: cannot be one (not a string, too long, control characters); duplicate: seen already.
RECEIPT_OUTCOMES = ("matched", "unmatched", "unusable", "duplicate")


class StatusMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        p, r = "spotler_bridge_", registry
        self.delivery = Histogram(
            p + "delivery_seconds",
            "Seconds from a send-message command on Kafka to its first state (sent, delivered, "
            "read, failed), measured by the status worker.",
            ["state"],
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.receipts = Counter(
            p + "status_receipts_total",
            "Receipts seen by the status worker, by outcome of the join with the send log.",
            ["outcome"],
            registry=r,
        )
        self.records = Counter(
            p + "status_records_total",
            "Records written to P.commands.status, by the state they carry.",
            ["state"],
            registry=r,
        )
        self.entries = Gauge(
            p + "status_entries",
            "Sends held by the status worker for matching receipts (bounded by "
            "BRIDGE_STATUS_MAX_ENTRIES).",
            registry=r,
        )
        self.pending = Gauge(
            p + "status_pending_receipts",
            "Receipts waiting (up to BRIDGE_STATUS_GRACE) for their send to become known.",
            registry=r,
        )
        self.evicted = Counter(
            p + "status_evicted_total",
            "Sends forgotten before their window ended because the entry cap was reached.",
            registry=r,
        )
        self.named = Counter(
            p + "receipts_named_total",
            "Receipts ingress published, by whether they name their command (named) or not.",
            ["outcome"],
            registry=r,
        )
        for state in DELIVERY_STATES:
            self.delivery.labels(state)
            self.records.labels(state)
        for outcome in RECEIPT_OUTCOMES:
            self.receipts.labels(outcome)
        for outcome in ("named", "unnamed"):
            self.named.labels(outcome)
