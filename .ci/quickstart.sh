#!/usr/bin/env bash
# Runs README's quick start verbatim: the `serve` line of the "Set up" block from a fresh
# temporary working directory (inside the checkout, so `cargo run` finds the manifest while
# `./data` is new), then every line of the "Try it with kcat" block. Fails if a line fails or
# the message does not come back, so the first thing a user reads cannot break silently.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# The lines of the first ```sh block after the line matching $1, comments stripped.
block() {
  awk -v marker="$1" '
    index($0, marker) { found = 1; next }
    found && /^```sh/ { inside = 1; next }
    inside && /^```/ { exit }
    inside { sub(/[ \t]+#.*$/, ""); if (length($0)) print }
  ' README.md
}

serve_line=$(block "## Set up" | grep -- ' serve' | head -n1)
mapfile -t try_lines < <(block "Try it with kcat")
[ -n "$serve_line" ] || { echo "quickstart: no serve line in README's Set up block"; exit 1; }
[ "${#try_lines[@]}" -ge 2 ] || { echo "quickstart: no kcat lines in README"; exit 1; }

work=$(mktemp -d -p "$root/target" quickstart.XXXXXX)
log="$work/serve.log"
echo "quickstart: in $work: $serve_line"
(cd "$work" && exec bash -c "exec $serve_line") >"$log" 2>&1 &
serve_pid=$!
cleanup() {
  kill "$serve_pid" 2>/dev/null || true
  pkill -f "target/release/sluice serve" 2>/dev/null || true
  wait "$serve_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# `cargo run --release` may compile first: wait for the listener (up to 15 minutes).
for _ in $(seq 1 900); do
  if (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then break; fi
  if ! kill -0 "$serve_pid" 2>/dev/null; then
    echo "quickstart: the broker exited"; cat "$log"; exit 1
  fi
  sleep 1
done

for line in "${try_lines[@]}"; do
  echo "quickstart: $line"
  # A consumer-group line runs until stopped: give every line a deadline, and check that a
  # reading line printed the produced message.
  status=0
  output=$(cd "$work" && timeout 30 bash -c "$line" 2>&1) || status=$?
  echo "$output" | sed 's/^/  | /'
  case "$line" in
    *" -P "*)
      [ "$status" -eq 0 ] || { echo "quickstart: produce failed ($status)"; cat "$log"; exit 1; } ;;
    *)
      # timeout's 124 is how a group consumer ends here; anything else must have succeeded.
      if [ "$status" -ne 0 ] && [ "$status" -ne 124 ]; then
        echo "quickstart: failed ($status)"; cat "$log"; exit 1
      fi
      echo "$output" | grep -qx 'hello' || { echo "quickstart: 'hello' did not come back"; cat "$log"; exit 1; } ;;
  esac
done
[ -d "$work/data" ] || { echo "quickstart: no ./data in the working directory"; exit 1; }
echo "quickstart: ok"
