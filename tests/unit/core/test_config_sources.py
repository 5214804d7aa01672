"""One source for every setting: the README's table and the Helm chart agree with the settings.

The settings dataclasses declare each ``BRIDGE_*`` variable once, with its default
(:func:`bridge.core.config.variables`). These tests read the README's configuration table and the
chart's ``values.yaml`` through its ConfigMap template, and fail when either names a variable the
code does not read, leaves one out, or shows another default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from bridge.core.config import variables

ROOT = Path(__file__).resolve().parents[3]
VARIABLES = {v.name: v for v in variables()}

# Settings the chart sets on purpose to something other than the process default, and why.
CHART_OVERRIDES = {
    "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": "a Service name in the cluster, not localhost",
}
# Settings the chart does not put in its ConfigMap, and where they come from instead.
CHART_ELSEWHERE = {
    "BRIDGE_KAFKA_SASL_USERNAME": "a Secret, by reference",
    "BRIDGE_KAFKA_SASL_PASSWORD": "a Secret, by reference",
    "BRIDGE_KAFKA_SASL_MECHANISM": "set only with SASL",
    "BRIDGE_KAFKA_SSL_CAFILE": "the mounted CA Secret",
    "BRIDGE_WEBHOOK_TOKENS": "a Secret, by reference",
    "BRIDGE_SPOTLER_API_KEY": "a Secret, by reference",
    "BRIDGE_SPOOL_DIR": "the spool volume's mount path",
    "BRIDGE_INSTANCE": "the pod's name (fieldRef metadata.name)",
    "BRIDGE_SPOOL_SEGMENT_BYTES": "extraConfig, when needed",
}


def shown(value: Any) -> str:
    """A default as the README and the chart write it."""
    if value is None or value in ((), ""):
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def readme_defaults() -> dict[str, str]:
    """``{variable: default}`` from the README's configuration table (grouped rows split)."""
    rows: dict[str, str] = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`BRIDGE_"):
            continue
        names = re.findall(r"`(BRIDGE_[A-Z_]+)`", cells[0])
        defaults = [d.strip().strip("`") for d in cells[1].split(",")]
        if len(defaults) == 1 and len(names) > 1:
            defaults *= len(names)
        assert len(defaults) == len(names), f"README row {line!r}: one default per variable"
        rows.update(zip(names, defaults, strict=True))
    return rows


def test_every_variable_is_in_the_readme_with_its_default() -> None:
    readme = readme_defaults()
    assert set(readme) == set(VARIABLES), (
        f"README only: {sorted(set(readme) - set(VARIABLES))}; "
        f"code only: {sorted(set(VARIABLES) - set(readme))}"
    )
    wrong = {n: (readme[n], shown(v.default)) for n, v in VARIABLES.items()}
    wrong = {n: pair for n, pair in wrong.items() if pair[0] != pair[1]}
    assert not wrong, f"README default differs from the code (README, code): {wrong}"


def chart_defaults() -> dict[str, Any]:
    """``{variable: value}`` the chart's ConfigMap renders from the default ``values.yaml``."""
    chart = ROOT / "helm" / "spotler-bridge"
    values = yaml.safe_load((chart / "values.yaml").read_text())
    template = (chart / "templates" / "configmap.yaml").read_text()
    found: dict[str, Any] = {}
    for name, expr in re.findall(r"^\s+(BRIDGE_[A-Z_]+): (.+)$", template, re.MULTILINE):
        path = re.search(r"\$v\.([A-Za-z0-9_.]+)", expr)
        if path is None:
            if "{{" not in expr:  # a literal in the template
                found[name] = yaml.safe_load(expr)
            continue
        node: Any = values
        for part in path.group(1).split("."):
            node = node[part]
        found[name] = node
    return found


def test_the_chart_defaults_match_the_code() -> None:
    chart = chart_defaults()
    missing = set(VARIABLES) - set(chart) - set(CHART_ELSEWHERE)
    assert not missing, f"the chart's ConfigMap does not set {sorted(missing)}"
    unknown = set(chart) - set(VARIABLES)
    assert not unknown, f"the chart sets variables the code does not read: {sorted(unknown)}"
    wrong = {
        name: (value, VARIABLES[name].default)
        for name, value in chart.items()
        if name not in CHART_OVERRIDES and shown(value) != shown(VARIABLES[name].default)
    }
    assert not wrong, f"chart value differs from the code default (chart, code): {wrong}"
