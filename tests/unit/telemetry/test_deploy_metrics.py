"""The dashboard and the alert rules query only metrics that the bridge really exports.

Every ``spotler_bridge_*`` name in ``deploy/grafana/spotler-bridge.json``,
``deploy/prometheus/alerts.yaml`` and the chart's PrometheusRule source must be a series name that
``bridge.telemetry.metrics.Metrics`` produces: a gauge by its name, a counter with
``_total``, a histogram with ``_bucket``, ``_sum`` or ``_count``. The exported families are read
from the Prometheus text exposition (``# TYPE`` lines), exactly as a scrape sees them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from bridge.telemetry.metrics import Metrics

ROOT = Path(__file__).resolve().parents[3]
SOURCES = (
    ROOT / "deploy" / "grafana" / "spotler-bridge.json",
    ROOT / "deploy" / "prometheus" / "alerts.yaml",
    ROOT / "helm" / "spotler-bridge" / "files" / "alerts.yaml",
    ROOT / "helm" / "spotler-bridge" / "templates" / "prometheusrule.yaml",
)
NAME = re.compile(r"\bspotler_bridge_[a-z_]+")
TYPE_LINE = re.compile(r"^# TYPE (\S+) (\w+)$", re.MULTILINE)
# The dashboard and alerts use far more than this; fewer means the regex or the files broke.
MIN_NAMES = 15

SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count", ""),
    "gauge": ("",),
    "untyped": ("",),
}


def exported_series() -> dict[str, tuple[str, str]]:
    """Map every queryable series name to (family, type), from a scrape of a fresh registry."""
    text = generate_latest(Metrics().registry).decode()
    series: dict[str, tuple[str, str]] = {}
    for name, kind in TYPE_LINE.findall(text):
        if name.endswith("_created"):
            continue  # prometheus_client's creation timestamps, not something to query
        # Recent prometheus_client writes "# TYPE x_total counter"; older ones "# TYPE x counter".
        family = name.removesuffix("_total") if kind == "counter" else name
        for suffix in SUFFIXES.get(kind, ("",)):
            series[family + suffix] = (family, kind)
    return series


def used_names() -> dict[str, set[str]]:
    """Map every ``spotler_bridge_*`` name used in the deploy files to the files using it."""
    used: dict[str, set[str]] = {}
    for path in SOURCES:
        if not path.exists():
            continue
        for name in NAME.findall(path.read_text(encoding="utf-8")):
            used.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return used


def test_deploy_sources_exist() -> None:
    """The dashboard, the rule file and the chart's copy of it are all present."""
    missing = [str(p.relative_to(ROOT)) for p in SOURCES[:3] if not p.exists()]
    assert not missing, f"missing deploy files: {missing}"


def test_exposition_lists_the_families() -> None:
    """The scrape text has TYPE lines for counters, gauges and histograms (the parser is sound)."""
    kinds = {kind for _, kind in exported_series().values()}
    assert {"counter", "gauge", "histogram"} <= kinds


def test_enough_metric_names_are_found() -> None:
    """The extraction finds many names, so an empty match cannot pass silently."""
    used = used_names()
    assert len(used) >= MIN_NAMES, f"only {len(used)} metric names found: {sorted(used)}"


@pytest.mark.parametrize("name", sorted(used_names()) or ["<none found>"])
def test_metric_is_exported(name: str) -> None:
    """Each name used by a dashboard panel or an alert is a series the bridge exports."""
    exported = exported_series()
    where = ", ".join(sorted(used_names().get(name, ())))
    assert name in exported, (
        f"{name} (used in {where}) is not exported by bridge.telemetry.metrics.Metrics; "
        f"exported series: {sorted(exported)}"
    )


def test_every_exported_family_is_on_the_dashboard() -> None:
    """Each metric family has a panel, so a metric added to bridge/metrics.py is not forgotten."""
    dashboard = SOURCES[0].read_text(encoding="utf-8")
    shown = {exported_series()[n][0] for n in NAME.findall(dashboard) if n in exported_series()}
    families = {family for family, _ in exported_series().values()}
    assert families <= shown, f"not on the dashboard: {sorted(families - shown)}"
