#!/usr/bin/env bash
# Local Apache Kafka (KRaft, combined broker+controller nodes) for tests and local runs: one
# PLAINTEXT node by default, a three-node cluster (KAFKA_NODES=3), or one SASL_SSL node
# (KAFKA_SECURITY=SASL_SSL). The broker jars come from Maven Central (scripts/kafka/pom.xml); only
# `java` (17+, with `keytool` for SASL_SSL) and, for the first download, `mvn` are needed.
# No Docker, no tarball.
#
#   scripts/kafka.sh up         fetch jars if needed, wipe + format storage, start, wait until ready;
#                               stdout: KAFKA_BOOTSTRAP=<host:port,...> (and, for SASL_SSL, the
#                               KAFKA_SSL_CAFILE=, KAFKA_SASL_USERNAME= lines). Idempotent.
#   scripts/kafka.sh down       stop (SIGTERM, SIGKILL after KAFKA_STOP_TIMEOUT s; a cluster: SIGKILL),
#                               delete the data
#   scripts/kafka.sh stop [N]   stop (SIGTERM: controlled shutdown) but keep the data; N: node N only
#   scripts/kafka.sh kill [N]   SIGKILL (a crash); N: node N only
#   scripts/kafka.sh start [N]  start again on the existing data (after stop/kill), wait until ready
#   scripts/kafka.sh status     prints running/stopped per node; exit 0 if all run, 1 if not
#   scripts/kafka.sh logs [N]   last N (default 100) lines of the server log (node: KAFKA_NODE)
#   scripts/kafka.sh fetch      only download the jars into the cache
#
# `up` decides the shape of the work dir (KAFKA_NODES, KAFKA_SECURITY); the other commands read it
# back from there.
#
# Environment:
#   KAFKA_PORT (9092)               client listener on 127.0.0.1 (used by `up`; `start` keeps the
#   KAFKA_CONTROLLER_PORT (9093)    ports the work dir was set up with). Node i of a cluster uses
#                                   KAFKA_PORT+i-1 and KAFKA_CONTROLLER_PORT+i-1 (the controller
#                                   ports default to KAFKA_PORT+KAFKA_NODES... in a cluster).
#   KAFKA_NODES (1)                 3: a three-node cluster (controller quorum of the three, every
#                                   node broker+controller), default.replication.factor=3,
#                                   min.insync.replicas=2, internal topics replicated 3 times.
#   KAFKA_SECURITY (PLAINTEXT)      SASL_SSL: one node whose client listener is SASL_SSL. A CA and
#                                   a broker certificate (SAN 127.0.0.1, localhost) are made by
#                                   keytool at `up` in <work>/tls; the CA is <work>/tls/ca.pem.
#                                   Users: a SCRAM-SHA-512 user created by `kafka-storage format
#                                   --add-scram`, and the same name and password for PLAIN.
#   KAFKA_SASL_USERNAME (bridge), KAFKA_SASL_PASSWORD (bridge-secret)   that user (SASL_SSL)
#   KAFKA_WORK (<repo>/.kafka)      config, data, logs, pid files. One broker or cluster per dir.
#   KAFKA_CACHE (~/.cache/spotler-bridge/kafka-<version>)   the jars
#   KAFKA_START_TIMEOUT (90)        seconds to wait for readiness
#   KAFKA_STOP_TIMEOUT (30)         seconds to wait after SIGTERM before SIGKILL
#   KAFKA_HEAP_OPTS (-Xms256m -Xmx512m; in a cluster -Xms128m -Xmx384m per node),
#   KAFKA_JVM_PERFORMANCE_OPTS (G1; in a cluster the serial GC and the C1 JIT only, to start
#   faster on small machines), KAFKA_OPTS (extra JVM args)
#   KAFKA_LOG_LEVEL (INFO)          root log level of the broker log
#   KAFKA_CLUSTER_ID                fixed 22-char base64url id (default: the Kafka docs' example)
#   JAVA                            java binary (default: $JAVA_HOME/bin/java, then java on PATH)
#   KAFKA_MVN_ARGS                  extra mvn arguments for the fetch (e.g. -Dmaven.repo.local=...)
#
# Startup is ~3-6 s with cached jars (a cluster ~10-20 s on 2 cores). After a SIGKILL (not `stop`),
# `start` takes ~9 s longer: the controller refuses the new registration until the old broker
# session (9 s) expires.
#
# Progress messages go to stderr; stdout carries only the KEY=value lines above.
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

