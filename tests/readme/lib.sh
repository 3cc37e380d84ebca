# tests/readme/lib.sh - runs the README's walk-throughs as a user pastes them. Sourced by
# tests/readme/run.sh (on this machine) and tests/docker/run.sh (in containers).
#
# A walk-through block is a ```sh block on the line right after a marker
#
#     <!-- walkthrough: WORD... -->
#
# whose words name the runs the block belongs to: `local` (scripts/run-local.sh, run by
# tests/readme/run.sh), `compose` (the compose stack, run by tests/docker/run.sh),
# `compose-scale` (more verifiers beside the stack, tests/docker/run.sh). The word
# `background` marks a block a user starts in a second terminal: it runs beside the blocks
# after it until the run ends.
#
# A run copies the repository's files (tracked, and untracked but not ignored) into a scratch
# directory and there runs its blocks in README order, verbatim, in one bash with
# `set -euo pipefail` (so variables carry from block to block as in one terminal, and a failing
# command fails the run), under a deadline. Two things differ from a user's terminal, both
# made by shell functions around the commands, never by editing a block: `curl` sends
# `localhost:8080` to this run's port (README_HTTP), so a run never needs port 8080 free; and
# `docker compose` is `docker-compose` where only that is installed (README_COMPOSE_V1=1).
#
# README blocks not run, and why:
#   - "Set-up": `docker compose up --build` stays in the foreground (the compose walk-through
#     runs the same stack detached); `cargo test --workspace` is what .ci/run runs anyway.
#   - "The API": the `$ curl` lines are a transcript (a prompt and its answer), not a script.
#   - "Running with Docker", the first block and the DATA_DIR one: `tail -f` follows the log
#     until Ctrl-C. Their `up` is the compose walk-through's; tests/docker/run.sh runs
#     `compose down` and checks it exits 0.
#   - "Each container by hand": tests/docker/run.sh part 1 makes the same `docker run`s under
#     names of its own, so that it never touches containers named `publisher` and the like.

