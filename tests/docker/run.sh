#!/usr/bin/env bash
# tests/docker/run.sh - the Docker side of the system, proven on a real Docker engine:
#
#   1. builds Dockerfile.pub and Dockerfile.sub (timed; sizes printed);
#   2. `docker run`s each image alone on a user-defined network: downcase -> subscriber.log
#      on the host, and a signature verified;
#   3. the README's signature walk-through, pasted as written into a copy of the repository:
#      its own key, `KEYS_DIR_HOST=./keys docker compose up --build -d` (from the build cache),
#      verdicts `valid` and their lines in subscriber.log (tests/readme/lib.sh); then, on that
#      stack: downcase logged (read from the host), a signature with the demo key verified by
#      one of the verifiers, the subscriber killed and started again, the publisher restarted,
#      a verifier cut off the network for 5 s, the README's `--scale verifier-extra=2` recipe
#      (both copies serve), `compose stop -t 10` (every container stops in time with exit
#      code 0), and `compose down`, which must exit 0 and leave nothing of the project.
#
# Needs docker, `docker compose` (v2) or docker-compose (1.29+), curl, jq. Uses a unique
# compose project name, a free loopback port and temporary data directories; everything it
# creates is removed on exit (containers, networks, volumes, temporary files). Images are
# kept (tagged brokerless-publisher:$IMAGE_TAG and brokerless-worker:$IMAGE_TAG).
#
# Environment: IMAGE_TAG (default latest), SKIP_BUILD=1 (use the images as they are),
# KEEP=1 (leave everything running for a look; clean up by hand).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
# shellcheck source=tests/readme/lib.sh
source tests/readme/lib.sh

IMAGE_TAG=${IMAGE_TAG:-latest}
PUB_IMAGE=brokerless-publisher:$IMAGE_TAG
WORKER_IMAGE=brokerless-worker:$IMAGE_TAG
RUN_ID=$(date +%s)-$$
PROJECT=brokerlesstest${RUN_ID//-/}
SOLO=${PROJECT}-solo                     # prefix of the `docker run` containers and network
T_START=$(date +%s)

# ---------------------------------------------------------------------------------------------
log()  { printf '[docker-test %4ss] %s\n' "$(( $(date +%s) - T_START ))" "$*"; }
pass() { log "PASS $*"; }
die()  {
    log "FAIL $*"
    diagnostics || true
    exit 1
}

if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
    README_COMPOSE_V1=1
else
    echo "neither 'docker compose' nor docker-compose is installed" >&2
    exit 1
fi
for tool in curl jq openssl; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$tool is needed" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/brokerless-docker-test.XXXXXX")
DATA_DIR=$WORK/data
SOLO_DATA=$WORK/solo-data
mkdir -p "$DATA_DIR" "$SOLO_DATA"
# The subscriber runs as a non-root user and must be able to write the bind-mounted directory:
# as root, hand it to the image's user (10001); otherwise run the container as ourselves.
if [ "$(id -u)" = 0 ]; then
    chown 10001:10001 "$DATA_DIR" "$SOLO_DATA"
    DATA_UID=10001 DATA_GID=10001
else
    DATA_UID=$(id -u) DATA_GID=$(id -g)
fi
HTTP_PORT=$(free_port)
SOLO_PORT=$(free_port)
export IMAGE_TAG DATA_DIR DATA_UID DATA_GID HTTP_PORT
export HTTP_BIND_IP=127.0.0.1
export KEYS_DIR_HOST=$ROOT/examples/keys
export COMPOSE_PROJECT_NAME=$PROJECT

compose() { "${COMPOSE[@]}" -p "$PROJECT" -f "$ROOT/compose.yaml" "$@"; }

