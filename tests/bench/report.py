"""Report: targets and verdicts, the printed table, and the results file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.bench.harness import RESULTS, median


def verdicts(res: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, value: Any, target: str, ok: bool) -> None:
        out.append({"target": name, "value": value, "goal": target, "pass": bool(ok)})

    ing = res.get("ingress")
    if ing:
        b = ing["bridge"]
        add("ingress saturation /s", b["saturation_rps"], ">= 5000", b["saturation_rps"] >= 5000)
        p = b["fixed_rate"].get("2000")
        if p:
            add("ingress p99 at 2000/s (ms)", p["p99_ms"], "<= 25", p["p99_ms"] <= 25)
        p5 = b["fixed_rate"].get("5000")
        if p5:
            add(
                "ingress sustains 5000/s fixed rate",
                p5["achieved_rps"],
                ">= 4900/s achieved, nothing skipped",
                not p5["overloaded"],
            )
        r = ing["ratio_bridge_bare"]
        add("bridge/bare saturation ratio", r, ">= 0.5", r >= 0.5)
        rss = b["rss_mb"].get("VmHWM", 0.0)
        add("bridge peak RSS (MB)", rss, "< 150", rss < 150)
        rec = b["records"]
        add(
            "acknowledged deliveries on topics",
            f"{rec['unique_ids']}/{rec['acknowledged']}",
            "all",
            rec["lost"] == 0,
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
    ing = res.get("ingress")
    if ing:
        lines.append("INGRESS (POST /webhooks, ~1 KB bodies)        bridge        bare")
        b, s = ing["bridge"], ing["bare"]
        lines.append(
            f"  saturation (wrk, -c{res['config']['wrk_connections']}) /s   "
            f"{b['saturation_rps']:>12.0f} {s['saturation_rps']:>11.0f}"
        )
        bcpu = median([x["server_cpu_pct"] for x in b["saturation_runs"]])
        scpu = median([x["server_cpu_pct"] for x in s["saturation_runs"]])
        bus = median([x["server_cpu_us_per_request"] for x in b["saturation_runs"]])
        sus = median([x["server_cpu_us_per_request"] for x in s["saturation_runs"]])
        lines.append(f"  server CPU % at saturation             {bcpu:>12.0f} {scpu:>11.0f}")
        lines.append(f"  server CPU us per request              {bus:>12.0f} {sus:>11.0f}")
        for rate in b["fixed_rate"]:
            bp, sp = b["fixed_rate"][rate], s["fixed_rate"].get(rate, {})
            lines.append(
                f"  {rate:>5}/s p50/p99/p99.9 ms  {bp['p50_ms']:>6.1f}/{bp['p99_ms']:>6.1f}/"
                f"{bp['p999_ms']:>6.1f}  {sp.get('p50_ms', 0):>5.1f}/{sp.get('p99_ms', 0):>5.1f}/"
                f"{sp.get('p999_ms', 0):>5.1f}"
            )
            over = f"  OVERLOADED: skipped {bp['skipped']}, latencies are lower bounds"
            lines.append(
                f"  {rate:>5}/s achieved /s        {bp['achieved_rps']:>12.0f} "
                f"{sp.get('achieved_rps', 0):>11.0f}" + (over if bp["overloaded"] else "")
            )
        ratio, rss = ing["ratio_bridge_bare"], b["rss_mb"].get("VmHWM", 0.0)
        lines.append(f"  ratio bridge/bare (saturation)          {ratio:>12.2f}")
        lines.append(f"  bridge peak RSS (VmHWM) MB              {rss:>12.1f}")
        rec = b["records"]
        lines.append(
            f"  acknowledged / found unique / records   {rec['acknowledged']} / "
            f"{rec['unique_ids']} / {rec['records']}"
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
    ing = res.get("ingress")
    if ing:
        b = ing["bridge"]
        if b["records"]["lost"]:
            problems.append(f"ingress: {b['records']['lost']} acknowledged deliveries not found")
        if b["exit_code"] != 0:
            problems.append(f"ingress: bridge exited {b['exit_code']}")
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
