#!/usr/bin/env bash
# Run the whole test suite against a real Kafka broker started for the run and stopped after it.
# The broker gets its own work dir and port, so a local `make run` broker is never touched.
#   scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

export KAFKA_WORK=${KAFKA_WORK:-$PWD/.kafka-test}
export KAFKA_PORT=${TEST_KAFKA_PORT:-39092}
export KAFKA_CONTROLLER_PORT=${TEST_KAFKA_CONTROLLER_PORT:-39093}
export BRIDGE_TEST_KAFKA="127.0.0.1:$KAFKA_PORT"
PY=${PY:-.venv/bin/python}

cleanup() { bash scripts/kafka.sh down >/dev/null 2>&1 || true; }
trap cleanup EXIT
bash scripts/kafka.sh up
"$PY" -m pytest "$@"