cleanup() {
    local rc=$?
    if [ "${KEEP:-0}" = 1 ]; then
        log "KEEP=1: leaving project $PROJECT, containers $SOLO-*, $WORK"
        return
    fi
    log "cleaning up (exit code $rc)"
    compose down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || true
    local c
    for c in "$SOLO-publisher" "$SOLO-subscriber" "$SOLO-verifier"; do
        docker rm -f "$c" >/dev/null 2>&1 || true
    done
    docker network rm "$SOLO-net" >/dev/null 2>&1 || true
    rm -rf "$WORK" 2>/dev/null || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

diagnostics() {
    log "---- diagnostics ----"
    compose ps 2>/dev/null || true
    compose logs --tail=30 2>/dev/null || true
    local c
    for c in "$SOLO-publisher" "$SOLO-subscriber" "$SOLO-verifier"; do
        docker logs --tail=15 "$c" 2>/dev/null | sed "s/^/$c | /" || true
    done
    for f in "$DATA_DIR/subscriber.log" "$SOLO_DATA/subscriber.log"; do
        [ -f "$f" ] && { echo "== tail $f"; tail -n 15 "$f"; }
    done
    log "---------------------"
}

# HTTP helpers: set BODY and STATUS.
http() {
    local out
    out=$(curl -sS -m 20 -w '\n%{http_code}' "$@" 2>&1) || out=$'\n000'
    STATUS=${out##*$'\n'}
    BODY=${out%$'\n'*}
}

# wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND every 0.5 s until it succeeds.
wait_for() {
    local secs=$1 what=$2 deadline
    shift 2
    deadline=$(( $(date +%s) + secs ))
    until "$@"; do
        [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${secs}s waiting for $what"
        sleep 0.5
    done
}

healthy() { [ "$(docker inspect -f '{{.State.Health.Status}}' "$1" 2>/dev/null)" = healthy ]; }
ready()   { http "http://127.0.0.1:$1/readyz"; [ "$STATUS" = 200 ]; }

# downcase_logged PORT LOGFILE PARAM: GET /downcase?param=PARAM, check the answer, then wait up
# to 3 s for its event line in LOGFILE. Fails (returns 1) if the line does not come.
downcase_logged() {
    local port=$1 logfile=$2 param=$3 expected pub seq
    expected=$(printf '%s' "$param" | tr '[:upper:]' '[:lower:]')
    http -G "http://127.0.0.1:$port/downcase" --data-urlencode "param=$param"
    [ "$STATUS" = 200 ] || die "GET /downcase?param=$param answered $STATUS: $BODY"
    [ "$(jq -r .result <<<"$BODY")" = "$expected" ] || die "downcase result wrong: $BODY"
    pub=$(jq -r .event.publisher <<<"$BODY")
    seq=$(jq -r .event.seq <<<"$BODY")
    local line=" downcase $pub#$seq param=\"$param\" result=\"$expected\""
    for _ in $(seq 1 12); do
        grep -qF -- "$line" "$logfile" 2>/dev/null && { LOGGED_LINE=$(grep -F -- "$line" "$logfile"); return 0; }
        sleep 0.25
    done
    return 1
}

# expect_downcase_logged SECONDS PORT LOGFILE PREFIX: keeps making downcase requests (a
# subscriber that is still connecting misses events published before it is there) until one
# is logged; fails after SECONDS.
expect_downcase_logged() {
    local secs=$1 port=$2 logfile=$3 prefix=$4 deadline n=0 param
    deadline=$(( $(date +%s) + secs ))
    while :; do
        n=$(( n + 1 ))
        param=$prefix
        [ "$n" = 1 ] || param=$prefix-$n
        if downcase_logged "$port" "$logfile" "$param"; then
            ATTEMPTS=$n
            return 0
        fi
        [ "$(date +%s)" -lt "$deadline" ] || die "no downcase event logged in $logfile after ${secs}s ($n requests)"
    done
}

DOC_B64=$(base64 -w0 < examples/document.txt)
SIG_HEX=$(tr -d ' \n' < examples/document.sig.hex)

# verify_signature PORT: POST /signatures?wait=10s with the demo document; sets VERIFIED_BY
# and TOOK (milliseconds).
verify_signature() {
    local port=$1 status t0
    t0=$(date +%s%N)
    http -X POST "http://127.0.0.1:$port/signatures?wait=10s" -H 'content-type: application/json' \
        -d "{\"data_base64\":\"$DOC_B64\",\"signature\":\"$SIG_HEX\",\"key\":\"demo\"}"
    [ "$STATUS" = 200 ] || die "POST /signatures?wait=10s answered $STATUS: $BODY"
    status=$(jq -r .status <<<"$BODY")
    [ "$status" = valid ] || die "demo signature not valid: $BODY"
    VERIFIED_BY=$(jq -r .verified_by <<<"$BODY")
    TOOK=$(( ($(date +%s%N) - t0) / 1000000 ))
}

container_of() { compose ps -q "$1"; }

# ---------------------------------------------------------------------------------------------
log "compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>/dev/null || echo '?')); project $PROJECT; HTTP on 127.0.0.1:$HTTP_PORT"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    for spec in "Dockerfile.pub $PUB_IMAGE" "Dockerfile.sub $WORKER_IMAGE"; do
        read -r file image <<<"$spec"
        t0=$(date +%s)
        docker build -f "$file" -t "$image" . >"$WORK/build.log" 2>&1 ||
            die "docker build -f $file failed: $(tail -n 30 "$WORK/build.log")"
        log "built $image from $file in $(( $(date +%s) - t0 ))s"
    done
fi
for image in "$PUB_IMAGE" "$WORKER_IMAGE"; do
    log "image $image: $(( $(docker image inspect -f '{{.Size}}' "$image") / 1000000 )) MB"
done
[ "$(docker image inspect -f '{{.Config.User}}' "$PUB_IMAGE")" = app:app ] || die "publisher image does not run as app"
[ "$(docker image inspect -f '{{.Config.User}}' "$WORKER_IMAGE")" = app:app ] || die "worker image does not run as app"

# ---------------------------------------------------------------------------------------------
log "== 1. each image alone with docker run on network $SOLO-net"
docker network create "$SOLO-net" >/dev/null
docker run -d --name "$SOLO-publisher" --network "$SOLO-net" --network-alias publisher \
    -p "127.0.0.1:$SOLO_PORT:8080" -e PUBLISHER_ID=solo "$PUB_IMAGE" >/dev/null
wait_for 30 "the docker-run publisher to be healthy" healthy "$SOLO-publisher"
pass "publisher container healthy (HEALTHCHECK publisher healthcheck)"
docker run -d --name "$SOLO-subscriber" --network "$SOLO-net" --user "$DATA_UID:$DATA_GID" \
    -v "$SOLO_DATA:/data" -e EVENTS_CONNECT=tcp://publisher:4444 \
    -e REPLAY_CONNECT=tcp://publisher:4447 "$WORKER_IMAGE" >/dev/null
docker run -d --name "$SOLO-verifier" --network "$SOLO-net" -v "$KEYS_DIR_HOST:/keys:ro" \
    -e TASKS_CONNECT=tcp://publisher:4445 -e RESULTS_CONNECT=tcp://publisher:4446 \
    -e VERIFIER_ID=solo-verifier "$WORKER_IMAGE" verifier >/dev/null
expect_downcase_logged 30 "$SOLO_PORT" "$SOLO_DATA/subscriber.log" HeLLo-solo
pass "docker run: downcase answered and logged on the host after $ATTEMPTS request(s): ${LOGGED_LINE}"
wait_for 30 "the docker-run verifier to be heard (/readyz)" ready "$SOLO_PORT"
verify_signature "$SOLO_PORT"
[ "$VERIFIED_BY" = solo-verifier ] || die "verified_by $VERIFIED_BY, expected solo-verifier"
pass "docker run: demo signature valid, verified_by $VERIFIED_BY"
for c in "$SOLO-publisher" "$SOLO-subscriber" "$SOLO-verifier"; do
    t0=$(date +%s%N)
    docker stop -t 10 "$c" >/dev/null
    code=$(docker inspect -f '{{.State.ExitCode}}' "$c")
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    [ "$code" = 0 ] || die "$c exited with $code after docker stop"
    pass "docker stop $c: exit 0 in ${ms} ms"
    docker rm "$c" >/dev/null
done
docker network rm "$SOLO-net" >/dev/null

# ---------------------------------------------------------------------------------------------
log "== 2. the README's walk-through brings compose up (project $PROJECT)"
readme_prepare compose "$WORK/readme" || die "the README's compose walk-through cannot be extracted"
# The README's `docker compose up --build` builds from the cache of the builds above; the
# deadline leaves room for a real build after SKIP_BUILD=1.
README_HTTP=127.0.0.1:$HTTP_PORT readme_run 600 || die "the README's compose walk-through failed"
readme_check_walkthrough "$DATA_DIR/subscriber.log" || die "the README's compose walk-through did not do what it says"
pass "the README's walk-through in containers: its key's and the demo key's signatures valid, each in subscriber.log"
PUB=$(container_of publisher)
SUB=$(container_of subscriber)
VER1=$(container_of verifier-1)
VER2=$(container_of verifier-2)
for c in "$PUB" "$SUB" "$VER1" "$VER2"; do [ -n "$c" ] || die "a compose service has no container"; done
wait_for 30 "the publisher to be healthy" healthy "$PUB"
pass "publisher healthy"
published=$(docker port "$PUB" | sort)
[ "$published" = "8080/tcp -> 127.0.0.1:$HTTP_PORT" ] || die "published ports are not just HTTP: $published"
pass "only the HTTP port is published: $published"
[ "$(docker network inspect -f '{{.Internal}}' "${PROJECT}_backend")" = true ] || die "backend network is not internal"
pass "ZMQ network ${PROJECT}_backend is internal"

LOGFILE=$DATA_DIR/subscriber.log
expect_downcase_logged 30 "$HTTP_PORT" "$LOGFILE" HeLLo
pass "GET /downcase?param=HeLLo... -> hello, logged in $LOGFILE (read on the host) after $ATTEMPTS request(s): $LOGGED_LINE"
log "log file on the host: $(stat -c '%U(%u) %a %s bytes' "$LOGFILE")"

wait_for 30 "a verifier to be heard (/readyz 200)" ready "$HTTP_PORT"
verify_signature "$HTTP_PORT"
case "$VERIFIED_BY" in verifier-1|verifier-2) ;; *) die "verified_by '$VERIFIED_BY' is not a verifier container" ;; esac
pass "demo signature valid, verified_by $VERIFIED_BY"
seen=" $VERIFIED_BY"
for _ in $(seq 1 6); do verify_signature "$HTTP_PORT"; seen+=" $VERIFIED_BY"; done
log "7 verifications served by:$seen"

# ---------------------------------------------------------------------------------------------
log "== 3. docker kill the subscriber, start it again"
lines_before=$(wc -l < "$LOGFILE")
docker kill "$SUB" >/dev/null
sleep 2
if [ "$(docker inspect -f '{{.State.Running}}' "$SUB")" = true ]; then
    log "the subscriber was restarted by its restart policy"
else
    log "killed subscriber: exit code $(docker inspect -f '{{.State.ExitCode}}' "$SUB"); starting it"
    compose start subscriber >/dev/null 2>&1
fi
wait_for 20 "the subscriber to run again" \
    bash -c "[ \"\$(docker inspect -f '{{.State.Running}}' $SUB)\" = true ]"
expect_downcase_logged 30 "$HTTP_PORT" "$LOGFILE" HeLLo-after-subscriber-kill
[ "$(wc -l < "$LOGFILE")" -gt "$lines_before" ] || die "log did not grow"
grep -qF ' downcase ' "$LOGFILE"
pass "subscriber back after kill; old lines kept ($lines_before before), new event logged after $ATTEMPTS request(s): $LOGGED_LINE"

# ---------------------------------------------------------------------------------------------
log "== 4. docker kill -s KILL the publisher, then start it: the journal on its volume continues the stream"
http -G "http://127.0.0.1:$HTTP_PORT/downcase" --data-urlencode "param=before-the-kill"
[ "$STATUS" = 200 ] || die "GET /downcase before the kill answered $STATUS: $BODY"
seq_before=$(jq -r .event.seq <<<"$BODY")
t0=$(date +%s)
docker kill -s KILL "$PUB" >/dev/null
docker start "$PUB" >/dev/null 2>&1 || true
log "publisher killed and started again in $(( $(date +%s) - t0 ))s"
wait_for 30 "the publisher to be healthy again" healthy "$PUB"
expect_downcase_logged 40 "$HTTP_PORT" "$LOGFILE" HeLLo-after-publisher-restart
seq_after=$(jq -r .event.seq <<<"$BODY")
[ "$seq_after" -gt "$seq_before" ] || die "numbering restarted after the kill ($seq_before, then $seq_after): the journal was not continued"
grep -qF 'param="before-the-kill"' "$LOGFILE" || die "the event acknowledged before the kill is not in the log"
! grep -q ' gap ' "$LOGFILE" || die "a gap line after the publisher's kill: $(grep ' gap ' "$LOGFILE")"
pass "publisher killed and back: numbering went on (#$seq_before, then #$seq_after), no gap line; event logged after $ATTEMPTS request(s): $LOGGED_LINE"
wait_for 30 "a verifier to be heard again (/readyz 200)" ready "$HTTP_PORT"
verify_signature "$HTTP_PORT"
pass "verifiers reconnected: signature valid, verified_by $VERIFIED_BY"

# ---------------------------------------------------------------------------------------------
log "== 5. verifier-1 off the network for 5 s"
docker network disconnect "${PROJECT}_backend" "$VER1"
t0=$(date +%s)
seen=""
while [ $(( $(date +%s) - t0 )) -lt 5 ]; do
    verify_signature "$HTTP_PORT"
    seen+=" $VERIFIED_BY(${TOOK}ms)"
done
docker network connect --alias verifier-1 "${PROJECT}_backend" "$VER1"
pass "while verifier-1 was cut off every request finished valid; served by:$seen"
seen=""
deadline=$(( $(date +%s) + 30 ))
while :; do
    verify_signature "$HTTP_PORT"
    seen+=" $VERIFIED_BY(${TOOK}ms)"
    [ "$VERIFIED_BY" = verifier-1 ] && break
    [ "$(date +%s)" -lt "$deadline" ] || { log "WARN verifier-1 served nothing within 30 s of reconnecting:$seen"; break; }
done
pass "after reconnecting, requests still finish valid; served by:$seen"

# ---------------------------------------------------------------------------------------------
log "== 6. the README's recipe for more verifiers beside the stack"
readme_prepare compose-scale "$WORK/readme" || die "the README's --scale recipe cannot be extracted"
README_HTTP=127.0.0.1:$HTTP_PORT readme_run 120 || die "the README's --scale recipe failed"
mapfile -t EXTRA < <(container_of verifier-extra)
[ ${#EXTRA[@]} = 2 ] || die "--scale verifier-extra=2 made ${#EXTRA[@]} containers"
[ "$(docker inspect -f '{{.State.Running}}' "$PUB")" = true ] || die "the recipe stopped the publisher"
# Each copy's id is its host name (the container's) and pid; wait until both have served.
waiting=()
for c in "${EXTRA[@]}"; do waiting+=("$(docker inspect -f '{{.Config.Hostname}}' "$c")-"); done
seen=""
deadline=$(( $(date +%s) + 30 ))
while [ ${#waiting[@]} -gt 0 ]; do
    verify_signature "$HTTP_PORT"
    seen+=" $VERIFIED_BY"
    still=()
    for prefix in "${waiting[@]}"; do
        case "$VERIFIED_BY" in "$prefix"*) ;; *) still+=("$prefix") ;; esac
    done
    waiting=("${still[@]}")
    [ "$(date +%s)" -lt "$deadline" ] || die "verifier-extra copies ${waiting[*]} served nothing in 30 s:$seen"
done
pass "both verifier-extra copies serve, beside the others; served by:$seen"

# ---------------------------------------------------------------------------------------------
log "== 7. compose stop -t 10: every container stops in time with exit code 0"
t0=$(date +%s%N)
compose stop -t 10 >/dev/null 2>&1
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
failed=0
# The ids from compose up: `compose ps` of v2 lists only running containers.
for pair in "publisher $PUB" "subscriber $SUB" "verifier-1 $VER1" "verifier-2 $VER2" \
    "verifier-extra ${EXTRA[0]}" "verifier-extra ${EXTRA[1]}"; do
    read -r svc c <<<"$pair"
    state=$(docker inspect -f '{{.State.Status}} exit={{.State.ExitCode}} oom={{.State.OOMKilled}} started={{.State.StartedAt}} finished={{.State.FinishedAt}}' "$c")
    log "$svc: $state"
    [ "$(docker inspect -f '{{.State.ExitCode}}' "$c")" = 0 ] || failed=1
done
[ "$failed" = 0 ] || die "a container did not exit 0 on SIGTERM"
[ "$ms" -lt 12000 ] || die "compose stop took ${ms} ms"
pass "compose stop: all 6 containers exited 0 in ${ms} ms"

# ---------------------------------------------------------------------------------------------
log "== 8. compose down: exit 0, nothing of the project left but its volumes"
out=$(compose down 2>&1) || die "compose down failed: $out"
left=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")
[ -z "$left" ] || die "containers left after compose down: $left"
nets=$(docker network ls -q --filter "name=${PROJECT}_")
[ -z "$nets" ] || die "networks left after compose down: $(docker network ls --filter "name=${PROJECT}_")"
pass "compose down: exit 0, no container or network of the project left"

log "ALL PASSED in $(( $(date +%s) - T_START ))s"