# free_port: prints a loopback TCP port nothing listens on (racy by nature; good enough for
# tests that pick a handful).
free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$(( 20000 + RANDOM % 20000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

README_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
README_ROOT=$(cd "$README_LIB_DIR/../.." && pwd)

# readme_prepare RUN WORKDIR: copies the repository into WORKDIR/repo (once per WORKDIR) and
# extracts RUN's blocks into WORKDIR/blocks-RUN. Sets README_REPO and README_BLOCKS.
readme_prepare() {
    local run=$1 work=$2
    README_REPO=$work/repo
    README_BLOCKS=$work/blocks-$run
    if [ ! -d "$README_REPO" ]; then
        mkdir -p "$README_REPO"
        git -C "$README_ROOT" ls-files -z --cached --others --exclude-standard |
            tar -C "$README_ROOT" --null --ignore-failed-read -T - -cf - 2>/dev/null |
            tar -C "$README_REPO" -xf -
    fi
    rm -rf "$README_BLOCKS"
    mkdir -p "$README_BLOCKS"
    awk -v run="$run" -v out="$README_BLOCKS" '
        capture {
            if ($0 ~ /^```[[:space:]]*$/) { capture = 0; close(file); next }
            print > file
            next
        }
        want {
            want = 0
            if ($0 != "```sh") {
                printf "README.md:%d: a walkthrough marker not followed by a ```sh block\n", NR - 1 > "/dev/stderr"
                bad = 1
                next
            }
            n++
            file = sprintf("%s/%02d.sh", out, n)
            printf "" > file
            line = sprintf("%s/%02d.line", out, n)
            printf "%d\n", NR > line
            close(line)
            if (background) { mark = sprintf("%s/%02d.bg", out, n); printf "" > mark; close(mark) }
            capture = 1
            next
        }
        /^<!-- walkthrough: .* -->$/ {
            words = $0
            sub(/^<!-- walkthrough: /, "", words)
            sub(/ -->$/, "", words)
            k = split(words, w, " ")
            background = 0
            for (i = 1; i <= k; i++) {
                if (w[i] == run) want = 1
                if (w[i] == "background") background = 1
            }
        }
        END {
            if (capture) { print "README.md: a walkthrough block is not closed" > "/dev/stderr"; bad = 1 }
            exit bad
        }' "$README_REPO/README.md" || return 1
    if ! compgen -G "$README_BLOCKS/*.sh" >/dev/null; then
        echo "README.md has no block marked <!-- walkthrough: $run -->" >&2
        return 1
    fi
}

# readme_run SECONDS: runs the blocks readme_prepare extracted, in README_REPO, within
# SECONDS. Each block's output is printed after it (and kept in README_BLOCKS/NN.out; a
# background block's in NN.log, printed when the run fails).
readme_run() {
    local secs=$1 rc=0
    export README_HTTP=${README_HTTP:?the port curl is sent to, e.g. 127.0.0.1:8080}
    export README_COMPOSE_V1=${README_COMPOSE_V1:-0}
    : >"$README_BLOCKS/bg.pids"
    (
        cd "$README_REPO"
        timeout -k 5 "$secs" bash -c 'source "$1"; readme_drive "$2"' \
            readme-drive "$README_LIB_DIR/lib.sh" "$README_BLOCKS"
    ) || rc=$?
    if [ "$rc" != 0 ]; then
        [ "$rc" != 124 ] || echo "the README's blocks did not finish within ${secs}s" >&2
        local f
        for f in "$README_BLOCKS"/*.log; do
            [ -f "$f" ] || continue
            echo "---- background block $(basename "$f" .log), its output:" >&2
            tail -n 30 "$f" | sed 's/^/    | /' >&2
        done
    fi
    return "$rc"
}

# readme_drive BLOCKS: what readme_run runs in a bash of its own, in the scratch repository.
readme_drive() {
    # Names of its own: the blocks run in this function and may set any plain name.
    local _rd_blocks=$1 _rd_f _rd_n _rd_line
    set -euo pipefail
    exec 3>&1
    readme_terminal
    for _rd_f in "$_rd_blocks"/*.sh; do
        _rd_n=$(basename "$_rd_f" .sh)
        _rd_line=$(cat "$_rd_blocks/$_rd_n.line")
        if [ -e "$_rd_blocks/$_rd_n.bg" ]; then
            echo "README.md:$_rd_line, in a second terminal: $(head -n 1 "$_rd_f")"
            # A session of its own, so that readme_stop ends everything it started at once.
            setsid bash "$_rd_f" >"$_rd_blocks/$_rd_n.log" 2>&1 3>&- &
            echo "$!" >>"$_rd_blocks/bg.pids"
            continue
        fi
        echo "README.md:$_rd_line: $(head -n 1 "$_rd_f")"
        # On a failure or the deadline's SIGTERM, what the block printed, to the run's output
        # (fd 3: inside the block fd 1 is its output file).
        README_OUT=$_rd_blocks/$_rd_n.out
        trap 'readme_show "$README_OUT" >&3; echo "  failed (its output above)" >&3' EXIT
        # shellcheck disable=SC1090 # the README's block, run as pasted into this shell
        source "$_rd_f" >"$_rd_blocks/$_rd_n.out" 2>&1
        trap - EXIT
        readme_show "$_rd_blocks/$_rd_n.out"
    done
}

# readme_show FILE: prints a block's output indented, ending with a newline even where the
# last answer had none (curl -s prints a JSON body as it came).
readme_show() {
    sed 's/^/    | /' "$1"
    [ ! -s "$1" ] || [ -z "$(tail -c 1 "$1")" ] || echo
}

# readme_terminal: the two differences from a user's terminal (see the top of this file).
readme_terminal() {
    curl() {
        local args=() arg
        for arg in "$@"; do args+=("${arg//localhost:8080/${README_HTTP:?}}"); done
        command curl "${args[@]}"
    }
    docker() {
        if [ "${1:-}" = compose ] && [ "${README_COMPOSE_V1:-0}" = 1 ]; then
            shift
            command docker-compose "$@"
        else
            command docker "$@"
        fi
    }
    export -f curl docker
}

# readme_stop: ends what background blocks started: SIGTERM to each one's session, then
# SIGKILL to whatever is left after 10 s.
readme_stop() {
    [ -n "${README_BLOCKS:-}" ] && [ -f "$README_BLOCKS/bg.pids" ] || return 0
    local pid groups=()
    while read -r pid; do groups+=("-$pid"); done <"$README_BLOCKS/bg.pids"
    [ ${#groups[@]} -gt 0 ] || return 0
    kill -TERM -- "${groups[@]}" 2>/dev/null || true
    for _ in $(seq 1 40); do
        kill -0 -- "${groups[@]}" 2>/dev/null || break
        sleep 0.25
    done
    kill -KILL -- "${groups[@]}" 2>/dev/null || true
    : >"$README_BLOCKS/bg.pids"
}

# readme_check_walkthrough LOGFILE: what the signature walk-through promises, from its blocks'
# output: the downcase answer, `valid` for the two requests with mykey and the one with the
# demo key, no other verdict; then, within 15 s, each of them in LOGFILE (the downcase event,
# a `signature.verified … status="valid"` line per id).
readme_check_walkthrough() {
    local logfile=$1 answers downcase mine demo others id
    answers=$(cat "$README_BLOCKS"/*.out | grep '^{' | jq -c 'select(type == "object")' 2>/dev/null) || true
    downcase=$(jq -r 'select(.param == "HeLLo" and .result == "hello") | "\(.event.publisher)#\(.event.seq)"' <<<"$answers")
    mine=$(jq -r 'select(.status == "valid" and .key == "mykey") | .id' <<<"$answers")
    demo=$(jq -r 'select(.status == "valid" and .key == "demo") | .id' <<<"$answers")
    others=$(jq -c 'select(has("status") and .status != "valid")' <<<"$answers")
    [ "$(wc -w <<<"$downcase")" = 1 ] || { echo "no downcase answer with result hello: $answers" >&2; return 1; }
    [ "$(wc -w <<<"$mine")" = 2 ] || { echo "not two valid verdicts with mykey: $answers" >&2; return 1; }
    [ "$(wc -w <<<"$demo")" = 1 ] || { echo "no valid verdict with the demo key: $answers" >&2; return 1; }
    [ -z "$others" ] || { echo "a verdict other than valid: $others" >&2; return 1; }
    echo "answers: downcase $downcase -> hello; valid: ${mine//$'\n'/ } (mykey), $demo (demo)"

    local deadline=$(( $(date +%s) + 15 ))
    until grep -qF " downcase $downcase param=\"HeLLo\" result=\"hello\"" "$logfile" 2>/dev/null; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "no downcase line for $downcase in $logfile" >&2; return 1; }
        sleep 0.25
    done
    for id in $mine $demo; do
        until grep -F ' signature.verified ' "$logfile" 2>/dev/null | grep -F "id=\"$id\"" |
            grep -qF 'status="valid"'; do
            [ "$(date +%s)" -lt "$deadline" ] || { echo "no signature.verified line for $id in $logfile" >&2; return 1; }
            sleep 0.25
        done
    done
    echo "in $logfile: the downcase event and a signature.verified status=\"valid\" line for each id"
}
