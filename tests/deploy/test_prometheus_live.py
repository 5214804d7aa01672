"""The dashboard and the alerts against a real Prometheus, scraping a real bridge (issue 16).

A real ``prometheus`` (the Debian package that scripts/tools.sh installs for promtool) scrapes
``bridge serve`` every second, with the target labels the Prometheus Operator adds (job,
instance, namespace, pod, service, endpoint, container), while a scripted run goes through a
quiet baseline, a total API outage, a period of 429s, a Kafka stop and a failing
GET /channels (issue 25 item 3). Then every dashboard
expression (template variables resolved) and every alert go through Prometheus's HTTP API:
each panel returns series, each fault fires its alert, nothing fires in the baseline. Every
panel's result is drawn into docs/dashboard-faults.png (shown in docs/deploy.md).

The rules are deploy/prometheus/alerts.yaml with every duration (range windows and ``for:``)
divided by SCALE, mechanically (:func:`fast_rules`), so minutes of the real rules take seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from bridge.contract.records import Topics
from tests.faults.conftest import OwnKafka
from tests.faults.test_broker_recovery import CommandFeed, MixedStream, make_serve
from tests.integration.procs import ProcessFactory, free_port, start_simulator

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SCALE = 20
RATE_INTERVAL = "4s"  # Grafana's $__rate_interval for a 1 s scrape: 4 x the scrape interval
TARGET_LABELS = {
    "namespace": "bridge",
    "pod": "spotler-bridge-0",
    "service": "spotler-bridge",
    "endpoint": "ops",
    "container": "bridge",
}


def seconds(duration: str) -> float:
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    found = re.fullmatch(r"(\d+)(ms|s|m|h)", duration)
    assert found, duration
    return int(found[1]) * unit[found[2]]


def scaled(duration: str) -> str:
    return f"{max(1, round(seconds(duration) * 1000 / SCALE))}ms"


def fast_rules(source: Path) -> dict[str, Any]:
    """The alert rules with every range window, ``offset`` and ``for:`` divided by SCALE,
    evaluated every second; expressions, labels and annotations are otherwise unchanged."""
    rules: dict[str, Any] = yaml.safe_load(source.read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            expr = re.sub(r"\[(\d+(?:ms|s|m|h))\]", lambda m: f"[{scaled(m[1])}]", rule["expr"])
            rule["expr"] = re.sub(
                r"offset (\d+(?:ms|s|m|h))", lambda m: f"offset {scaled(m[1])}", expr
            )
            if "for" in rule:
                rule["for"] = scaled(rule["for"])
    return rules


class Prometheus:
    def __init__(self, work: Path, ops_port: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.work = work
        (work / "rules.yaml").write_text(
            yaml.safe_dump(fast_rules(ROOT / "deploy" / "prometheus" / "alerts.yaml"))
        )
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["rules.yaml"],
            "scrape_configs": [
                {
                    "job_name": "spotler-bridge",
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{ops_port}"], "labels": TARGET_LABELS}
                    ],
                }
            ],
        }
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        assert os.access(binary, os.X_OK), "prometheus missing: run scripts/tools.sh"
        log = (self.work / "prometheus.log").open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={self.work / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.work / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        log.close()
        async with asyncio.timeout(60), aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(self.url + "/-/ready") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()

    async def query_range(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        params = {"query": expr, "start": str(start), "end": str(end), "step": "1"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(self.url + "/api/v1/query_range", params=params) as resp,
        ):
            body = await resp.json()
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


def panels() -> list[tuple[str, list[str]]]:
    """(title, expressions) of every dashboard panel, template variables resolved."""
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "spotler-bridge.json").read_text())
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        exprs = [
            t["expr"]
            .replace("$__rate_interval", RATE_INTERVAL)
            .replace("$namespace", "bridge")
            .replace("$job", "spotler-bridge")
            .replace("$instance", ".*")
            for t in panel["targets"]
        ]
        found.append((panel["title"], exprs))
    return found


def fired(alerts: list[dict[str, Any]], name: str, start: float, end: float) -> bool:
    return any(
        series["metric"]["alertname"] == name
        and any(start <= t <= end for t, _ in series["values"])
        for series in alerts
    )


def draw(results: dict[str, list[list[dict[str, Any]]]], phases: dict[str, tuple[float, float]],
         start: float, out: Path) -> None:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    rows = -(-len(results) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 5, rows * 2.6), squeeze=False)
    colours = {"api outage": "tab:red", "429s": "tab:orange", "kafka stopped": "tab:purple",
               "channel list failing": "tab:green"}  # fmt: skip
    for ax, (title, per_target) in zip(axes.flat, results.items(), strict=False):
        for series_list in per_target:
            for series in series_list[:12]:
                xs = [float(t) - start for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                ax.plot(xs, ys, linewidth=0.8)
        for phase, (a, b) in phases.items():
            if phase in colours:
                ax.axvspan(a - start, b - start, color=colours[phase], alpha=0.15)
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(results) :]:
        ax.axis("off")
    fig.suptitle("spotler-bridge dashboard during a scripted fault run (s since start; shaded: "
                 "red API outage, orange 429s, purple Kafka stopped, green GET /channels "
                 "failing)", fontsize=10)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(out, dpi=70)
    plt.close(fig)


async def test_dashboard_and_alerts_on_a_real_prometheus(
    procs: ProcessFactory,
    own_kafka: OwnKafka,
    prefix: str,
    tmp_path: Path,
) -> None:
    sim = await start_simulator(procs)
    bridge = make_serve(procs, own_kafka, prefix, sim)
    del bridge.env["BRIDGE_CHANNELS"]  # the channel list from GET /channels, refreshed every 1 s
    bridge.env["BRIDGE_CHANNELS_REFRESH_SECONDS"] = "1"
    await bridge.start()
    await bridge.wait_ready(timeout=60)
    prometheus = Prometheus(tmp_path, bridge.ops_port)
    await prometheus.start()
    stream = MixedStream(bridge.url + "/webhooks", rate=50).start()
    feed = CommandFeed(own_kafka.bootstrap, Topics(prefix).send_message, rate=10).start()
    phases: dict[str, tuple[float, float]] = {}
    start = time.time()
    try:
        await asyncio.sleep(25)  # phase lengths, not synchronisation
        phases["baseline"] = (start + 10, time.time())
        began = time.time()
        await sim.faults(errorRate=1.0, errorStatus=503)
        await asyncio.sleep(20)
        await sim.faults()
        phases["api outage"] = (began, time.time())
        await asyncio.sleep(15)
        began = time.time()
        await sim.faults(rate429=1.0, retryAfter=0.5)
        await asyncio.sleep(15)
        await sim.faults()
        phases["429s"] = (began, time.time())
        await asyncio.sleep(10)
        began = time.time()
        await own_kafka.stop()
        await asyncio.sleep(20)
        await own_kafka.start()
        phases["kafka stopped"] = (began, time.time())
        await asyncio.sleep(20)
        began = time.time()
        await sim.faults(errorRate=1.0, errorStatus=503, endpoints=["read_channels"])
        await asyncio.sleep(10)
        await sim.faults()
        phases["channel list failing"] = (began, time.time())
        await asyncio.sleep(10)
    finally:
        await stream.stop()
        await feed.stop()
    end = time.time()
    try:
        alerts = await prometheus.query_range('ALERTS{alertstate="firing"}', start, end)
        results = {
            title: [await prometheus.query_range(e, start, end) for e in exprs]
            for title, exprs in panels()
        }
    finally:
        await prometheus.stop()
        await bridge.stop()
    draw(results, phases, start, ROOT / "docs" / "dashboard-faults.png")

    empty = [title for title, per_target in results.items() if not any(per_target)]
    assert not empty, f"panels without data: {empty}"
    by_endpoint = results["API calls by endpoint and status"][0]
    assert {s["metric"].get("api_endpoint") for s in by_endpoint} >= {"send_message"}
    assert all("exported_endpoint" not in s["metric"] for s in by_endpoint)

    quiet = [
        s["metric"]["alertname"]
        for s in alerts
        if any(phases["baseline"][0] <= t <= phases["baseline"][1] for t, _ in s["values"])
    ]
    assert not quiet, f"alerts firing without a fault: {quiet}"
    expected = {
        "api outage": ("SpotlerBridgeCircuitOpen", "SpotlerBridgeApiFailureRatioHigh"),
        "429s": ("SpotlerBridgeApiRateLimited",),
        "kafka stopped": ("SpotlerBridgeKafkaUnavailable",),
        "channel list failing": ("SpotlerBridgeChannelListStale",),
    }
    slack = 30  # a few scaled minutes after the fault ends
    missing = [
        (phase, name)
        for phase, names in expected.items()
        for name in names
        if not fired(alerts, name, phases[phase][0], phases[phase][1] + slack)
    ]
    seen = sorted({s["metric"]["alertname"] for s in alerts})
    assert not missing, f"faults whose alert never fired: {missing}; fired: {seen}"
