#!/usr/bin/env python3
"""The Swarm stack (deploy/swarm/stack.yaml) on a real single-node swarm: 2 publishers behind
the routing mesh, 2 verifiers, 1 subscriber.

  1. joins a swarm (`docker swarm init` when the engine is in none; left again at the end);
  2. deploys the stack under a unique name on a free port, waits for every replica to run,
     for the subscriber and both verifiers to follow both publishers behind `tasks.publisher`,
     and for the publishers to be ready. Where the kernel has no IPVS (Swarm's routing mesh
     needs it) the published port answers nothing: the test says so, skips steps 3-5, and
     still exits 0 after step 6;
  3. sends 2 000 `GET /downcase` requests through the published port, each on its own
     connection (the mesh balances connections): both publishers must have served some;
  4. sends 200 signature requests: 150 good ones with `?wait=`, 30 with a wrong signature, and
     20 good ones without waiting, whose verdict is then asked with `GET /signatures/{id}`
     (which the mesh may hand to the other publisher): every verdict must be right;
  5. reads subscriber.log from the subscriber's container: every request is logged exactly
     once, each publisher's numbers unbroken from 1, no gap line, one verdict event per
     signature request;
  6. removes the stack and its volumes.

Run by `.ci/run` after tests/docker/run.sh (which builds the images) when a Docker engine
answers. Needs docker (engine 20.10+). Standard library only.

Environment: IMAGE_TAG (latest), SWARM_TIMEOUT (seconds to wait for the stack, 180),
KEEP=1 (leave the stack running for a look; remove it with `docker stack rm NAME`).
"""

import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
STACK_FILE = ROOT / "deploy" / "swarm" / "stack.yaml"
IMAGE_TAG = os.environ.get("IMAGE_TAG", "latest")
IMAGES = {"Dockerfile.pub": f"brokerless-publisher:{IMAGE_TAG}",
          "Dockerfile.sub": f"brokerless-worker:{IMAGE_TAG}"}
STACK = f"brokerlessswarm{os.getpid()}"
TIMEOUT = int(os.environ.get("SWARM_TIMEOUT", "180"))
DOWNCASES = 2000
GOOD_WAITED, BAD, GOOD_ASKED = 150, 30, 20
T0 = time.monotonic()
# One log line: `<time> <topic> <publisher>#<seq> key="value" ...`.
LINE = re.compile(r'^\S+ (\S+) (\S+)#(\d+)(.*)$')


def log(message):
    print(f"[swarm-test {time.monotonic() - T0:5.0f}s] {message}", flush=True)


def fail(message):
    log(f"FAIL {message}")
    diagnostics()
    sys.exit(1)


def docker(*args, check=True, capture=True, env=None):
    """Runs `docker args...`; returns its stdout (stripped)."""
    done = subprocess.run(["docker", *args], capture_output=capture, text=True, env=env,
                          timeout=300)
    if check and done.returncode != 0:
        fail(f"docker {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return (done.stdout or "").strip()


def diagnostics():
    log("---- diagnostics ----")
    subprocess.run(["docker", "stack", "ps", "--no-trunc", STACK], timeout=60)
    for service in ("publisher", "subscriber", "verifier"):
        subprocess.run(["docker", "service", "logs", "--tail", "20", f"{STACK}_{service}"],
                       timeout=60)
    log("---------------------")


def wait_for(what, check, limit=TIMEOUT):
    """Calls `check` every half second until it returns something true; returns that."""
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            fail(f"timed out after {limit}s waiting for {what}")
        time.sleep(0.5)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None):
    """One request on a connection of its own; returns (status, JSON answer or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"content-type": "application/json",
                                          "connection": "close"})
    try:
        with urllib.request.urlopen(req, timeout=20) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, None
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return 0, None


def final_verdict(port, id_):
    """`GET /signatures/{id_}`'s answer once it is no longer pending; None before."""
    status, answer = request(port, "GET", f"/signatures/{id_}")
    return answer if status == 200 and answer and answer.get("status") != "pending" else None