READY_LINE="Kafka Server started"
SHAPE="$WORK/shape"   # written by `up` for a cluster or SASL_SSL node: NODES=<n> SECURITY=<p>
TLS="$WORK/tls"
SASL_USER=${KAFKA_SASL_USERNAME:-bridge}
SASL_PASS=${KAFKA_SASL_PASSWORD:-bridge-secret}
NODES=1
SECURITY=PLAINTEXT

# The shape of an existing work dir (commands other than `up`).
read_shape() {
  if [ -f "$SHAPE" ]; then
    NODES=$(sed -n 's/^NODES=//p' "$SHAPE")
    SECURITY=$(sed -n 's/^SECURITY=//p' "$SHAPE")
  fi
}

# Per-node paths. A single node keeps the historical layout (<work>/server.properties, ...);
# node i of a cluster lives in <work>/node<i>/.
use_node() {
  local dir=$WORK
  [ "$NODES" -gt 1 ] && dir="$WORK/node$1"
  NODE=$1
  CONF="$dir/server.properties"
  LOG4J_CONF="$dir/log4j2.properties"
  DATA="$dir/data"
  LOGDIR="$dir/logs"
  LOG="$LOGDIR/server.log"
  PIDFILE="$dir/kafka.pid"
}
use_node 1

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

conf_port() {  # the client listener's port from the node's config
  sed -n 's#^advertised\.listeners=[A-Z_]*://[^:]*:\([0-9]*\).*#\1#p' "$CONF" 2>/dev/null | head -n1
}
conf_cport() {  # the node's own controller port
  sed -n 's#^listeners=.*CONTROLLER://[^:]*:\([0-9]*\).*#\1#p' "$CONF" 2>/dev/null | head -n1
}

bootstrap() {  # every node's client address, comma-separated
  local i list=""
  for ((i = 1; i <= NODES; i++)); do
    use_node "$i"
    list="$list${list:+,}127.0.0.1:$(conf_port)"
  done
  echo "$list"
}

