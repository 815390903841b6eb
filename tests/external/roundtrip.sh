#!/usr/bin/env bash
# Round-trips messages through a started Sluice broker with third-party clients:
# Debian's kcat (librdkafka 2.0.2) and kafka-python. Usage: tests/external/roundtrip.sh [BINARY]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
binary="${1:-$here/../../target/debug/sluice}"
work="$(mktemp -d)"
log="$work/broker.log"
cleanup() {
  if [[ -n "${broker_pid:-}" ]]; then kill -9 "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$binary" serve --listen 127.0.0.1:0 --data-dir "$work/data" >"$log" 2>&1 &
broker_pid=$!
for _ in $(seq 1 300); do
  address="$(sed -n 's/^sluice: listening on //p' "$log" | head -n1)"
  [[ -n "$address" ]] && break
  sleep 0.1
done
if [[ -z "${address:-}" ]]; then echo "broker did not start:"; cat "$log"; exit 1; fi
echo "broker at $address"

fail() { echo "FAIL: $*"; echo "--- broker log"; cat "$log"; exit 1; }

# kcat: keyed produce (topic auto-created), then consume everything back.
kcat -V >"$work/kcat-version" 2>&1 || true; head -n1 "$work/kcat-version"
seq 1 200 | sed 's/.*/key-&:value-&/' | kcat -P -b "$address" -t kcat-topic -K: -X acks=all -d broker 2>"$work/kcat.log" \
  || { tail -30 "$work/kcat.log"; fail "kcat produce"; }
got="$(kcat -C -b "$address" -t kcat-topic -o beginning -e -q -f '%k=%s\n' | sort -t- -k3 -n)"
want="$(seq 1 200 | sed 's/.*/key-&=value-&/' | sort -t- -k3 -n)"
[[ "$got" == "$want" ]] || fail "kcat consumed $(echo "$got" | wc -l) lines, not the 200 produced"
echo "kcat: 200 messages round-tripped"

# kcat metadata listing shows the topic.
kcat -L -b "$address" -t kcat-topic | grep -q 'topic "kcat-topic" with 1 partitions' \
  || fail "kcat -L does not list kcat-topic"

# kcat consumer group (-G): reads every message, commits, exits at the end of partitions.
got="$(timeout 60 kcat -b "$address" -G kcat-group kcat-topic -X auto.offset.reset=earliest -e -q -f '%s\n' | wc -l)"
[[ "$got" == "200" ]] || fail "kcat -G consumed $got messages, not 200"
echo "kcat -G: 200 messages through a consumer group"

python3 "$here/kafka_python_roundtrip.py" "$address" || fail "kafka-python round trip"
python3 "$here/kafka_python_admin.py" "$address" || fail "kafka-python admin client"
python3 "$here/confluent_kafka_roundtrip.py" "$address" || fail "confluent-kafka round trip"
node "$here/kafkajs_roundtrip.js" "$address" || fail "kafkajs round trip"
echo "external clients: OK"
