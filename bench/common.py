"""What the wrk benchmarks in bench/ share: release builds, processes on loopback port 0, CPU
read from /proc, wrk runs summarised by their Lua script, interleaved rounds and medians.

Not run by itself: `python3 bench/downcase.py`, `bench/signatures.py` and `bench/replay.py`
import it (a script's own directory is on Python's path). Standard library only.
"""

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Where cargo puts the release binaries (CARGO_TARGET_DIR, as cargo reads it).
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")
PUBLISHER_ID = "bench"
# The publisher binds every socket on an ephemeral loopback port and logs where (listening()).
PUBLISHER_ENV = {"HTTP_ADDR": "127.0.0.1:0", "EVENTS_BIND": "tcp://127.0.0.1:0",
                 "TASKS_BIND": "tcp://127.0.0.1:0", "RESULTS_BIND": "tcp://127.0.0.1:0",
                 "REPLAY_BIND": "tcp://127.0.0.1:0",
                 "PUBLISHER_ID": PUBLISHER_ID}
# The end of a wrk script whose threads count requests in a global `n`: prints the line
# run_wrk() reads (requests, duration, requests issued per thread, errors, latency).
WRK_DONE = r"""
function done(summary, latency, requests)
  local issued, e = {}, summary.errors
  for _, t in ipairs(threads) do table.insert(issued, t:get("n")) end
  io.write(string.format('BENCH {"requests": %d, "duration_us": %d, "issued": [%s], ' ..
    '"status_errors": %d, "socket_errors": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, table.concat(issued, ","), e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""
# At or above this many cores used by other processes during a load, a warning is printed.
BUSY_OTHERS = 0.3


def parser(description):
    """The flags every benchmark takes; a script adds its own before parsing."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--no-build", action="store_true", help="use the binaries as built")
    p.add_argument("--rounds", type=int, default=3, help="rounds of each, interleaved")
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--connections", type=int, default=32, help="wrk connections")
    return p


def prepare(args, cargo_args):
    """Checks for wrk, builds the release binaries unless --no-build, and makes SIGTERM run
    the `finally`s that stop the servers."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench: terminated"))
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is not on PATH; install it (Debian: apt-get install -y wrk)")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", *cargo_args], cwd=ROOT, check=True)


def interleaved(rounds, names):
    """(round, name) in the order a b, b a, a b ...: drift on a shared machine falls on all
    alike."""
    for r in range(1, rounds + 1):
        for name in names[:: 1 if r % 2 else -1]:
            yield r, name


def clocks(pids):
    """Microseconds of: wall clock, CPU of the whole machine (not idle nor iowait), CPU of
    the children waited for (wrk), then utime + stime of each process in `pids`."""
    cpu = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    wrk = resource.getrusage(resource.RUSAGE_CHILDREN)
    procs = [Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split() for pid in pids]
    return [time.monotonic() * 1e6, (sum(cpu) - cpu[3] - cpu[4]) * TICK_US,
            (wrk.ru_utime + wrk.ru_stime) * 1e6,
            *((int(f[11]) + int(f[12])) * TICK_US for f in procs)]


def others(load):
    """Cores kept busy by anything but wrk and `pids`, from the difference of two clocks()."""
    return max(0.0, (load[1] - sum(load[2:])) / load[0])  # ticks round


def wait_for(what, condition, timeout=20.0):
    """Polls `condition` until it returns something truthy, or gives up after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    sys.exit(f"bench: timed out waiting for {what}")


def get(url):
    """The status of a GET; None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status
    except OSError:
        return None


def post_json(url, body, timeout=10):
    """The decoded JSON answer of a 2xx POST; None on any other outcome."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.loads(reply.read())
    except (OSError, ValueError):
        return None


