#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker+controller) for tests and local runs.
# The broker jars come from Maven Central (scripts/kafka/pom.xml); only `java` (17+) and, for
# the first download, `mvn` are needed.  No Docker, no tarball.
#
#   scripts/kafka.sh up       fetch jars if needed, wipe + format storage, start, wait until ready;
#                             last stdout line: KAFKA_BOOTSTRAP=127.0.0.1:<port>.  Idempotent.
#   scripts/kafka.sh down     stop (SIGTERM, SIGKILL after KAFKA_STOP_TIMEOUT s) and delete the data
#   scripts/kafka.sh stop     stop but keep the data (for fault tests)
#   scripts/kafka.sh start    start again on the existing data (after `stop`), wait until ready
#   scripts/kafka.sh status   prints running/stopped; exit 0 if running, 1 if not
#   scripts/kafka.sh logs [N] last N (default 100) lines of the server log
#   scripts/kafka.sh fetch    only download the jars into the cache
#
# Environment:
#   KAFKA_PORT (9092)               PLAINTEXT listener on 127.0.0.1 (used by `up`; `start` keeps
#   KAFKA_CONTROLLER_PORT (9093)    the ports the work dir was set up with)
#   KAFKA_WORK (<repo>/.kafka)      config, data, logs, pid file. One broker per work dir.
#   KAFKA_CACHE (~/.cache/spotler-bridge/kafka-<version>)   the jars
#   KAFKA_START_TIMEOUT (90)        seconds to wait for readiness
#   KAFKA_STOP_TIMEOUT (30)         seconds to wait after SIGTERM before SIGKILL
#   KAFKA_HEAP_OPTS (-Xms256m -Xmx512m), KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_OPTS (extra JVM args)
#   KAFKA_LOG_LEVEL (INFO)          root log level of the broker log
#   KAFKA_CLUSTER_ID                fixed 22-char base64url id (default: the Kafka docs' example)
#   JAVA                            java binary (default: $JAVA_HOME/bin/java, then java on PATH)
#   KAFKA_MVN_ARGS                  extra mvn arguments for the fetch (e.g. -Dmaven.repo.local=...)
#
# Startup is ~3-6 s with cached jars. After a SIGKILL (not `stop`), `start` takes ~9 s longer:
# the controller refuses the new registration until the old broker session (9 s) expires.
#
# Progress messages go to stderr; stdout carries only the KAFKA_BOOTSTRAP=... line.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
POM="$SCRIPT_DIR/kafka/pom.xml"

KAFKA_VERSION=$(sed -n 's:.*<kafka\.version>\([^<]*\)</kafka\.version>.*:\1:p' "$POM" | head -n1)
[ -n "$KAFKA_VERSION" ] || { echo "kafka.sh: cannot read <kafka.version> from $POM" >&2; exit 2; }

HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
CACHE=${KAFKA_CACHE:-$HOME/.cache/spotler-bridge/kafka-$KAFKA_VERSION}
WORK=${KAFKA_WORK:-$REPO_DIR/.kafka}
START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
case "$WORK" in /*) ;; *) WORK="$PWD/$WORK" ;; esac     # the JVM and pid checks need
case "$CACHE" in /*) ;; *) CACHE="$PWD/$CACHE" ;; esac  # absolute paths
CLUSTER_ID=${KAFKA_CLUSTER_ID:-MkU3OEVBNTcwNTJENDM2Qk}

CONF="$WORK/server.properties"
LOG4J_CONF="$WORK/log4j2.properties"
DATA="$WORK/data"
LOGDIR="$WORK/logs"
LOG="$LOGDIR/server.log"
PIDFILE="$WORK/kafka.pid"
READY_LINE="Kafka Server started"

say() { echo "kafka.sh: $*" >&2; }
die() { echo "kafka.sh: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- prerequisites

find_java() {
  if [ -n "${JAVA:-}" ]; then
    :
  elif [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    JAVA="$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    JAVA=java
  else
    die "java not found: install a Java 17+ runtime (e.g. apt-get install openjdk-17-jre-headless) or set JAVA/JAVA_HOME"
  fi
  local ver major
  ver=$("$JAVA" -version 2>&1 | sed -n 's/.* version "\([^"]*\)".*/\1/p' | head -n1) || true
  major=${ver%%.*}
  [ "$major" = 1 ] && major=$(echo "$ver" | cut -d. -f2)
  if ! [[ "$major" =~ ^[0-9]+$ ]]; then
    die "cannot determine the version of '$JAVA' ($("$JAVA" -version 2>&1 | head -n1))"
  fi
  [ "$major" -ge 17 ] || die "Kafka $KAFKA_VERSION needs Java 17+, but '$JAVA' is Java $ver"
}

