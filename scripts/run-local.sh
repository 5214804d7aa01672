#!/usr/bin/env bash
# Everything locally: Kafka (127.0.0.1:9092), the simulator (:8800) and `bridge serve` (:8080,
# ops :9090), wired together: the bridge calls the simulator's API, and the simulator's webhooks
# come back to the bridge. Ctrl-C stops the bridge and the simulator; `make kafka-down` the broker.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export BRIDGE_WEBHOOK_TOKENS=${BRIDGE_WEBHOOK_TOKENS:-local-token-0123456789}
export BRIDGE_SPOTLER_API_KEY=${BRIDGE_SPOTLER_API_KEY:-sim-key}
export BRIDGE_SPOTLER_API_URL=${BRIDGE_SPOTLER_API_URL:-http://127.0.0.1:8800/v3}
export BRIDGE_KAFKA_BOOTSTRAP_SERVERS=${BRIDGE_KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}
export BRIDGE_LOG_FORMAT=${BRIDGE_LOG_FORMAT:-console}
export BRIDGE_SPOOL_DIR=${BRIDGE_SPOOL_DIR:-./var/spool}
export BRIDGE_TOPIC_REPLICATION=${BRIDGE_TOPIC_REPLICATION:-1}  # the local broker is one node
export SIMULATOR_API_KEYS=$BRIDGE_SPOTLER_API_KEY
export SIMULATOR_WEBHOOK_URL=${SIMULATOR_WEBHOOK_URL:-http://127.0.0.1:${BRIDGE_HTTP_PORT:-8080}/webhooks}
export SIMULATOR_WEBHOOK_HEADERS="{\"Authorization\": \"Bearer ${BRIDGE_WEBHOOK_TOKENS%%,*}\"}"
# Receipts a second after each send: ingress has read the send log by then and names the command.
export SIMULATOR_RECEIPT_DELAY=${SIMULATOR_RECEIPT_DELAY:-1}

bash scripts/kafka.sh up
# The topics first, so the first start finds them (no "Topic not found" on a fresh broker).
"$PY" -m bridge topics ensure
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
}
trap cleanup EXIT INT TERM
"$PY" -m bridge simulator & pids+=($!)
"$PY" -m bridge serve & pids+=($!)
cat >&2 <<MSG

  spotler-bridge is running:
    webhooks   POST http://127.0.0.1:8080/webhooks   (Authorization: Bearer ${BRIDGE_WEBHOOK_TOKENS%%,*})
    ops        http://127.0.0.1:9090/metrics  /healthz  /readyz
    simulator  http://127.0.0.1:8800/v3  (API key ${BRIDGE_SPOTLER_API_KEY}; admin under /_sim)
    kafka      ${BRIDGE_KAFKA_BOOTSTRAP_SERVERS}
  Watch the topics in another terminal:  .venv/bin/bridge tail --from-beginning
  Ctrl-C to stop.

MSG
wait -n "${pids[@]}"
