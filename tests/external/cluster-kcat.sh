#!/usr/bin/env bash
# Debian's kcat (librdkafka 2.0.2) against a three-node Sluice cluster on 127.0.0.1, .2 and .3:
# a topic auto-created with 6 partitions (spread over the nodes), 300 keyed messages produced
# through one node, read back by a consumer group bootstrapped from another.
# Usage: tests/external/cluster-kcat.sh [BINARY]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
binary="${1:-$here/../../target/debug/sluice}"
work="$(mktemp -d)"
port=29192
voters="1@127.0.0.1:$((port + 1)),2@127.0.0.2:$((port + 1)),3@127.0.0.3:$((port + 1))"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for n in 1 2 3; do echo "--- node $n"; tail -20 "$work/node$n.log"; done; exit 1; }

for n in 1 2 3; do
  "$binary" serve --node-id "$n" --data-dir "$work/d$n" --cores 1 \
    --set "listeners=PLAINTEXT://127.0.0.$n:$port,CONTROLLER://127.0.0.$n:$((port + 1))" \
    --set "controller.quorum.voters=$voters" --set num.partitions=6 >"$work/node$n.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 1 200); do
  brokers="$(kcat -L -b "127.0.0.1:$port" -m 2 2>/dev/null | grep -c '^  broker' || true)"
  [[ "$brokers" == 3 ]] && break
  sleep 0.1
done
[[ "${brokers:-0}" == 3 ]] || fail "the cluster did not register three brokers"
echo "cluster: three brokers registered"

seq 1 300 | sed 's/.*/key-&:value-&/' | kcat -P -b "127.0.0.2:$port" -t cluster-topic -K: -X acks=all \
  2>"$work/produce.log" || { tail -20 "$work/produce.log"; fail "kcat produce"; }
leaders="$(kcat -L -b "127.0.0.3:$port" -t cluster-topic | sed -n 's/.*leader \([0-9]*\),.*/\1/p' | sort -u | tr '\n' ' ')"
[[ "$leaders" == "1 2 3 " ]] || fail "partition leaders are '$leaders', not spread over 1 2 3"
got="$(timeout 60 kcat -b "127.0.0.3:$port" -G cluster-group cluster-topic -X auto.offset.reset=earliest -e -q \
  -f '%k=%s\n' 2>/dev/null | sort -t- -k3 -n)"
want="$(seq 1 300 | sed 's/.*/key-&=value-&/' | sort -t- -k3 -n)"
[[ "$got" == "$want" ]] || fail "the group consumed $(echo "$got" | grep -c . || true) of 300 messages"
echo "cluster kcat: 300 messages over 6 partitions on 3 nodes, consumed by a group"