def replicas_running():
    """Whether every service of the stack runs all its replicas."""
    lines = docker("service", "ls", "--filter", f"label=com.docker.stack.namespace={STACK}",
                   "--format", "{{.Name}} {{.Replicas}}").splitlines()
    if len(lines) < 3:
        return False
    for line in lines:
        running, wanted = line.split()[1].split("/")[:2]
        if running != wanted.split()[0]:
            return False
    return True


def ready_everywhere(port):
    """Whether 10 /readyz in a row (on fresh connections, so over both replicas) answer 200."""
    return all(request(port, "GET", "/readyz")[0] == 200 for _ in range(10))


def workers_follow_both():
    """Whether the subscriber and both verifiers logged that tasks.publisher gave them 2
    addresses (the line plumbing's resolver writes when a followed name changes)."""
    for service, tasks in (("subscriber", 1), ("verifier", 2)):
        logs = subprocess.run(["docker", "service", "logs", "--raw", f"{STACK}_{service}"],
                              capture_output=True, text=True, timeout=60)
        text = logs.stdout + logs.stderr
        if text.count("following=2") < tasks:
            return False
    return True


def mesh_answers(port):
    """Whether anything answers on the published port within 30 s (the routing mesh works)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return os.path.exists("/proc/net/ip_vs")


def subscriber_log():
    container = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={STACK}_subscriber")
    if not container:
        return []
    text = docker("exec", container.splitlines()[0], "cat", "/data/subscriber.log", check=False)
    return text.splitlines()


def remove_stack(joined):
    if os.environ.get("KEEP") == "1":
        log(f"KEEP=1: leaving stack {STACK}")
        return
    log(f"removing stack {STACK}")
    subprocess.run(["docker", "stack", "rm", STACK], capture_output=True, timeout=120)
    label = f"label=com.docker.stack.namespace={STACK}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        left = subprocess.run(["docker", "ps", "-aq", "--filter", label], capture_output=True,
                              text=True, timeout=60).stdout.split()
        networks = subprocess.run(["docker", "network", "ls", "-q", "--filter", label],
                                  capture_output=True, text=True, timeout=60).stdout.split()
        if not left and not networks:
            break
        time.sleep(1)
    # A volume stays "in use" a moment after its task's container is gone.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        volumes = subprocess.run(["docker", "volume", "ls", "-q", "--filter", f"name={STACK}_"],
                                 capture_output=True, text=True, timeout=60).stdout.split()
        for volume in volumes:
            subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True,
                           timeout=60)
        if not volumes:
            break
        time.sleep(1)
    if joined:
        subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True, timeout=120)
        log("left the swarm this test joined")


def main():
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}")
    joined = False
    if state != "active":
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
        joined = True
        log("swarm initialised (single node)")
    try:
        run()
    finally:
        remove_stack(joined)


def run():
    for dockerfile, image in IMAGES.items():
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode:
            log(f"building {image} from {dockerfile}")
            docker("build", "-q", "-f", str(ROOT / dockerfile), "-t", image, str(ROOT))

    # Deploy.
    port = free_port()
    env = dict(os.environ, HTTP_PORT=str(port), IMAGE_TAG=IMAGE_TAG)
    docker("stack", "deploy", "-c", str(STACK_FILE), STACK, env=env)
    log(f"deployed stack {STACK}; HTTP on the routing mesh at :{port}")
    wait_for("every replica running", replicas_running)
    wait_for("every worker following both publishers", workers_follow_both)
    log("PASS every replica runs; the subscriber and each verifier follow both publishers "
        "behind tasks.publisher")
    if not mesh_answers(port):
        # The routing mesh is IPVS in the kernel; without it the published port answers
        # nothing and no request can reach a publisher from outside.
        log(f"SKIPPED the requests: nothing answers on the published port :{port} and this "
            "kernel has no IPVS (/proc/net/ip_vs), which Swarm's routing mesh needs; the "
            "deployment itself was checked above")
        return
    wait_for("both publishers ready (a verifier heard)", lambda: ready_everywhere(port))
    log("PASS every replica runs, the publishers are ready")

    # Downcase through the mesh.
    params = [f"Swarm-{i:05d}" for i in range(DOWNCASES)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(
            lambda p: request(port, "GET", f"/downcase?param={p}"), params))
    served = {}
    for param, (status, answer) in zip(params, answers):
        if status != 200 or answer.get("result") != param.lower():
            fail(f"/downcase?param={param} answered {status}: {answer}")
        served.setdefault(answer["event"]["publisher"], 0)
        served[answer["event"]["publisher"]] += 1
    if len(served) < 2:
        fail(f"one publisher served every request: {served}")
    log(f"PASS {DOWNCASES} downcase requests answered, by {served}")

    # Signatures: good and bad, waited for or asked for later.
    document = (ROOT / "examples" / "document.txt").read_bytes()
    good = (ROOT / "examples" / "document.sig.hex").read_text().replace(" ", "").strip()
    bad = ("0" if good[0] != "0" else "1") + good[1:]
    data = base64.b64encode(document).decode()

    def body(signature):
        return {"data_base64": data, "signature": signature, "key": "demo"}

    kinds = ["good"] * GOOD_WAITED + ["bad"] * BAD
    with ThreadPoolExecutor(8) as pool:
        verdicts = list(pool.map(lambda k: request(
            port, "POST", "/signatures?wait=10s", body(good if k == "good" else bad)), kinds))
    for kind, (status, answer) in zip(kinds, verdicts):
        expected = "valid" if kind == "good" else "invalid"
        if status != 200 or answer.get("status") != expected:
            fail(f"a {kind} signature answered {status}: {answer} (expected {expected})")
    ids = []
    for _ in range(GOOD_ASKED):
        status, answer = request(port, "POST", "/signatures", body(good))
        if status != 202:
            fail(f"POST /signatures answered {status}: {answer}")
        ids.append(answer["id"])
    for id_ in ids:
        final = wait_for(f"the verdict of {id_}", lambda: final_verdict(port, id_), limit=30)
        if final.get("status") != "valid":
            fail(f"GET /signatures/{id_} answered {final}")
    log(f"PASS {GOOD_WAITED + BAD} waited verdicts right, {GOOD_ASKED} asked later over the mesh")

    # The log: every request exactly once, each stream unbroken, no gap.
    requests = DOWNCASES + GOOD_WAITED + BAD + GOOD_ASKED
    expected_events = DOWNCASES + 2 * (GOOD_WAITED + BAD + GOOD_ASKED)

    def complete():
        lines = subscriber_log()
        events = [m for m in map(LINE.match, lines) if m and m.group(1) != "gap"]
        swarm = [m for m in events if 'param="Swarm-' in m.group(0)]
        return lines if len(swarm) >= DOWNCASES and len(events) >= expected_events else None

    lines = wait_for("every event in subscriber.log", complete, limit=60)
    seqs, topics, params_seen = {}, {}, {}
    for line in lines:
        m = LINE.match(line)
        if not m:
            fail(f"a line that is not an event line: {line!r}")
        topic, publisher, seq = m.group(1), m.group(2), int(m.group(3))
        if topic == "gap":
            fail(f"a gap line: {line}")
        seqs.setdefault(publisher, []).append(seq)
        topics[topic] = topics.get(topic, 0) + 1
        p = re.search(r'param="(Swarm-\d+)"', line)
        if p:
            params_seen[p.group(1)] = params_seen.get(p.group(1), 0) + 1
    if sorted(params_seen) != params or any(n != 1 for n in params_seen.values()):
        twice = [p for p, n in params_seen.items() if n != 1][:5]
        fail(f"{len(params_seen)} of {DOWNCASES} params logged; more than once: {twice}")
    for publisher, numbers in seqs.items():
        if numbers != list(range(1, len(numbers) + 1)):
            fail(f"{publisher}'s numbers are not 1..{len(numbers)} in order")
    if set(seqs) != set(served):
        fail(f"the log has streams {sorted(seqs)}, the answers named {sorted(served)}")
    want = {"downcase": DOWNCASES, "signature.requested": GOOD_WAITED + BAD + GOOD_ASKED,
            "signature.verified": GOOD_WAITED + GOOD_ASKED, "signature.failed": BAD}
    if topics != want:
        fail(f"events per topic {topics}, expected {want}")
    log(f"PASS all {requests} requests logged exactly once: {topics}; "
        f"streams {({p: len(n) for p, n in seqs.items()})}")
    log("ALL PASSED")


if __name__ == "__main__":
    main()