def metrics(base):
    """GET /metrics as {'name{labels}': value}."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as reply:
        lines = reply.read().decode().splitlines()
    return {name: float(value) for name, _, value in
            (line.rpartition(" ") for line in lines if line and not line.startswith("#"))}


def start(children, workdir, name, env, stderr_name=None, program=None, args=(), piped=False):
    """Starts a release binary (`program`, default the one called `name`, with `args`); its
    own logs (JSON) go to workdir/<stderr_name or name>.stderr. A worker's health port is on
    loopback port 0 unless `env` says otherwise, so workers started side by side (two
    verifiers, several subscribers) never fight over its default. `piped`: its stdin and
    stdout are text pipes to this process, for a program driven by commands."""
    env = {**os.environ, "LOG_JSON": "true", "RUST_LOG": "info,zeromq=error",
           "HEALTH_ADDR": "127.0.0.1:0", **env}
    with open(workdir / f"{stderr_name or name}.stderr", "w") as stderr:
        children.append(subprocess.Popen(
            [program or RELEASE / name, *args], env=env, cwd=workdir, stderr=stderr,
            stdin=subprocess.PIPE if piped else subprocess.DEVNULL,
            stdout=subprocess.PIPE if piped else stderr, text=piped))
    return children[-1]


def stop(children):
    """SIGTERM to each child, SIGKILL to any still there 5 s later."""
    for child in children:
        child.terminate()
    for child in children:
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def alive(workdir, servers):
    """Exits with a server's log if any of {stderr name: process} has exited."""
    for name, process in servers.items():
        if process.poll() is not None:
            sys.exit(f"bench: {name} exited:\n{(workdir / f'{name}.stderr').read_text()}")


def listening(stderr_path):
    """The fields of the publisher's 'publisher listening' line: `http` address and the
    `events`, `tasks` and `results` endpoints it bound."""
    for line in stderr_path.read_text().splitlines():
        fields = json.loads(line).get("fields", {})
        if fields.get("message") == "publisher listening":
            return fields
    return None


def run_wrk(args, url, script):
    """Runs wrk; returns the JSON its script's done() printed after `BENCH `, with req/s and
    2xx added. The script must print requests, duration_us and status_errors."""
    out = subprocess.run(["wrk", f"-t{args.threads}", f"-c{args.connections}",
                          f"-d{args.duration}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    line = next((l for l in out.splitlines() if l.startswith("BENCH ")), None)
    if line is None:
        sys.exit(f"bench: no summary from wrk:\n{out}")
    stats = json.loads(line[len("BENCH "):])
    stats["rps"] = stats["requests"] / (stats["duration_us"] / 1e6)
    stats["ok"] = stats["requests"] - stats["status_errors"]
    return stats


def log_settled(log):
    """Waits until the log has not grown for 2.5 s: a heartbeat goes out within 2 s of the
    last event and would turn a lost tail into a gap line."""
    size, since = -1, time.monotonic()
    while time.monotonic() - since < 2.5:
        if log.stat().st_size != size:
            size, since = log.stat().st_size, time.monotonic()
        time.sleep(0.1)


def json_flag(p, name):
    """--json: where a script writes its figures (default bench/results/<name>.json), for
    bench/all.py to collect."""
    p.add_argument("--json", type=Path, default=ROOT / f"bench/results/{name}.json",
                   help="where the figures are written as JSON")


def write_json(path, figures):
    """Writes a script's figures to `path` and says where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def medians(results, skip=()):
    """{name: {figure: median over rounds}} from {name: [per-round dict]}, numbers only."""
    return {name: {k: statistics.median(s[k] for s in runs) for k, v in runs[0].items()
                   if k not in skip and isinstance(v, (int, float))}
            for name, runs in results.items()}


def warn_if_busy(results):
    """Says so when other processes used a noticeable share of the machine in some round."""
    busiest = max(s["others"] for runs in results.values() for s in runs)
    if busiest >= BUSY_OTHERS:
        print(f"warning: other processes kept up to {busiest:.1f} cores busy during the load;"
              f" compare rounds with equal `others`, or trust CPU/req over req/s")