pom_sum() { sha256sum "$POM" | cut -d' ' -f1; }

cache_ok() {
  [ -f "$CACHE/.complete" ] && [ "$(cat "$CACHE/.complete")" = "$(pom_sum)" ] \
    && [ -f "$CACHE/kafka_2.13-$KAFKA_VERSION.jar" ]
}

# Download the broker classpath into $CACHE. Writes into a temp dir next to it and renames it
# into place only when Maven succeeded, so an interrupted download is never taken for a cache.
fetch() {
  cache_ok && return 0
  local parent tmp mlog
  parent=$(dirname "$CACHE")
  mkdir -p "$parent"
  # Serialize concurrent fetches (parallel test workers) when flock exists.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE.lock"
    flock 9
    if cache_ok; then exec 9>&-; return 0; fi
  fi
  command -v mvn >/dev/null 2>&1 \
    || die "mvn not found: the Kafka jars are not cached in $CACHE yet and Maven is needed to fetch them (apt-get install maven)"
  tmp=$(mktemp -d "$parent/.kafka-$KAFKA_VERSION.fetch.XXXXXX")
  mlog="$tmp.log"
  say "fetching Kafka $KAFKA_VERSION jars from Maven Central into $CACHE ..."
  # shellcheck disable=SC2086
  if ! mvn -q -B -f "$POM" ${KAFKA_MVN_ARGS:-} dependency:copy-dependencies \
        "-Dkafka.libs.dir=$tmp/libs" >"$mlog" 2>&1; then
    tail -n 40 "$mlog" >&2 || true
    rm -rf "$tmp" "$mlog"
    die "mvn dependency:copy-dependencies failed (see above)"
  fi
  if [ ! -f "$tmp/libs/kafka_2.13-$KAFKA_VERSION.jar" ] || ! ls "$tmp/libs"/log4j-slf4j*-impl-*.jar >/dev/null 2>&1; then
    rm -rf "$tmp" "$mlog"
    die "mvn succeeded but the broker jars are incomplete"
  fi
  pom_sum >"$tmp/libs/.complete"
  if [ -e "$CACHE" ]; then
    rm -rf "$CACHE.old"; mv "$CACHE" "$CACHE.old"; rm -rf "$CACHE.old"
  fi
  mv "$tmp/libs" "$CACHE"
  rm -rf "$tmp" "$mlog"
  say "cached $(find "$CACHE" -name '*.jar' | wc -l) jars in $CACHE"
  if command -v flock >/dev/null 2>&1; then exec 9>&-; fi
}

# ---------------------------------------------------------------- process state

is_our_broker() {  # pid -> the process is kafka.Kafka running this work dir's config
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 1
  if [ -r "/proc/$pid/cmdline" ]; then
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$CONF" || return 1
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF kafka.Kafka || return 1
  fi
}

