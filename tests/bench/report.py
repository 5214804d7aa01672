"""Report: targets and verdicts, the printed table, and the results file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.bench.harness import RESULTS

#: Issue 13's run on this machine: Benthos v4.60 (http_server + franz-go, acks=all) took 214 µs
#: of CPU per request where the naive handler took 273 µs. The naive handler stands in for it.
BENTHOS_OVER_NAIVE = 214 / 273
#: The servers of the ingress phase, in the order shown.
SERVERS = ("bare", "bridge-no-kafka", "naive", "bridge-before", "bridge", "bridge-rdkafka")
#: The servers that write to Kafka and whose records are counted.
WRITERS = ("naive", "bridge-before", "bridge", "bridge-rdkafka")


def main_point(res: dict[str, Any]) -> dict[str, Any]:
    """The results of the first partition count (the one with every server and rate)."""
    parts = res["ingress"]["partitions"]
    return dict(parts[next(iter(parts))])


def verdicts(res: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, value: Any, target: str, ok: bool) -> None:
        out.append({"target": name, "value": value, "goal": target, "pass": bool(ok)})

    if res.get("ingress"):
        m = main_point(res)
        b, n, s = m["bridge"], m["naive"], m["bare"]
        sat_b, sat_n = b["saturation"], n["saturation"]
        ratio = round(sat_b["rps"] / sat_n["rps"], 3)
        add("bridge/naive throughput, saturation", ratio, ">= 1.0", ratio >= 1.0)
        cpu = round(sat_b["cpu_us_per_request"] / sat_n["cpu_us_per_request"], 3)
        add("bridge/naive CPU per request (issue 24)", cpu, "<= 1.15", cpu <= 1.15)
        est = round(cpu / BENTHOS_OVER_NAIVE, 3)
        add(
            "bridge/Benthos CPU per request (estimated: naive x 214/273)",
            est,
            "<= 1.25",
            est <= 1.25,
        )
        lat_b, lat_n = b["latency"]["p99_ms"], n["latency"]["p99_ms"]
        add(
            "p99 at the latency connections (ms), bridge vs naive",
            f"{lat_b} vs {lat_n}",
            "bridge <= naive",
            lat_b <= lat_n,
        )
        bare_ratio = round(sat_b["rps"] / s["saturation"]["rps"], 3)
        add("bridge/bare throughput, saturation", bare_ratio, ">= 0.5", bare_ratio >= 0.5)
        p = b.get("rate2000")
        if p:
            add("bridge p99 at 2000/s (ms)", p["p99_ms"], "<= 25", p["p99_ms"] <= 25)
        p5 = b.get("rate5000")
        if p5:
            add(
                "bridge sustains 5000/s fixed rate",
                p5["achieved_rps"],
                ">= 4900/s achieved, nothing skipped",
                not p5["overloaded"],
            )
        rss = b["rss_mb"].get("VmHWM", 0.0)
        add("bridge peak RSS (MB)", rss, "< 150", rss < 150)
        if "bridge-no-kafka" in m:
            floor = m["bridge-no-kafka"]["saturation"]["cpu_us_per_request"]
            add(
                "bridge-no-kafka/naive CPU per request (the bridge's own work, no Kafka at all)",
                round(floor / sat_n["cpu_us_per_request"], 3),
                "< 1.0 (else no Kafka-side change brings the bridge to the naive handler)",
                floor < sat_n["cpu_us_per_request"],
            )
            floor_bare = round(floor / s["saturation"]["cpu_us_per_request"], 3)
            add("bridge-no-kafka/bare CPU per request (issue 24)", floor_bare, "<= 1.6",
                floor_bare <= 1.6)  # fmt: skip
        if "bridge-before" in m:
            before = m["bridge-before"]["saturation"]
            add(
                f"bridge/bridge-before CPU per request ({res['config']['before']})",
                round(sat_b["cpu_us_per_request"] / before["cpu_us_per_request"], 3),
                "< 1.0 (cheaper than before)",
                sat_b["cpu_us_per_request"] < before["cpu_us_per_request"],
            )
        if "bridge-rdkafka" in m:
            rd = m["bridge-rdkafka"]["saturation"]
            ratio_rd = round(rd["rps"] / sat_n["rps"], 3)
            add("bridge-rdkafka/naive throughput (optional client)", ratio_rd, ">= 1.0",
                ratio_rd >= 1.0)  # fmt: skip
            cpu_rd = round(rd["cpu_us_per_request"] / sat_n["cpu_us_per_request"], 3)
            add("bridge-rdkafka/naive CPU per request", cpu_rd, "<= 1.0", cpu_rd <= 1.0)
        for name in WRITERS:
            key = "records" if name == "naive" else "unique_ids"
            for count, point in res["ingress"]["partitions"].items():
                if name not in point:
                    continue
                rec = point[name]["records"]
                add(
                    f"{name} p{count}: acknowledged deliveries in Kafka",
                    f"{rec[key]}/{point[name]['acknowledged']}",
                    "all, and every run's 200s in the end offsets",
                    rec["lost"] == 0 and point[name]["kafka_has_every_200"],
                )
    eg = res.get("egress")
    if eg:
        fast, slow = eg["no_latency"], eg["with_latency"]
        add(
            "egress commands/s, no latency",
            fast["commands_per_s"],
            ">= 2000",
            fast["commands_per_s"] >= 2000,
        )
        bound = slow["bound_concurrency_over_latency"]
        limit = min(bound, fast["commands_per_s"])
        add(
            f"egress commands/s, {slow['latency_ms']:g} ms latency",
            slow["commands_per_s"],
            f">= 0.5 x min(bound {bound:.0f}, no-latency rate) = {0.5 * limit:.0f}",
            slow["commands_per_s"] >= 0.5 * limit,
        )
    return out


def table(res: dict[str, Any]) -> str:
    lines = []
    if res.get("ingress"):
        cfg = res["config"]
        m = main_point(res)
        names = [x for x in SERVERS if x in m]
        first = next(iter(res["ingress"]["partitions"]))
        lines.append(
            f"INGRESS (POST /webhooks, {res['ingress']['bodies']['bytes_mean']} B bodies, "
            f"{first} partitions, medians of {cfg['repeat']} alternated rounds)"
        )
        lines.append("  " + " " * 38 + "".join(f"{x:>17}" for x in names))
        rows: list[tuple[str, str, str, str]] = [
            (f"throughput -c{cfg['wrk_connections']} /s", "saturation", "rps", "{:>17.0f}"),
            ("server CPU us per request", "saturation", "cpu_us_per_request", "{:>17.0f}"),
            ("server CPU %", "saturation", "cpu_pct", "{:>17.0f}"),
            (f"p50 / p99 ms -c{cfg['wrk_connections']}", "saturation", "p50_ms", "{:>17.1f}"),
            ("", "saturation", "p99_ms", "{:>17.1f}"),
            (f"throughput -c{cfg['latency_connections']} /s", "latency", "rps", "{:>17.0f}"),
            (f"p50 / p99 ms -c{cfg['latency_connections']}", "latency", "p50_ms", "{:>17.1f}"),
            ("", "latency", "p99_ms", "{:>17.1f}"),
        ]
        for label, kind, key, fmt in rows:
            cells = "".join(fmt.format(m[x][kind][key]) for x in names)
            lines.append(f"  {label:<38}{cells}")
        for rate in cfg["rates"]:
            cells = "".join(
                f"{m[x][f'rate{rate}']['p99_ms']:>16.1f}"
                + ("!" if m[x][f"rate{rate}"]["overloaded"] else " ")
                for x in names
            )
            lines.append(f"  {f'p99 ms at a fixed {rate}/s (! overloaded)':<38}{cells}")
        rss = m["bridge"]["rss_mb"].get("VmHWM", 0.0)
        lines.append(f"  bridge peak RSS (VmHWM) MB              {rss:>10.1f}")
        parts = res["ingress"]["partitions"]
        if len(parts) > 1:
            lines.append("  partitions   bridge /s  naive /s  ratio   bridge us  naive us  ratio")
            for count, point in parts.items():
                b, n = point["bridge"]["saturation"], point["naive"]["saturation"]
                lines.append(
                    f"  {count:>10} {b['rps']:>11.0f} {n['rps']:>9.0f} "
                    f"{b['rps'] / n['rps']:>6.2f} {b['cpu_us_per_request']:>11.0f} "
                    f"{n['cpu_us_per_request']:>9.0f} "
                    f"{b['cpu_us_per_request'] / n['cpu_us_per_request']:>6.2f}"
                )
        for count, point in parts.items():
            for name in (x for x in WRITERS if x in point):
                rec = point[name]["records"]
                lines.append(
                    f"  p{count} {name}: acknowledged {point[name]['acknowledged']}, "
                    f"in Kafka {rec['records'] if name == 'naive' else rec['unique_ids']}"
                    f" ({rec['records']} records, {rec['mean_record_bytes']} B each)"
                )
    eg = res.get("egress")
    if eg:
        lines.append("EGRESS (send-message -> simulator -> results)")
        for key in ("no_latency", "with_latency"):
            e = eg[key]
            bound = e["bound_concurrency_over_latency"]
            lines.append(
                f"  latency {e['latency_ms']:>4g} ms: {e['commands_per_s']:>8.0f} commands/s "
                f"({e['commands']} in {e['seconds_from_ready']:.2f}s, concurrency "
                f"{e['concurrency']}" + (f", bound {bound:.0f}/s)" if bound else ")")
            )
            lines.append(
                f"      slot held {e['slot_ms_per_command']:.0f} ms/command; "
                f"CPU: egress {e['egress_cpu_pct']:.0f}% "
                f"({e['egress_cpu_us_per_command']:.0f} us/command), "
                f"simulator {e['simulator_cpu_pct']:.0f}%"
            )
    lines.append("TARGETS")
    for v in res["verdicts"]:
        mark = "PASS" if v["pass"] else "MISS"
        lines.append(f"  [{mark}] {v['target']}: {v['value']} (goal {v['goal']})")
    return "\n".join(lines)


def results_path(today: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{today}.json"
    n = 2
    while path.exists():
        path = RESULTS / f"{today}-{n}.json"
        n += 1
    return path


def check_harness(res: dict[str, Any]) -> list[str]:
    problems = []
    if res.get("ingress"):
        for count, point in res["ingress"]["partitions"].items():
            for name in (x for x in WRITERS if x in point):
                rec = point[name]["records"]
                if rec["lost"]:
                    problems.append(f"p{count} {name}: {rec['lost']} acknowledged not found")
                if not point[name]["kafka_has_every_200"]:
                    problems.append(f"p{count} {name}: a run's 200s exceed the records added")
            problems += [
                f"p{count}: {name} exited {point[name]['exit_code']}"
                for name in ("bridge-before", "bridge", "bridge-rdkafka")
                if name in point and point[name]["exit_code"] != 0
            ]
    eg = res.get("egress")
    if eg:
        for key, e in eg.items():
            if e["results"]["unique_commands"] != e["commands"]:
                problems.append(f"egress {key}: results missing")
            if e["results"]["out_of_order"]:
                problems.append(f"egress {key}: {e['results']['out_of_order']} out of order")
            if e["exit_code"] != 0:
                problems.append(f"egress {key}: egress exited {e['exit_code']}")
    return problems


def plot(res: dict[str, Any], path: Path) -> None:
    """Throughput and CPU per request at saturation, and p99 latency, per server (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = res["config"]
    m = main_point(res)
    names = [x for x in SERVERS if x in m]
    colors = {
        "bare": "#9e9e9e",
        "naive": "#f28e2b",
        "bridge": "#4e79a7",
        "bridge-rdkafka": "#59a14f",
        "bridge-before": "#bab0ac",
        "bridge-no-kafka": "#76b7b2",
    }
    parts = res["ingress"]["partitions"]
    panels = 4 if len(parts) > 1 else 3
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.8))
    first = next(iter(parts))

    ticks = [x.replace("-", "\n") for x in names]  # "bridge\nrdkafka": labels never overlap

    def bars(ax: Any, values: list[float], title: str, fmt: str) -> None:
        shown = ax.bar(range(len(names)), values, color=[colors[x] for x in names])
        ax.set_xticks(range(len(names)), ticks, fontsize=8)
        ax.bar_label(shown, labels=[fmt.format(v) for v in values], fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.margins(y=0.15)

    bars(axes[0], [m[x]["saturation"]["rps"] for x in names],
         f"requests/s, wrk -c{cfg['wrk_connections']}", "{:.0f}")  # fmt: skip
    bars(axes[1], [m[x]["saturation"]["cpu_us_per_request"] for x in names],
         "server CPU µs per request (lower is better)", "{:.0f}")  # fmt: skip
    width = 0.38
    xs = range(len(names))
    for i, (kind, conns) in enumerate(
        (("latency", cfg["latency_connections"]), ("saturation", cfg["wrk_connections"]))
    ):
        vals = [m[x][kind]["p99_ms"] for x in names]
        shown = axes[2].bar([x + (i - 0.5) * width for x in xs], vals, width,
                            label=f"-c{conns}", color=[colors[x] for x in names],
                            alpha=0.55 if i else 1.0)  # fmt: skip
        axes[2].bar_label(shown, labels=[f"{v:.1f}" for v in vals], fontsize=7)
    axes[2].set_xticks(list(xs), ticks, fontsize=8)
    axes[2].set_title(f"p99 ms (closed loop; solid -c{cfg['latency_connections']})", fontsize=9)
    axes[2].margins(y=0.15)
    if panels == 4:
        counts = [int(c) for c in parts]
        for name in (x for x in WRITERS if x in parts[str(counts[0])]):
            axes[3].plot(counts, [parts[str(c)][name]["saturation"]["rps"] for c in counts],
                         marker="o", label=name, color=colors[name])  # fmt: skip
        axes[3].set_xscale("log", base=2)
        axes[3].set_xticks(counts, [str(c) for c in counts])
        axes[3].set_title("requests/s by topic partitions", fontsize=9)
        axes[3].legend(fontsize=8)
    fig.suptitle(
        f"ingress, {res['started'][:16]} {res['code']['commit']}: {first} partitions, "
        f"medians of {cfg['repeat']} alternated rounds, {res['machine']['cpus']} CPUs",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.bench.report RESULTS.json``: the table again, and the plot redrawn."""
    import sys

    import orjson

    path = Path((argv or sys.argv[1:])[0])
    res = orjson.loads(path.read_bytes())
    print(table(res))
    if res.get("ingress"):
        plot(res, path.with_suffix(".png"))
        print(f"plot: {path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
