#!/usr/bin/env bash
# Runs the whole system on this machine without Docker: one publisher, one subscriber and
# one verifier (with the demo key), in release builds. Ctrl-C stops all three gracefully.
# The event log is ./subscriber.log.
#
# Environment: KEYS_DIR (the verifier's public keys, examples/keys), LOG_FILE
# (./subscriber.log), BIN_DIR (run the binaries already built there, e.g. target/debug,
# instead of building release ones); every other variable of the binaries passes through.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${BIN_DIR:-}" ]; then
    bin=$BIN_DIR
else
    cargo build --release --bins
    bin=${CARGO_TARGET_DIR:-target}/release
fi
export RUST_LOG="${RUST_LOG:-info}"

pids=()
stop() {
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}
trap stop EXIT INT TERM

"$bin/publisher" & pids+=($!)
KEYS_DIR="${KEYS_DIR:-examples/keys}" "$bin/verifier" & pids+=($!)
LOG_FILE="${LOG_FILE:-./subscriber.log}" "$bin/subscriber" & pids+=($!)

echo "HTTP on ${HTTP_ADDR:-0.0.0.0:8080} — try: curl 'localhost:8080/downcase?param=HeLLo'" >&2
echo "events in ${LOG_FILE:-./subscriber.log} — tail -f it" >&2
wait -n "${pids[@]}"
