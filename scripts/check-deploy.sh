#!/usr/bin/env bash
# shellcheck disable=SC2317  # the check functions are called indirectly, through check()
# Check every deploy artefact offline: Helm chart, rendered manifests, alert rules, dashboard,
# Dockerfile, Compose file, that the dashboard/alerts use only exported metrics, and the AsyncAPI
# document of the topics (docs/asyncapi.yaml).
#
#   bash scripts/check-deploy.sh            # installs the pinned tools first (scripts/tools.sh)
#   SKIP_TOOLS=1 bash scripts/check-deploy.sh
#
# Exit status is non-zero when any check fails; a summary is printed at the end.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
CHART=helm/spotler-bridge
BIN="$ROOT/.tools/bin"
TOOLS_PY="$ROOT/.tools/venv/bin/python"
KUBE_SCHEMA_VERSIONS="${KUBE_SCHEMA_VERSIONS:-1.25.0 1.37.0}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

if [[ "${SKIP_TOOLS:-0}" != 1 ]]; then
    bash scripts/tools.sh || { echo "scripts/tools.sh failed" >&2; exit 1; }
fi
export PATH="$BIN:$PATH"

declare -a RESULTS=()
FAILED=0
# check NAME COMMAND...: run it, keep its output, record PASS/FAIL.
check() {
    local name=$1; shift
    local log="$WORK/log.$((${#RESULTS[@]} + 1))"
    if "$@" > "$log" 2>&1; then
        RESULTS+=("PASS  $name")
    else
        RESULTS+=("FAIL  $name")
        FAILED=1
        echo "---- FAIL: $name" >&2
        sed 's/^/    /' "$log" | tail -40 >&2
    fi
}
skip() { RESULTS+=("SKIP  $1 ($2)"); }

