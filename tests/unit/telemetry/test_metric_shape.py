"""Metric labels and buckets that stay truthful once scraped (issue 16, items 1, 4 and 6).

- No label of ours may be one of the target labels the Prometheus Operator adds: Prometheus
  would rename ours to ``exported_<name>`` and every query by it would collapse.
- Histogram buckets sit around the timeouts they measure (DESIGN.md's durability rule: the
  answer waits for Kafka, then the spool; commands retry up to their deadline), so quantiles
  near those timeouts are not interpolated across one wide bucket.
- Circuit transitions are counted, so flaps shorter than a scrape still show.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from bridge.core.config import Settings
from bridge.egress.consumer import CommandConsumer
from bridge.egress.policy import CircuitState
from bridge.telemetry.metrics import Metrics
from tests.fakes import InMemoryPublisher

# What the Prometheus Operator's ServiceMonitor puts on every target (and Prometheus itself).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}


def buckets(metrics: Metrics, family: str) -> list[float]:
    histogram = {
        "spotler_bridge_publish_duration_seconds": metrics.publish_duration,
        "spotler_bridge_webhook_request_duration_seconds": metrics.webhook_duration,
        "spotler_bridge_command_duration_seconds": metrics.command_duration,
    }[family]
    histogram.labels("x")  # a labelled histogram exports its buckets once a child exists
    for metric in metrics.registry.collect():
        if metric.name == family:
            return sorted(
                float(s.labels["le"])
                for s in metric.samples
                if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"
            )
    raise AssertionError(f"{family} not exported")


def test_no_label_collides_with_operator_target_labels() -> None:
    metrics = Metrics(CollectorRegistry())
    declared = {
        (name, label)
        for name, metric in vars(metrics).items()
        if isinstance(metric, MetricWrapperBase)
        for label in metric._labelnames  # declared labels, children or not
    }
    assert ("api_requests", "api_endpoint") in declared
    clashes = {pair for pair in declared if pair[1] in TARGET_LABELS}
    assert not clashes, clashes


def test_api_series_are_by_api_endpoint() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.child(metrics.api_requests, "send_message", "201", "").inc()
    value = metrics.registry.get_sample_value(
        "spotler_bridge_api_requests_total",
        {"api_endpoint": "send_message", "status": "201", "code": ""},
    )
    assert value == 1


def test_ack_buckets_resolve_the_publish_timeout_and_reach_the_delivery_bound() -> None:
    settings = Settings.from_env({})
    publish_timeout = settings.ingress.publish_timeout  # 5 s (README)
    bound = settings.kafka.delivery_timeout  # 60 s (README)
    for family in ("spotler_bridge_publish_duration_seconds",
                   "spotler_bridge_webhook_request_duration_seconds"):  # fmt: skip
        edges = buckets(Metrics(CollectorRegistry()), family)
        assert publish_timeout in edges
        # no bucket wider than 1 s on either side of the timeout (issue 16: 5 to 10 s made 9.9)
        below = max(e for e in edges if e < publish_timeout)
        above = min(e for e in edges if e > publish_timeout)
        assert publish_timeout - below <= 1.0
        assert above - publish_timeout <= 1.0
        assert max(edges) >= bound


def test_command_buckets_reach_the_retry_deadline() -> None:
    deadline = Settings.from_env({}).egress.retry_deadline  # 300 s (DESIGN: bounded in time)
    edges = buckets(Metrics(CollectorRegistry()), "spotler_bridge_command_duration_seconds")
    assert deadline in edges
    assert sum(1 for e in edges if 30 < e <= deadline) >= 4  # not one bucket from 30 s to 300 s


def test_circuit_transitions_are_counted_by_state_entered() -> None:
    metrics = Metrics(CollectorRegistry())

    def count(state: str) -> float | None:
        return metrics.registry.get_sample_value(
            "spotler_bridge_circuit_transitions_total", {"to": state}
        )

    assert [count(s) for s in ("closed", "half_open", "open")] == [0, 0, 0]  # exported at 0
    settings = Settings.from_env({"BRIDGE_SPOTLER_API_KEY": "k"})
    consumer = CommandConsumer(settings, metrics, InMemoryPublisher(), api=None)  # type: ignore[arg-type]
    for state in (CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.OPEN,
                  CircuitState.HALF_OPEN, CircuitState.CLOSED):  # fmt: skip
        consumer._on_circuit(state)
    assert [count(s) for s in ("closed", "half_open", "open")] == [1, 2, 2]