print_endpoints() {
  echo "KAFKA_BOOTSTRAP=$(bootstrap)"
  if [ "$SECURITY" = SASL_SSL ]; then
    echo "KAFKA_SSL_CAFILE=$TLS/ca.pem"
    echo "KAFKA_SASL_USERNAME=$SASL_USER"
  fi
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
# ---------------------------------------------------------------- config

write_config() {  # write_config PORT CONTROLLER_PORT VOTERS, for the node chosen by use_node
  local port=$1 cport=$2 voters=$3 rf=1 isr=1 lname=PLAINTEXT shape="Single combined KRaft node"
  if [ "$NODES" -gt 1 ]; then rf=3; isr=2; shape="Node $NODE of a $NODES-node KRaft cluster (each node broker+controller)"; fi
  [ "$SECURITY" = SASL_SSL ] && lname=SASL_SSL
  mkdir -p "$(dirname "$CONF")" "$LOGDIR"
  cat >"$CONF" <<EOF
# Generated by scripts/kafka.sh ($(date -u +%Y-%m-%dT%H:%M:%SZ)); rewritten by every \`up\`.
# $shape with a static quorum, for tests.
process.roles=broker,controller
node.id=$NODE
controller.quorum.voters=$voters
listeners=$lname://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=$lname://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=$lname
listener.security.protocol.map=CONTROLLER:PLAINTEXT,$lname:$lname
log.dirs=$DATA

# Topics: 3 partitions so per-key ordering across partitions is meaningful.
num.partitions=3
auto.create.topics.enable=true
default.replication.factor=$rf
min.insync.replicas=$isr

# Internal topics: one partition, RF $rf (defaults are 50 partitions / RF 3).
offsets.topic.num.partitions=1
offsets.topic.replication.factor=$rf
transaction.state.log.num.partitions=1
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.num.partitions=1
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr

# Fast consumer groups in tests.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000

num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
# log.flush.* and log.retention.* are left at their defaults.
EOF
  if [ "$SECURITY" = SASL_SSL ]; then
    cat >>"$CONF" <<EOF

# SASL_SSL: TLS with the certificate made at \`up\` ($TLS). SCRAM-SHA-512 users live in the
# metadata log (kafka-storage format --add-scram); PLAIN users are the user_<name> entries below.
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$SASL_USER" password="$SASL_PASS" user_$SASL_USER="$SASL_PASS";
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$SASL_USER" password="$SASL_PASS";
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS/broker.p12
ssl.keystore.password=$STOREPASS
ssl.key.password=$STOREPASS
ssl.truststore.type=PKCS12
ssl.truststore.location=$TLS/truststore.p12
ssl.truststore.password=$STOREPASS
EOF
  fi
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
  local -a scram=()
  if [ "$SECURITY" = SASL_SSL ]; then
    scram=(--add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASS]")
  fi
  rm -rf "$DATA"
  mkdir -p "$DATA"
  if ! "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        "-Dlog4j2.configurationFile=$LOG4J_CONF" -cp "$CACHE/*" \
        kafka.tools.StorageTool format -t "$CLUSTER_ID" -c "$CONF" "${scram[@]}" >"$out" 2>&1; then
    cat "$out" >&2
    die "kafka-storage format failed"
  fi
}

STOREPASS=${KAFKA_STORE_PASSWORD:-changeit-test-only}

# A throw-away CA, and a broker certificate it signed for 127.0.0.1 and localhost, made with the
# JDK's keytool: $TLS/ca.pem (for clients), broker.p12 (key store), truststore.p12 (the CA).
make_tls() {
  local keytool
  keytool=$(dirname "$(readlink -f "$(command -v "$JAVA")")")/keytool
  [ -x "$keytool" ] || keytool=$(command -v keytool) \
    || die "keytool not found (it comes with the JDK): needed for KAFKA_SECURITY=SASL_SSL"
  local -a kt=("$keytool" -J-XX:TieredStopAtLevel=1 -J-XX:+UseSerialGC)
  local out="$WORK/tls.log" dn="O=spotler-bridge tests"
  rm -rf "$TLS"
  mkdir -p "$TLS"
  {
    "${kt[@]}" -genkeypair -alias ca -keyalg RSA -keysize 2048 -validity 30 \
      -dname "CN=spotler-bridge test CA,$dn" -ext bc:c -ext ku:c=keyCertSign,cRLSign \
      -keystore "$TLS/ca.p12" -storetype PKCS12 -storepass "$STOREPASS" &&
    "${kt[@]}" -exportcert -rfc -alias ca -keystore "$TLS/ca.p12" -storepass "$STOREPASS" \
      -file "$TLS/ca.pem" &&
    "${kt[@]}" -genkeypair -alias broker -keyalg RSA -keysize 2048 -validity 30 \
      -dname "CN=localhost,$dn" -keystore "$TLS/broker.p12" -storetype PKCS12 \
      -storepass "$STOREPASS" &&
    "${kt[@]}" -certreq -alias broker -keystore "$TLS/broker.p12" -storepass "$STOREPASS" \
      -file "$TLS/broker.csr" &&
    "${kt[@]}" -gencert -alias ca -keystore "$TLS/ca.p12" -storepass "$STOREPASS" -validity 30 \
      -infile "$TLS/broker.csr" -outfile "$TLS/broker.pem" -rfc \
      -ext san=ip:127.0.0.1,dns:localhost -ext ku:c=digitalSignature,keyEncipherment \
      -ext eku=serverAuth,clientAuth &&
    "${kt[@]}" -importcert -noprompt -alias ca -file "$TLS/ca.pem" \
      -keystore "$TLS/broker.p12" -storepass "$STOREPASS" &&
    "${kt[@]}" -importcert -alias broker -file "$TLS/broker.pem" \
      -keystore "$TLS/broker.p12" -storepass "$STOREPASS" &&
    "${kt[@]}" -importcert -noprompt -alias ca -file "$TLS/ca.pem" \
      -keystore "$TLS/truststore.p12" -storetype PKCS12 -storepass "$STOREPASS"
  } >"$out" 2>&1 || { cat "$out" >&2; die "keytool failed to make the test certificates"; }
  say "made a CA ($TLS/ca.pem) and a broker certificate for 127.0.0.1/localhost"
}

# ---------------------------------------------------------------- start / stop

# Start the chosen node's JVM (does not wait).
launch_node() {
  local port cport deadline
  port=$(conf_port); cport=$(conf_cport)
  if [ -z "$port" ] || [ -z "$cport" ]; then die "cannot read the ports from $CONF"; fi
  check_ports "$port" "$cport"

  local heap perf extra default_heap="-Xms256m -Xmx512m"
  local default_perf="-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true"
  if [ "$NODES" -gt 1 ]; then
    # Three JVMs on a small machine: the C1 JIT alone and the serial collector start a node about
    # twice as fast and cost less CPU; peak throughput is not what a test cluster is for.
    default_heap="-Xms128m -Xmx384m"
    default_perf="-server -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true"
  fi
  read -r -a heap <<<"${KAFKA_HEAP_OPTS:-$default_heap}"
  read -r -a perf <<<"${KAFKA_JVM_PERFORMANCE_OPTS:-$default_perf}"
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
  say "started broker pid $(cat "$PIDFILE") (Kafka $KAFKA_VERSION, $(node_name), work dir $WORK), waiting for \"$READY_LINE\" ..."
}

node_name() { if [ "$NODES" -gt 1 ]; then echo "node $NODE"; else echo "single node"; fi; }

# Wait until the chosen node (started by launch_node within this run) is ready.
wait_node() {
  local port pid deadline
  port=$(conf_port)
  pid=$(cat "$PIDFILE")
  deadline=$((SECONDS + START_TIMEOUT))
  until grep -qF "$READY_LINE" "$LOG" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "----- last lines of $LOG -----" >&2; tail -n 60 "$LOG" >&2 || true
      rm -f "$PIDFILE"
      die "the broker JVM ($(node_name)) exited during startup"
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "----- last lines of $LOG -----" >&2; tail -n 60 "$LOG" >&2 || true
      stop_broker >/dev/null 2>&1 || true
      die "broker ($(node_name)) not ready after ${START_TIMEOUT}s (stopped it)"
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
  say "ready ($(node_name))"
}

# Send SIGNAL to the chosen nodes' brokers at once, then wait for all of them to exit
# (SIGKILL after KAFKA_STOP_TIMEOUT s). Stopping the nodes of a cluster one after the other would
# leave the last ones waiting for a controller quorum that is already gone.
signal_nodes() {  # signal_nodes SIGNAL NODE...
  local sig=$1 i pid n
  shift
  local -a pids=() names=()
  for i in "$@"; do
    use_node "$i"
    if pid=$(broker_pid); then
      kill "-$sig" "$pid" 2>/dev/null || true
      pids+=("$pid"); names+=("$(node_name)")
    else
      rm -f "$PIDFILE"
      say "no broker running ($(node_name), work dir $WORK)"
    fi
  done
  for ((n = 0; n < ${#pids[@]}; n++)); do
    pid=${pids[$n]}
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "broker pid $pid still running after ${STOP_TIMEOUT}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    say "stopped broker pid $pid (${names[$n]}, $([ "$sig" = KILL ] && echo SIGKILL || echo SIGTERM))"
  done
  for i in "$@"; do use_node "$i"; rm -f "$PIDFILE"; done
}

stop_broker() {  # the chosen node; fails if it was not running
  local pid
  if ! pid=$(broker_pid); then
    rm -f "$PIDFILE"
    return 1
  fi
  signal_nodes TERM "$NODE"
}

# ---------------------------------------------------------------- commands

all_nodes() { seq 1 "$NODES"; }

# Which nodes a command applies to (into PICKED): the one given, or all.
pick_nodes() {
  if [ -n "${1:-}" ]; then
    [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le "$NODES" ] \
      || die "no node '$1' in $WORK (nodes: 1..$NODES)"
    PICKED=("$1")
  else
    read -r -a PICKED <<<"$(all_nodes | tr '\n' ' ')"
  fi
}

all_running() {
  local i
  for i in $(all_nodes); do
    use_node "$i"
    broker_pid >/dev/null || return 1
  done
}

cmd_up() {
  find_java
  local want_nodes=${KAFKA_NODES:-1} want_security
  want_security=$(echo "${KAFKA_SECURITY:-PLAINTEXT}" | tr '[:lower:]' '[:upper:]')
  [[ "$want_nodes" =~ ^[1-9]$ ]] || die "KAFKA_NODES must be 1..9, got '$want_nodes'"
  case "$want_security" in PLAINTEXT | SASL_SSL) ;; *)
    die "KAFKA_SECURITY must be PLAINTEXT or SASL_SSL, got '$want_security'" ;;
  esac
  if [ "$want_nodes" -gt 1 ] && [ "$want_security" != PLAINTEXT ]; then
    die "KAFKA_SECURITY=$want_security is for a single node (KAFKA_NODES=1)"
  fi
  read_shape
  if [ "$NODES" = "$want_nodes" ] && [ "$SECURITY" = "$want_security" ] && all_running; then
    say "already running (work dir $WORK)"
    print_endpoints
    return 0
  fi
  # Whatever ran here before (another shape, or part of a cluster) goes first.
  signal_nodes TERM $(all_nodes) 2>/dev/null
  NODES=$want_nodes
  SECURITY=$want_security

  local port=${KAFKA_PORT:-9092} cport i voters=""
  if [ "$NODES" -gt 1 ]; then cport=${KAFKA_CONTROLLER_PORT:-$((port + NODES))}; else cport=${KAFKA_CONTROLLER_PORT:-9093}; fi
  if [ "$cport" -lt $((port + NODES)) ] && [ "$port" -lt $((cport + NODES)) ]; then
    die "client ports $port.. and controller ports $cport.. overlap for $NODES nodes"
  fi
  fetch
  for ((i = 0; i < NODES; i++)); do check_ports $((port + i)) $((cport + i)); done
  for ((i = 1; i <= NODES; i++)); do voters="$voters${voters:+,}$i@127.0.0.1:$((cport + i - 1))"; done

  mkdir -p "$WORK"
  rm -f "$SHAPE"
  if [ "$NODES" -gt 1 ] || [ "$SECURITY" != PLAINTEXT ]; then
    printf 'NODES=%s\nSECURITY=%s\n' "$NODES" "$SECURITY" >"$SHAPE"
  fi
  [ "$SECURITY" = SASL_SSL ] && make_tls
  for ((i = 1; i <= NODES; i++)); do
    use_node "$i"
    write_config $((port + i - 1)) $((cport + i - 1)) "$voters"
    format_storage
  done
  for i in $(all_nodes); do use_node "$i"; launch_node; done
  for i in $(all_nodes); do use_node "$i"; wait_node; done
  print_endpoints
}

cmd_start() {
  find_java
  read_shape
  local i pid
  local -a launched=()
  pick_nodes "${1:-}"
  fetch
  for i in "${PICKED[@]}"; do
    use_node "$i"
    if pid=$(broker_pid); then
      say "broker already running ($(node_name), pid $pid, work dir $WORK)"
      continue
    fi
    if [ ! -f "$CONF" ] || [ ! -f "$DATA/meta.properties" ]; then
      die "no formatted broker in $WORK ($(node_name)): run '$0 up' first (start only restarts after stop)"
    fi
    if [ "$NODES" = 1 ] && [ -n "${KAFKA_PORT:-}" ] && [ "$KAFKA_PORT" != "$(conf_port)" ]; then
      say "note: keeping port $(conf_port) from $CONF (KAFKA_PORT=$KAFKA_PORT applies to 'up')"
    fi
    launch_node
    launched+=("$i")
  done
  for i in "${launched[@]+"${launched[@]}"}"; do use_node "$i"; wait_node; done
  print_endpoints
}

cmd_stop() {
  read_shape
  pick_nodes "${1:-}"
  signal_nodes TERM "${PICKED[@]}"
}

cmd_kill() {
  read_shape
  pick_nodes "${1:-}"
  signal_nodes KILL "${PICKED[@]}"
}

cmd_down() {
  read_shape
  local i
  # The data goes anyway: a cluster's nodes are killed, since nodes stopped together wait out
  # their controlled shutdown (KAFKA_STOP_TIMEOUT) for a controller quorum that is leaving too.
  # shellcheck disable=SC2046
  if [ "$NODES" -gt 1 ]; then signal_nodes KILL $(all_nodes); else signal_nodes TERM 1; fi
  for i in $(all_nodes); do
    use_node "$i"
    if [ -d "$DATA" ]; then
      rm -rf "$DATA"
      say "removed $DATA (logs kept in $LOGDIR)"
    fi
  done
}

cmd_status() {
  read_shape
  local i pid rc=0
  for i in $(all_nodes); do
    use_node "$i"
    local who=""
    [ "$NODES" -gt 1 ] && who="node $i: "
    if pid=$(broker_pid); then
      echo "${who}running (pid $pid, KAFKA_BOOTSTRAP=127.0.0.1:$(conf_port), work dir $WORK)"
    elif [ -f "$DATA/meta.properties" ]; then
      echo "${who}stopped (data kept in $DATA)"; rc=1
    else
      echo "${who}stopped"; rc=1
    fi
  done
  return $rc
}

cmd_logs() {
  local n=${1:-100}
  read_shape
  pick_nodes "${KAFKA_NODE:-1}"
  use_node "${PICKED[0]}"
  [ -f "$LOG" ] || die "no log at $LOG"
  tail -n "$n" "$LOG"
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  kill) shift; cmd_kill "$@" ;;
  status) cmd_status ;;
  logs) shift; cmd_logs "$@" ;;
  fetch) fetch; echo "$CACHE" ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
