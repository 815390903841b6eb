#!/usr/bin/env bash
# Does creating many partitions stall produce latency on existing ones? Runs the same e2e
# workload twice against a fresh broker: once alone (baseline), once while another client
# creates `CREATE_PARTITIONS` partitions (as `CREATE_TOPICS` topics, one CreateTopics request
# each) a few seconds into the measured window. Prints and records p50/p99/p99.9/p99.99 of ack
# and end-to-end latency for both, and how long the creation took.
#
# Usage: perf/partition-creation.sh [OUT_DIR]
#   SLUICE_BIN (target/release/sluice), BROKER_CPU (0), CLIENT_CPU (1), RATE (5000 msg/s),
#   DURATION_S (30), CREATE_TOPICS (100), PARTITIONS_PER_TOPIC (10), DATA_ROOT (/tmp: where
#   the broker's data dir goes; /dev/shm takes the disk's own latency noise out, leaving what
#   the creation costs the shard)
# Needs kafka-python (pip) for the creating client. Not a test and not for CI.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SLUICE_BIN="${SLUICE_BIN:-$ROOT/target/release/sluice}"
BROKER_CPU="${BROKER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
RATE="${RATE:-5000}"
DURATION_S="${DURATION_S:-30}"
CREATE_TOPICS="${CREATE_TOPICS:-100}"
PARTITIONS_PER_TOPIC="${PARTITIONS_PER_TOPIC:-10}"
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)
OUT="${1:-$ROOT/perf/results/$(date +%F)-$COMMIT-partition-creation}"
DATA_ROOT="${DATA_ROOT:-/tmp}"
PORT=19392
mkdir -p "$OUT"

run() { # $1: label, $2: "create" or "alone"
    local work
    work=$(mktemp -d "$DATA_ROOT/sluice-creation.XXXXXX")
    taskset -c "$BROKER_CPU" "$SLUICE_BIN" serve --cores 1 --listen "127.0.0.1:$PORT" \
        --data-dir "$work/data" >"$work/broker.log" 2>&1 &
    local broker=$!
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.1
    done
    local creator=""
    if [ "$2" = create ]; then
        taskset -c "$CLIENT_CPU" python3 - "$PORT" "$CREATE_TOPICS" "$PARTITIONS_PER_TOPIC" \
            "$OUT/$1-creation.txt" <<'PY' &
import sys, time
from kafka.admin import KafkaAdminClient, NewTopic
port, topics, per_topic, report = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
time.sleep(7)  # inside the measured window (2 s warm-up)
admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=120000)
started = time.monotonic()
for index in range(topics):
    admin.create_topics([NewTopic(f"created-{index}", per_topic, 1)])
elapsed = time.monotonic() - started
with open(report, "w") as out:
    out.write(f"created {topics * per_topic} partitions ({topics} topics) in {elapsed:.2f} s\n")
PY
        creator=$!
    fi
    taskset -c "$CLIENT_CPU" "$SLUICE_BIN" bench e2e --bootstrap "127.0.0.1:$PORT" \
        --topic steady --create-topic --partitions 4 --rate "$RATE" --message-bytes 1024 \
        --acks all --duration-s "$DURATION_S" --warmup-s 2 --progress-ms 0 \
        --label "$1" --json "$OUT/$1.json" >"$OUT/$1.txt" 2>&1 || true
    [ -n "$creator" ] && wait "$creator"
    kill "$broker"; wait "$broker" || true
    rm -rf "$work"
}

run alone alone
run during-creation create
python3 - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
lines = ["| run | ack p50 | ack p99 | ack p99.9 | ack p99.99 | e2e p50 | e2e p99 | e2e p99.9 | e2e p99.99 | ok |",
         "|---|---|---|---|---|---|---|---|---|---|"]
for name in ["alone", "during-creation"]:
    run = json.load(open(os.path.join(out, name + ".json")))
    ack, e2e = run["produce"]["ack_latency_us"], run["consume"]["e2e_latency_us"]
    cells = [f"{ack[k]} µs" for k in ("p50", "p99", "p99_9", "p99_99")]
    cells += [f"{e2e[k]} µs" for k in ("p50", "p99", "p99_9", "p99_99")]
    lines.append(f"| {name} | " + " | ".join(cells) + f" | {run['ok']} |")
machine = run["machine"]
lines.append("")
lines.append(f"machine: {machine['cpu_model']} x{machine['nproc']}, kernel {machine['kernel']}, commit {run['git_commit'][:12]}")
creation = os.path.join(out, "during-creation-creation.txt")
if os.path.exists(creation):
    lines.append(open(creation).read().strip())
text = "\n".join(lines) + "\n"
open(os.path.join(out, "summary.md"), "w").write(text)
print(text)
PY
