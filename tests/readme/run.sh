#!/usr/bin/env bash
# tests/readme/run.sh - the README's signature walk-through on this machine, pasted as written
# into a scratch copy of the repository: its own key made with openssl, `scripts/run-local.sh`
# started "in a second terminal" with KEYS_DIR=./keys, then the downcase and signature
# requests. Checks what the README promises: the downcase answer, `valid` for mykey (both ways)
# and for the demo key, and each of them in ./subscriber.log. How blocks are found and run,
# and which are not run and why: tests/readme/lib.sh. The compose side of the same
# walk-through runs in tests/docker/run.sh.
#
# Runs the binaries cargo already built (after `cargo test --workspace` or
# `cargo build --bins`): BIN_DIR, by default ${CARGO_TARGET_DIR:-target}/debug. Every
# process it starts is stopped on exit and the scratch directory removed (KEEP=1 keeps the
# directory). Needs openssl, curl, jq, setsid, timeout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
# shellcheck source=tests/readme/lib.sh
source tests/readme/lib.sh

target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target=$ROOT/$target ;; esac
BIN_DIR=${BIN_DIR:-$target/debug}
for name in publisher subscriber verifier; do
    [ -x "$BIN_DIR/$name" ] || {
        echo "no $BIN_DIR/$name: build the binaries first (cargo build --bins), or set BIN_DIR" >&2
        exit 1
    }
done
for tool in openssl curl jq setsid timeout; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$tool is needed" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/brokerless-readme.XXXXXX")
cleanup() {
    local rc=$?
    readme_stop
    if [ "${KEEP:-0}" = 1 ]; then
        echo "KEEP=1: the scratch copy is $WORK/repo" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Ports of this run's own, so that it runs beside anything else on the machine (the blocks'
# `localhost:8080` is sent to HTTP_ADDR, see lib.sh); the workers' health ports are off.
ports=()
while [ ${#ports[@]} -lt 5 ]; do
    port=$(free_port)
    case " ${ports[*]} " in *" $port "*) ;; *) ports+=("$port") ;; esac
done
export HTTP_ADDR=127.0.0.1:${ports[0]}
export EVENTS_BIND=tcp://127.0.0.1:${ports[1]} EVENTS_CONNECT=tcp://127.0.0.1:${ports[1]}
export TASKS_BIND=tcp://127.0.0.1:${ports[2]} TASKS_CONNECT=tcp://127.0.0.1:${ports[2]}
export RESULTS_BIND=tcp://127.0.0.1:${ports[3]} RESULTS_CONNECT=tcp://127.0.0.1:${ports[3]}
export REPLAY_BIND=tcp://127.0.0.1:${ports[4]} REPLAY_CONNECT=tcp://127.0.0.1:${ports[4]}
export HEALTH_ADDR=off BIN_DIR
# What a user's shell would not set: the README's defaults hold.
unset LOG_FILE LOG_FORMAT KEYS_DIR TOPICS FROM SHARED_KEY_FILE JOURNAL_DIR PUBLISHER_ID VERIFIER_ID
README_HTTP=$HTTP_ADDR

t0=$(date +%s)
readme_prepare local "$WORK"
readme_run 60
readme_check_walkthrough "$README_REPO/subscriber.log"
echo "PASS the README's walk-through with scripts/run-local.sh ($BIN_DIR) in $(( $(date +%s) - t0 ))s"