VALUE_SETS=("")
for f in "$CHART"/ci/*-values.yaml; do VALUE_SETS+=("$f"); done
label() { [[ -n $1 ]] && basename "$1" .yaml || echo default; }

# --- 1. helm lint (default values and each ci/ value set) ----------------------------------
for vf in "${VALUE_SETS[@]}"; do
    check "helm lint --strict [$(label "$vf")]" helm lint --strict "$CHART" ${vf:+-f "$vf"}
done

# --- 2. helm template | kubeconform -strict, per Kubernetes version ------------------------
kubeconform_render() { # values-file kube-version
    local vf=$1 kv=$2 out
    out="$WORK/render-$(label "$1")-$2.yaml"
    helm template release-name "$CHART" --namespace bridge --kube-version "$kv" ${vf:+-f "$vf"} > "$out" || return 1
    kubeconform -strict -summary -output text \
        -schema-location "$ROOT/.tools/k8s-schemas/v$kv-strict/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
        -schema-location "$ROOT/tests/helm/schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
        "$out"
}
for kv in $KUBE_SCHEMA_VERSIONS; do
    for vf in "${VALUE_SETS[@]}"; do
        check "helm template | kubeconform -strict [$(label "$vf"), k8s $kv]" kubeconform_render "$vf" "$kv"
    done
done

# --- 2b. the rendered environment is a valid bridge configuration --------------------------
# Each workload's env (ConfigMap + secret references filled with placeholders) goes through
# bridge.core.config.Settings.from_env(...).check_role(<container arg>), the code the pods run.
bridge_accepts_env() { # rendered-manifests
    # YAML to JSON with the tools' Python (PyYAML); the check itself with the project's venv.
    "$TOOLS_PY" -c 'import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], open(sys.argv[2], "w"))' \
        "$1" "$1.json" || return 1
    "$ROOT/.venv/bin/python" - "$1.json" "$ROOT" <<'PY'
import json
import sys
sys.path.insert(0, sys.argv[2])
from bridge.core.config import Settings

docs = json.load(open(sys.argv[1]))
maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
checked = 0
for d in docs:
    if d["kind"] not in ("Deployment", "StatefulSet"):
        continue
    for c in d["spec"]["template"]["spec"]["containers"]:
        env = {}
        for src in c.get("envFrom", []):
            env.update(maps[src["configMapRef"]["name"]])
        for e in c.get("env", []):
            env[e["name"]] = e.get("value", "placeholder-secret")
        role = c["args"][0]
        Settings.from_env(env).check_role(role)  # raises ConfigError naming each bad variable
        checked += 1
        print(f"{d['kind']}/{d['metadata']['name']} ({role}): {len(env)} variables accepted")
assert checked, "no workload rendered"
PY
}
if [[ -x "$ROOT/.venv/bin/python" ]]; then
    for vf in "${VALUE_SETS[@]}"; do
        check "bridge accepts the rendered env [$(label "$vf")]" \
            bridge_accepts_env "$WORK/render-$(label "$vf")-${KUBE_SCHEMA_VERSIONS##* }.yaml"
    done
else
    skip "bridge accepts the rendered env" "no .venv with the bridge package"
fi

# --- 3. value sets that must be rejected ----------------------------------------------------
# Each file's first "# expect: <text>" line is a fragment of the error it must cause. `helm
# template` is the gate: `helm lint` reports the schema errors too, but turns the chart's own
# `fail` checks into INFO lines.
must_reject() { # file
    local f=$1 expect out
    expect="$(sed -n 's/^# expect: //p' "$f" | head -1)"
    [[ -n $expect ]] || { echo "$f has no '# expect: ' line"; return 1; }
    if out="$(helm template release-name "$CHART" -f "$f" 2>&1)"; then
        echo "accepted, but must be rejected: $f"; return 1
    fi
    grep -qF -- "$expect" <<< "$out" || { echo "rejected for another reason than '$expect':"; echo "$out"; return 1; }
    echo "rejected as expected: $(grep -m1 -F -- "$expect" <<< "$out")"
}
for f in tests/helm/bad-values/*.yaml; do
    check "rejects bad values [$(basename "$f" .yaml)]" must_reject "$f"
done

# --- 4. alert rules -------------------------------------------------------------------------
check "promtool check rules deploy/prometheus/alerts.yaml" promtool check rules deploy/prometheus/alerts.yaml
check "promtool test rules deploy/prometheus/alerts.test.yaml" promtool test rules deploy/prometheus/alerts.test.yaml
check "chart's files/alerts.yaml equals deploy/prometheus/alerts.yaml" \
    cmp deploy/prometheus/alerts.yaml "$CHART/files/alerts.yaml"
rendered_rules() { # the PrometheusRule the chart renders holds the same groups as the rule file
    helm template release-name "$CHART" --set metrics.prometheusRule.enabled=true \
        --show-only templates/prometheusrule.yaml > "$WORK/pr.yaml" || return 1
    "$TOOLS_PY" - "$WORK/pr.yaml" deploy/prometheus/alerts.yaml "$WORK/pr-rules.yaml" <<'PY' || return 1
import sys, yaml
rendered = yaml.safe_load(open(sys.argv[1]))
source = yaml.safe_load(open(sys.argv[2]))
assert rendered["kind"] == "PrometheusRule", rendered["kind"]
assert rendered["spec"]["groups"] == source["groups"], "rendered PrometheusRule differs from alerts.yaml"
yaml.safe_dump({"groups": rendered["spec"]["groups"]}, open(sys.argv[3], "w"))
print(sum(len(g["rules"]) for g in source["groups"]), "rules identical")
PY
    promtool check rules "$WORK/pr-rules.yaml"
}
check "chart PrometheusRule = alerts.yaml, and passes promtool" rendered_rules

runbooks() { # every runbook_url points at a heading of docs/deploy.md
    "$TOOLS_PY" - deploy/prometheus/alerts.yaml docs/deploy.md <<'PY'
import re, sys, yaml
anchors = set()
for line in open(sys.argv[2], encoding="utf-8"):
    m = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
    if m:  # GitHub's anchor rule: lower-case, drop punctuation, spaces to hyphens
        anchors.add(re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-"))
bad = []
for group in yaml.safe_load(open(sys.argv[1]))["groups"]:
    for rule in group["rules"]:
        if "alert" not in rule:
            continue
        ann, labels = rule.get("annotations", {}), rule.get("labels", {})
        for key in ("summary", "description", "runbook_url"):
            if not ann.get(key):
                bad.append(f"{rule['alert']}: no {key} annotation")
        if labels.get("severity") not in ("critical", "warning", "info"):
            bad.append(f"{rule['alert']}: severity label missing or unknown")
        url = ann.get("runbook_url", "")
        if not url.startswith("docs/deploy.md#") or url.split("#", 1)[1] not in anchors:
            bad.append(f"{rule['alert']}: runbook_url {url!r} has no matching heading in docs/deploy.md")
print("\n".join(bad) or "every alert has severity, summary, description and a runbook section")
sys.exit(1 if bad else 0)
PY
}
check "alerts: severity, annotations, runbook sections in docs/deploy.md" runbooks

# --- 5. Grafana dashboard -------------------------------------------------------------------
dashboard() {
    "$TOOLS_PY" - deploy/grafana/spotler-bridge.json "$WORK/dashboard-rules.yaml" <<'PY' || return 1
import json, sys, yaml
d = json.load(open(sys.argv[1]))          # valid JSON
variables = {v["name"]: v for v in d["templating"]["list"]}
assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
assert {"namespace", "job", "instance"} & set(variables), "no job/namespace/instance variable"
assert 36 <= d["schemaVersion"] <= 41, d["schemaVersion"]
rules, n = [], 0
for p in d["panels"]:
    if p["type"] == "row":
        continue
    assert p.get("datasource", {}).get("uid") == "${datasource}", f"panel {p['title']!r} ignores $datasource"
    for t in p["targets"]:
        assert t["datasource"]["uid"] == "${datasource}", f"target of {p['title']!r} ignores $datasource"
        expr = (t["expr"].replace("$__rate_interval", "5m").replace("$namespace", ".*")
                .replace("$job", ".*").replace("$instance", ".*"))
        n += 1
        rules.append({"record": f"dashboard:query_{n}", "expr": expr})
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[2], "w"))
print(f"{len(d['panels'])} panels, {n} queries")
PY
    promtool check rules "$WORK/dashboard-rules.yaml"   # every query parses as PromQL
}
check "grafana dashboard: valid JSON, \$datasource everywhere, PromQL parses" dashboard

# --- 6. metric names used by dashboard and alerts are exported ------------------------------
if [[ -x "$ROOT/.venv/bin/python" ]]; then
    check "pytest tests/unit/telemetry/test_deploy_metrics.py" \
        "$ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit/telemetry/test_deploy_metrics.py
else
    skip "pytest tests/unit/telemetry/test_deploy_metrics.py" "no .venv; run it with the project's test command"
fi

# --- 7. Dockerfile and Compose --------------------------------------------------------------
if command -v hadolint > /dev/null; then
    check "hadolint Dockerfile" hadolint Dockerfile
else
    skip "hadolint Dockerfile" "hadolint not installed"
fi
if command -v docker-compose > /dev/null; then
    check "docker-compose config deploy/docker-compose.yml" \
        docker-compose -f deploy/docker-compose.yml config --quiet
else
    check "deploy/docker-compose.yml parses as YAML" \
        "$TOOLS_PY" -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' deploy/docker-compose.yml
fi

# --- 8. AsyncAPI document -------------------------------------------------------------------
# docs/asyncapi.yaml is generated from the JSON Schemas (`bridge contract asyncapi`); the official
# parser (scripts/tools.sh installs it, pinned) must find no error or warning in it.
check "asyncapi: @asyncapi/parser validates docs/asyncapi.yaml" \
    node scripts/asyncapi/validate.cjs "$ROOT/.tools/asyncapi" docs/asyncapi.yaml
if [[ -x "$ROOT/.venv/bin/python" ]]; then
    asyncapi_current() { PYTHONPATH="$ROOT" "$ROOT/.venv/bin/python" -m bridge contract asyncapi | diff -u docs/asyncapi.yaml -; }
    check "docs/asyncapi.yaml equals \`bridge contract asyncapi\`" asyncapi_current
else
    skip "docs/asyncapi.yaml is current" "no .venv with the bridge package"
fi

# --- summary --------------------------------------------------------------------------------
echo
echo "check-deploy summary"
printf '  %s\n' "${RESULTS[@]}"
pass=$(printf '%s\n' "${RESULTS[@]}" | grep -c '^PASS' || true)
fail=$(printf '%s\n' "${RESULTS[@]}" | grep -c '^FAIL' || true)
skipped=$(printf '%s\n' "${RESULTS[@]}" | grep -c '^SKIP' || true)
if [[ $FAILED == 0 ]]; then verdict=OK; else verdict=FAILED; fi
echo "check-deploy $verdict ($pass checks passed, $fail failed, $skipped skipped)"
exit "$FAILED"
