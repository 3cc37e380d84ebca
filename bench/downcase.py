#!/usr/bin/env python3
"""What publishing costs on `GET /downcase`: the full system against the publisher alone.

Entry point (workspace root):  python3 bench/downcase.py   (--no-build, --rounds, --duration ...)

Needs `wrk` on PATH (Debian: apt-get install -y wrk). Each round starts fresh processes on
loopback (port 0) and loads them with wrk, whose Lua script makes every param unique. Rounds
alternate (a b, b a, a b ...) so drift on a shared machine falls on both alike.

  (a) system    publisher + subscriber, connected before the load (a warm-up request is seen in
                the log). Afterwards every request wrk completed must be in subscriber.log: the
                log settles with no gap line and unbroken seq numbers (a heartbeat would expose
                a lost tail); `logged / 2xx / issued` are this run's events in the log, requests
                completed with 2xx, and requests sent (the few cut off when wrk stops may or may
                not be logged). Any shortfall aborts the benchmark.
  (b) baseline  the publisher alone, EVENTS_DISABLED=true: same router, nothing published.

Columns: req/s and wrk's latency; `pub us/req`, the publisher's utime+stime per completed
request ((a): until the log has settled); `sub us/ev`, the subscriber's per event; `wrk us/req`;
`others`, cores busy with anything else during the load. `med`: medians over rounds. wrk and
the servers share the cores, so once those are all busy req/s follows total CPU per request,
and CPU/req is the steadier figure. The issue's target is req/s (a)/(b) >= 0.85.
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")
PUBLISHER_ID = "bench"
# Globals, not locals: thread:set/get reach only a thread's globals.
WRK_SCRIPT = r"""
threads, n = {}, 0
function setup(thread) table.insert(threads, thread); thread:set("id", #threads) end
function request()
  n = n + 1
  return wrk.format(nil, "/downcase?param=HeLLo-" .. id .. "-" .. n)
end
function done(summary, latency, requests)
  local issued, e = {}, summary.errors
  for _, t in ipairs(threads) do table.insert(issued, t:get("n")) end
  io.write(string.format('BENCH {"requests": %d, "duration_us": %d, "issued": [%s], ' ..
    '"status_errors": %d, "socket_errors": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, table.concat(issued, ","), e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""
EVENT_LINE = re.compile(r'^\S+ (\S+) ' + PUBLISHER_ID + r'#(\d+)(?: param="([^"]*)")?')


def clocks(pids):
    """Microseconds of: wall clock, CPU of the whole machine (not idle nor iowait), CPU of
    the children waited for (wrk), then utime + stime of each process in `pids`."""
    cpu = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    wrk = resource.getrusage(resource.RUSAGE_CHILDREN)
    procs = [Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split() for pid in pids]
    return [time.monotonic() * 1e6, (sum(cpu) - cpu[3] - cpu[4]) * TICK_US,
            (wrk.ru_utime + wrk.ru_stime) * 1e6,
            *((int(f[11]) + int(f[12])) * TICK_US for f in procs)]


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


def start(children, workdir, name, env):
    """Starts a release binary; its own logs (JSON) go to workdir/<name>.stderr."""
    env = {**os.environ, "LOG_JSON": "true", "RUST_LOG": "info,zeromq=error", **env}
    with open(workdir / f"{name}.stderr", "w") as stderr:
        children.append(subprocess.Popen([ROOT / "target/release" / name], env=env, cwd=workdir,
                                         stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr))
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


def listening(stderr_path):
    """The HTTP address and PUB endpoint from the publisher's 'publisher listening' line."""
    for line in stderr_path.read_text().splitlines():
        fields = json.loads(line).get("fields", {})
        if fields.get("message") == "publisher listening":
            return fields["http"], fields["events"]
    return None


def run_wrk(args, url, script):
    """Runs wrk; returns what the script's done() printed, with req/s and 2xx added."""
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


def check_log(log, stats):
    """Counts this run's events in the log; fails on gaps, duplicates or missing 2xx. Lines
    before the last warm-up are skipped: a gap there is the slow joiner, not the load."""
    lines = log.read_text().splitlines()
    start = max(i for i, line in enumerate(lines) if 'param="warmup-' in line)
    events = [m.groups() for m in map(EVENT_LINE.match, lines[start:]) if m]
    gaps = sum(topic == "gap" for topic, _, _ in events)
    seqs = [int(seq) for _, seq, _ in events]
    logged = [p for t, _, p in events if t == "downcase" and p.startswith("HeLLo-")]
    params = set(logged)
    issued = {f"HeLLo-{t}-{n}" for t, last in enumerate(stats["issued"], 1)
              for n in range(1, last + 1)}
    cut_off = sum(stats["issued"]) - stats["requests"]  # in flight when wrk stopped
    missing = len(issued - params)
    if gaps or seqs != list(range(seqs[0], seqs[0] + len(seqs))) or len(params) < stats["ok"] \
            or missing > cut_off or params - issued or len(params) != len(logged):
        sys.exit(f"bench: log incomplete: {len(params)} logged, {stats['ok']} 2xx, "
                 f"{missing} issued but not logged (at most {cut_off} may be), {gaps} gap lines")
    return len(params)


def log_settled(log):
    """Waits until the log has not grown for 2.5 s: a heartbeat goes out within 2 s of the
    last event and would turn a lost tail into a gap line."""
    size, since = -1, time.monotonic()
    while time.monotonic() - since < 2.5:
        if log.stat().st_size != size:
            size, since = log.stat().st_size, time.monotonic()
        time.sleep(0.1)


def one_round(args, system, workdir, script):
    """Starts (a) or (b), loads it with wrk, checks the log, stops it; returns the figures."""
    children = []
    try:
        any_port = "tcp://127.0.0.1:0"  # events, and the verifier links (unused here)
        env = {"HTTP_ADDR": "127.0.0.1:0", "EVENTS_BIND": any_port, "TASKS_BIND": any_port,
               "RESULTS_BIND": any_port, "PUBLISHER_ID": PUBLISHER_ID,
               "EVENTS_DISABLED": str(not system).lower()}
        servers = [start(children, workdir, "publisher", env)]
        http, events = wait_for("the publisher", lambda: listening(workdir / "publisher.stderr"))
        base, log = f"http://{http}/downcase?param=", workdir / "subscriber.log"
        if system:
            servers.append(start(children, workdir, "subscriber",
                                 {"EVENTS_CONNECT": events, "LOG_FILE": str(log)}))
            tries = iter(range(10**9))

            def warmed_up():  # the slow joiner: send until one request makes it to the log
                get(f"{base}warmup-{next(tries)}")
                return log.exists() and 'param="warmup-' in log.read_text()
            wait_for("the subscriber to log a warm-up request", warmed_up)
        else:
            wait_for("the publisher to answer", lambda: get(f"{base}warmup") == 200)
        pids = [p.pid for p in servers]
        before = clocks(pids)
        stats = run_wrk(args, f"{base}HeLLo", script)
        load = [b - a for a, b in zip(before, clocks(pids))]
        stats["others"] = max(0.0, (load[1] - sum(load[2:])) / load[0])  # ticks round
        stats["wrk_cpu"] = load[2] / stats["requests"]
        if system:  # the servers' CPU counts until the last event is written
            log_settled(log)
            stats["logged"] = check_log(log, stats)
        spent = [b - a for a, b in zip(before[3:], clocks(pids)[3:])]
        for name, p in zip(("publisher", "subscriber"), servers):
            if p.poll() is not None:
                sys.exit(f"bench: {name} exited:\n{(workdir / f'{name}.stderr').read_text()}")
        if stats["status_errors"] or stats["socket_errors"]:
            sys.exit(f"bench: wrk saw {stats['status_errors']} non-2xx answers and "
                     f"{stats['socket_errors']} socket errors")
        stats["pub_cpu"] = spent[0] / stats["requests"]
        if system:
            stats["sub_cpu"] = spent[1] / stats["logged"]
        return stats
    finally:
        stop(children)


ROW = "{:5} {:9} {:>8} {:>7} {:>7} {:>11} {:>10} {:>11} {:>7}  {}"


def row(r, name, s):
    """One line of the table."""
    counts = f"{s['logged']} / {s['ok']} / {sum(s['issued'])}" if "logged" in s else ""
    return ROW.format(r, name, f"{s['rps']:.0f}", f"{s['p50_us'] / 1e3:.2f}",
                      f"{s['p99_us'] / 1e3:.2f}", f"{s['pub_cpu']:.1f}",
                      f"{s['sub_cpu']:.1f}" if "sub_cpu" in s else "-",
                      f"{s['wrk_cpu']:.1f}", f"{s['others']:.1f}", counts).rstrip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-build", action="store_true", help="use the binaries as built")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each, interleaved")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench: terminated"))  # run the finallys
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is not on PATH; install it (Debian: apt-get install -y wrk)")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "publisher", "-p",
                        "subscriber"], cwd=ROOT, check=True)
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {args.rounds} rounds"
          f" of each interleaved, {os.cpu_count()} CPUs")
    print(ROW.format("round", "run", "req/s", "p50 ms", "p99 ms", "pub us/req", "sub us/ev",
                     "wrk us/req", "others", "logged / 2xx / issued"))
    results = {"system": [], "baseline": []}
    with tempfile.TemporaryDirectory(prefix="bench-downcase-") as tmp:
        script = Path(tmp) / "unique.lua"
        script.write_text(WRK_SCRIPT)
        for r in range(1, args.rounds + 1):
            for name in ("system", "baseline")[:: 1 if r % 2 else -1]:
                workdir = Path(tmp) / f"{name}-{r}"
                workdir.mkdir()
                results[name].append(one_round(args, name == "system", workdir, script))
                print(row(r, name, results[name][-1]), flush=True)

    med = {name: {k: statistics.median(s[k] for s in runs) for k in runs[0]
                  if k not in ("issued", "logged")} for name, runs in results.items()}
    a, b = med["system"], med["baseline"]
    print(row("med", "system", a) + "\n" + row("med", "baseline", b))
    ratio = a["rps"] / b["rps"]
    print(f"(a)/(b): req/s {ratio:.2f} (target >= 0.85: {'met' if ratio >= 0.85 else 'NOT met'}),"
          f" publisher CPU/req {a['pub_cpu'] / b['pub_cpu']:.2f},"
          f" (publisher + subscriber) CPU/req {(a['pub_cpu'] + a['sub_cpu']) / b['pub_cpu']:.2f}")
    total = (b["pub_cpu"] + b["wrk_cpu"]) / (a["pub_cpu"] + a["sub_cpu"] + a["wrk_cpu"])
    print(f"(b)/(a) of all CPU per request (wrk + servers): {total:.2f}, which req/s (a)/(b) "
          f"approaches when the cores are the limit")
    busiest = max(s["others"] for runs in results.values() for s in runs)
    if busiest >= 0.3:
        print(f"warning: other processes kept up to {busiest:.1f} cores busy during the load;"
              f" compare rounds with equal `others`, or trust CPU/req over req/s")
    print("every 2xx request of every (a) round is in subscriber.log, no gap lines: yes")


if __name__ == "__main__":
    main()
