#!/usr/bin/env bash
# Does the per-shard read cache stay within `cache.bytes.per.shard` in real memory? Produces
# many one-record batches (the hostile case: each pinned a read chunk before the fix) and then
# large batches, and records the broker's RSS before, after each, with the cache budget.
# Usage: perf/cache-memory.sh [OUT_DIR]   (SLUICE_BIN, CACHE_BYTES default 32 MiB)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SLUICE_BIN="${SLUICE_BIN:-$ROOT/target/release/sluice}"
CACHE_BYTES="${CACHE_BYTES:-33554432}"
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)
OUT="${1:-$ROOT/perf/results/$(date +%F)-$COMMIT-cache-memory}"
PORT=19692
mkdir -p "$OUT"
work=$(mktemp -d /tmp/sluice-cache.XXXXXX)
"$SLUICE_BIN" serve --cores 2 --listen "127.0.0.1:$PORT" --data-dir "$work/data" \
    --set "cache.bytes.per.shard=$CACHE_BYTES" >"$work/broker.log" 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2 * 1024}' "/proc/$broker/status"; }
report="$OUT/summary.md"
{
    echo "cache.bytes.per.shard = $CACHE_BYTES bytes, 2 shards: budget $((2 * CACHE_BYTES)) bytes"
    echo
    echo "| step | broker RSS (MiB) |"
    echo "|---|---:|"
    echo "| started | $(( $(rss) / 1048576 )) |"
} >"$report"
"$SLUICE_BIN" bench produce --bootstrap "127.0.0.1:$PORT" --topic tiny --create-topic \
    --partitions 4 --message-bytes 100 --batch-bytes 100 --linger-ms 0 --acks 1 \
    --messages 300000 --warmup-s 0 --progress-ms 0 >"$OUT/tiny.txt" 2>&1
echo "| after 300,000 one-record batches of 100 B | $(( $(rss) / 1048576 )) |" >>"$report"
"$SLUICE_BIN" bench produce --bootstrap "127.0.0.1:$PORT" --topic large --create-topic \
    --partitions 4 --message-bytes 16384 --batch-bytes 262144 --linger-ms 5 --acks 1 \
    --messages 100000 --warmup-s 0 --progress-ms 0 >"$OUT/large.txt" 2>&1
echo "| after 1.6 GB in 256 KiB batches | $(( $(rss) / 1048576 )) |" >>"$report"
echo >>"$report"
echo "kernel $(uname -r), commit $COMMIT" >>"$report"
cat "$report"
