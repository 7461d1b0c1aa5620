#!/usr/bin/env bash
# Starts and stops a throwaway single-node Apache Kafka broker (KRaft: broker and controller in
# one JVM, no ZooKeeper) on free loopback ports, for osprey's Kafka tests.
#
#   scripts/kafka.sh start [RUN_DIR]   format a fresh log dir, start the broker, wait until it
#                                      answers, print OSPREY_TEST_KAFKA=127.0.0.1:PORT and write
#                                      the address to RUN_DIR/bootstrap
#   scripts/kafka.sh stop [RUN_DIR]    stop that broker (TERM, then KILL after 30 s) and
#                                      delete its data
#   scripts/kafka.sh status [RUN_DIR]  print the address and exit 0 if the broker is running
#
# RUN_DIR defaults to $OSPREY_KAFKA_RUN, else <repo>/.tools/kafka-run; each clone or worktree
# thus gets its own broker. The jars come from $OSPREY_TOOLS/kafka/jars (scripts/test fetches
# them; run scripts/test once, or `scripts/test --tools-only`, before using this by hand).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${OSPREY_TOOLS:-$HOME/.cache/osprey/tools}
JARS=$TOOLS/kafka/jars
CMD=${1:-}
RUN=${2:-${OSPREY_KAFKA_RUN:-$ROOT/.tools/kafka-run}}

say() { printf '[kafka.sh] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# A port nobody listens on right now. The broker binds it a few seconds later; the small race
# with another process is handled by retrying the whole start.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

running_pid() {
    [[ -f $RUN/pid ]] || return 1
    local pid
    pid=$(cat "$RUN/pid")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
    # Only ever our broker: a stale pid file must not make us signal an unrelated process.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $RUN/server.properties" || return 1
    echo "$pid"
}

stop() {
    local pid
    if pid=$(running_pid); then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "broker $pid ignored TERM for 30 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        say "stopped broker $pid"
    fi
    rm -rf "$RUN/data" "$RUN/pid" "$RUN/bootstrap"
}

# One attempt: returns 0 with the broker up, 1 if it died or never answered.
start_once() {
    local port cport
    port=$(free_port)
    cport=$(free_port)
    [[ $port != "$cport" ]] || return 1
    rm -rf "$RUN/data"
    mkdir -p "$RUN/data"
    cat >"$RUN/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$RUN/data
num.partitions=4
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
EOF
    cat >"$RUN/log4j2.properties" <<'EOF'
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = org.apache.kafka
logger.kafka.level = WARN
EOF
    local java_opts=(-Xms128m -Xmx768m -XX:+UseG1GC "-Dlog4j2.configurationFile=$RUN/log4j2.properties")
    local cluster_id
    cluster_id=$(java "${java_opts[@]}" -cp "$JARS/*" kafka.tools.StorageTool random-uuid 2>>"$RUN/broker.log" | tail -n 1)
    [[ -n $cluster_id ]] || { say "random-uuid printed nothing (see $RUN/broker.log)"; return 1; }
    if ! java "${java_opts[@]}" -cp "$JARS/*" kafka.tools.StorageTool format \
        -t "$cluster_id" -c "$RUN/server.properties" >>"$RUN/broker.log" 2>&1; then
        say "storage format failed (see $RUN/broker.log)"
        return 1
    fi
    # setsid: the broker gets its own session, so a Ctrl-C or the end of the caller's process
    # group does not half-kill it; `stop` ends it by pid.
    setsid java "${java_opts[@]}" -cp "$JARS/*" kafka.Kafka "$RUN/server.properties" \
        </dev/null >>"$RUN/broker.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$RUN/pid"
    # Ready = the broker lists topics through its client port (metadata quorum is up).
    # Bounded: 90 s at most.
    local deadline=$((SECONDS + 90))
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || { say "broker exited during start (see $RUN/broker.log)"; return 1; }
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            if timeout 60 java "${java_opts[@]}" -cp "$JARS/*" org.apache.kafka.tools.TopicCommand \
                --bootstrap-server "127.0.0.1:$port" --list >>"$RUN/broker.log" 2>&1; then
                echo "127.0.0.1:$port" >"$RUN/bootstrap"
                return 0
            fi
        fi
        sleep 0.5
    done
    say "broker did not answer within 90 s (see $RUN/broker.log)"
    return 1
}

start() {
    command -v java >/dev/null || die "java not found (scripts/test installs it)"
    compgen -G "$JARS/kafka_2.13-*.jar" >/dev/null || die "no Kafka jars in $JARS: run scripts/test first"
    mkdir -p "$RUN"
    if running_pid >/dev/null && [[ -f $RUN/bootstrap ]]; then
        say "already running at $(cat "$RUN/bootstrap")"
        echo "OSPREY_TEST_KAFKA=$(cat "$RUN/bootstrap")"
        return 0
    fi
    stop
    : >"$RUN/broker.log"
    local attempt
    for attempt in 1 2 3; do
        if start_once; then
            say "broker $(cat "$RUN/pid") listening on $(cat "$RUN/bootstrap") (log: $RUN/broker.log)"
            echo "OSPREY_TEST_KAFKA=$(cat "$RUN/bootstrap")"
            return 0
        fi
        say "start attempt $attempt failed"
        stop
    done
    tail -n 40 "$RUN/broker.log" >&2 || true
    die "could not start a Kafka broker"
}

case $CMD in
start) start ;;
stop) stop ;;
status)
    if running_pid >/dev/null && [[ -f $RUN/bootstrap ]]; then
        cat "$RUN/bootstrap"
    else
        exit 1
    fi
    ;;
*)
    echo "usage: $0 start|stop|status [RUN_DIR]" >&2
    exit 2
    ;;
esac