# Prints the pid of this work dir's broker if it is running; fails otherwise.
broker_pid() {
  local pid p
  if [ -f "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE" 2>/dev/null) || pid=
    if [[ "$pid" =~ ^[0-9]+$ ]] && is_our_broker "$pid"; then
      echo "$pid"
      return 0
    fi
  fi
  # Pid file missing or stale (e.g. the work dir was deleted under a running broker):
  # look for a JVM running exactly this config (Linux /proc only).
  [ -d /proc/self ] || return 1
  while IFS= read -r p; do
    pid=${p#/proc/}; pid=${pid%/cmdline}
    if is_our_broker "$pid"; then
      if [ -d "$WORK" ]; then echo "$pid" >"$PIDFILE"; fi
      echo "$pid"
      return 0
    fi
  done < <(grep -laF -- "$CONF" /proc/[0-9]*/cmdline 2>/dev/null || true)
  return 1
}

conf_port() {  # PLAINTEXT port from the work dir's config
  sed -n 's#^advertised\.listeners=PLAINTEXT://[^:]*:\([0-9]*\).*#\1#p' "$CONF" 2>/dev/null | head -n1
}
conf_cport() {
  sed -n 's#^controller\.quorum\.voters=[0-9]*@[^:]*:\([0-9]*\).*#\1#p' "$CONF" 2>/dev/null | head -n1
}

port_open() {  # port_open PORT -> success if something accepts TCP connections on 127.0.0.1:PORT
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

check_ports() {
  local p
  for p in "$@"; do
    if port_open "$p"; then
      die "port 127.0.0.1:$p is already in use by another process (set KAFKA_PORT / KAFKA_CONTROLLER_PORT, or stop it)"
    fi
  done
}

# ---------------------------------------------------------------- config

write_config() {
  local port=$1 cport=$2
  mkdir -p "$WORK" "$LOGDIR"
  cat >"$CONF" <<EOF
# Generated by scripts/kafka.sh ($(date -u +%Y-%m-%dT%H:%M:%SZ)); rewritten by every \`up\`.
# Single combined KRaft node with a static quorum, for tests.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA

# Topics: 3 partitions so per-key ordering across partitions is meaningful.
num.partitions=3
auto.create.topics.enable=true
default.replication.factor=1
min.insync.replicas=1

# Internal topics: one partition, RF 1 (defaults are 50 partitions / RF 3).
offsets.topic.num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Fast consumer groups in tests.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000

num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
# log.flush.* and log.retention.* are left at their defaults.
EOF
  cat >"$LOG4J_CONF" <<EOF
# Generated by scripts/kafka.sh. Everything goes to stdout, which is redirected to logs/server.log.
status = warn
name = kafka-test-broker
# No log4j shutdown hook: Console output is flushed per line anyway, and with the hook log4j
# prints "Unable to register Log4j shutdown hook because JVM is shutting down" on SIGTERM.
shutdownHook = disable
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ${KAFKA_LOG_LEVEL:-INFO}
rootLogger.appenderRef.out.ref = OUT
# The readiness line "$READY_LINE" is logged at INFO by this logger: keep it at INFO.
logger.ready.name = kafka.server.KafkaRaftServer
logger.ready.level = INFO
# Very chatty at INFO.
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
EOF
}

format_storage() {
  local out="$LOGDIR/format.log"
  rm -rf "$DATA"
  mkdir -p "$DATA"
  if ! "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        "-Dlog4j2.configurationFile=$LOG4J_CONF" -cp "$CACHE/*" \
        kafka.tools.StorageTool format -t "$CLUSTER_ID" -c "$CONF" >"$out" 2>&1; then
    cat "$out" >&2
    die "kafka-storage format failed"
  fi
}

# ---------------------------------------------------------------- start / stop

launch_and_wait() {
  local port cport pid deadline
  port=$(conf_port); cport=$(conf_cport)
  if [ -z "$port" ] || [ -z "$cport" ]; then die "cannot read the ports from $CONF"; fi
  check_ports "$port" "$cport"

  local heap perf extra
  read -r -a heap <<<"${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
  read -r -a perf <<<"${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true}"
  read -r -a extra <<<"${KAFKA_OPTS:-}"

  mkdir -p "$LOGDIR"
  [ -f "$LOG" ] && mv -f "$LOG" "$LOG.1"   # readiness is polled on a fresh log
  : >"$LOG"
  rm -f "$PIDFILE"

  local -a detach=()
  command -v setsid >/dev/null 2>&1 && detach=(setsid)
  # The inner bash writes its own pid and execs java, so the pid file holds the JVM's pid
  # (also when setsid has to fork). setsid: Ctrl-C in the caller's terminal does not reach it.
  # shellcheck disable=SC2016
  "${detach[@]}" nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
      "$JAVA" "${heap[@]}" "${perf[@]}" "${extra[@]}" \
      "-Dlog4j2.configurationFile=$LOG4J_CONF" "-Dkafka.logs.dir=$LOGDIR" \
      -cp "$CACHE/*" kafka.Kafka "$CONF" >>"$LOG" 2>&1 </dev/null &

  deadline=$((SECONDS + START_TIMEOUT))
  while [ ! -s "$PIDFILE" ]; do
    [ $SECONDS -lt $deadline ] || die "the broker process did not start"
    sleep 0.05
  done
  pid=$(cat "$PIDFILE")
  say "started broker pid $pid (Kafka $KAFKA_VERSION, work dir $WORK), waiting for \"$READY_LINE\" ..."

  until grep -qF "$READY_LINE" "$LOG" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "----- last lines of $LOG -----" >&2; tail -n 60 "$LOG" >&2 || true
      rm -f "$PIDFILE"
      die "the broker JVM exited during startup"
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "----- last lines of $LOG -----" >&2; tail -n 60 "$LOG" >&2 || true
      stop_broker >/dev/null 2>&1 || true
      die "broker not ready after ${START_TIMEOUT}s (stopped it)"
    fi
    sleep 0.1
  done
  until port_open "$port"; do
    if [ $SECONDS -ge $deadline ] || ! kill -0 "$pid" 2>/dev/null; then
      tail -n 60 "$LOG" >&2 || true
      stop_broker >/dev/null 2>&1 || true
      die "broker logged \"$READY_LINE\" but 127.0.0.1:$port does not accept connections"
    fi
    sleep 0.1
  done
  say "ready"
  echo "KAFKA_BOOTSTRAP=127.0.0.1:$port"
}

stop_broker() {
  local pid i
  if ! pid=$(broker_pid); then
    rm -f "$PIDFILE"
    return 1
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "broker pid $pid still running after ${STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$PIDFILE"
  say "stopped broker pid $pid"
}

# ---------------------------------------------------------------- commands

cmd_up() {
  find_java
  local pid
  if pid=$(broker_pid); then
    say "broker already running (pid $pid, work dir $WORK)"
    echo "KAFKA_BOOTSTRAP=127.0.0.1:$(conf_port)"
    return 0
  fi
  fetch
  check_ports "${KAFKA_PORT:-9092}" "${KAFKA_CONTROLLER_PORT:-9093}"
  write_config "${KAFKA_PORT:-9092}" "${KAFKA_CONTROLLER_PORT:-9093}"
  format_storage
  launch_and_wait
}

cmd_start() {
  find_java
  local pid
  if pid=$(broker_pid); then
    say "broker already running (pid $pid, work dir $WORK)"
    echo "KAFKA_BOOTSTRAP=127.0.0.1:$(conf_port)"
    return 0
  fi
  if [ ! -f "$CONF" ] || [ ! -f "$DATA/meta.properties" ]; then
    die "no formatted broker in $WORK: run '$0 up' first (start only restarts after stop)"
  fi
  if [ -n "${KAFKA_PORT:-}" ] && [ "$KAFKA_PORT" != "$(conf_port)" ]; then
    say "note: keeping port $(conf_port) from $CONF (KAFKA_PORT=$KAFKA_PORT applies to 'up')"
  fi
  fetch
  launch_and_wait
}

cmd_stop() {
  stop_broker || say "no broker running (work dir $WORK)"
}

cmd_down() {
  stop_broker || say "no broker running (work dir $WORK)"
  if [ -d "$DATA" ]; then
    rm -rf "$DATA"
    say "removed $DATA (logs kept in $LOGDIR)"
  fi
}

cmd_status() {
  local pid
  if pid=$(broker_pid); then
    echo "running (pid $pid, KAFKA_BOOTSTRAP=127.0.0.1:$(conf_port), work dir $WORK)"
    return 0
  fi
  if [ -f "$DATA/meta.properties" ]; then
    echo "stopped (data kept in $DATA)"
  else
    echo "stopped"
  fi
  return 1
}

cmd_logs() {
  local n=${1:-100}
  [ -f "$LOG" ] || die "no log at $LOG"
  tail -n "$n" "$LOG"
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  logs) shift; cmd_logs "$@" ;;
  fetch) fetch; echo "$CACHE" ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
