#!/usr/bin/env python3
"""How long an event takes from request to subscriber.log: one-way latency at fixed rates.

Entry point (workspace root):  python3 bench/latency.py   (--no-build, --rounds, --seconds ...)

Needs `wrk` on PATH (Debian: apt-get install -y wrk). Release builds of the publisher, the
subscriber and the client `publisher/examples/paced_load.rs`. Every run starts a fresh
publisher and subscriber on loopback (port 0), connected before the load (a warm-up request is
seen in the log).

  max      wrk -c<connections> for --duration s with unique params: the rate the system takes
           when loaded flat out (closed loop), which sets the second rate below.
  1000/s   the paced client: an open-loop load at --rate req/s (request i due at start + i/rate,
           sent on the next of --paced-connections keep-alive connections whatever happened to
           the ones before), --seconds long; in the same process and on the same clock a reader
           follows subscriber.log as it grows (polling every 50 us, no inotify) and notes when
           each param's line appears.
  half     the same at half the max rate.

Printed per run: p50 / p99 / p99.9 / max of (line seen − sent) and of the HTTP answer time, in
ms; `lag`, how late the client sent its requests against their due times (its own pacing
error, p99); `poll`, the reader's measured sleep when the log had not grown (a line is seen at
most one period plus a read after it is written); `others`, cores busy with anything else. Every
request must be answered 200 and its line seen, and the log must hold no gap line, or the
benchmark aborts. With --other-subscriber PATH each paced run is repeated, in the same round and
at the same rate, with that subscriber binary (another build: `other` rows, `<run> other` in the
JSON), so a change to the subscriber is compared within one run. Targets: p99 < 2 ms at
1000/s, p99 < 5 ms at half the max rate. Python paces too coarsely for 20 000+ req/s, hence the
client in Rust. Figures also go to
bench/results/latency.json (--json).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import common
from common import ROOT
from downcase import WRK_SCRIPT  # unique params, as downcase.py's load

CLIENT = common.RELEASE / "examples" / "paced_load"
TARGETS = {"1000/s": 2.0, "half": 5.0}


def start_system(children, workdir, subscriber="subscriber"):
    """Publisher + subscriber (the release build, or the binary `subscriber` names), the
    subscriber's log holding a warm-up line; returns (servers, HTTP address, log path)."""
    servers = {"publisher": common.start(children, workdir, "publisher", common.PUBLISHER_ENV)}
    bound = common.wait_for("the publisher", lambda: common.listening(workdir / "publisher.stderr"))
    log = workdir / "subscriber.log"
    servers["subscriber"] = common.start(
        children, workdir, subscriber,
        {"EVENTS_CONNECT": bound["events"], "REPLAY_CONNECT": bound["replay"],
         "LOG_FILE": str(log)}, stderr_name="subscriber")
    tries = iter(range(10**9))

    def warmed_up():  # the slow joiner: send until one request makes it to the log
        common.get(f"http://{bound['http']}/downcase?param=warmup-{next(tries)}")
        return log.exists() and 'param="warmup-' in log.read_text()
    common.wait_for("the subscriber to log a warm-up request", warmed_up)
    return servers, bound["http"], log


def max_rate(args, workdir, script):
    """wrk flat out against a fresh system: its req/s."""
    children = []
    try:
        servers, http, _ = start_system(children, workdir)
        pids = [p.pid for p in servers.values()]
        before = common.clocks(pids)
        stats = common.run_wrk(args, f"http://{http}/downcase?param=max", script)
        load = [b - a for a, b in zip(before, common.clocks(pids))]
        common.alive(workdir, servers)
        if stats["status_errors"] or stats["socket_errors"]:
            sys.exit(f"bench: wrk saw {stats['status_errors']} non-2xx answers and "
                     f"{stats['socket_errors']} socket errors")
        return {"rps": stats["rps"], "p50_ms": stats["p50_us"] / 1e3,
                "p99_ms": stats["p99_us"] / 1e3, "others": common.others(load)}
    finally:
        common.stop(children)


def paced(args, workdir, rate, tag, subscriber="subscriber"):
    """The paced client at `rate` against a fresh system; its summary with `others` added."""
    children = []
    try:
        servers, http, log = start_system(children, workdir, subscriber)
        pids = [p.pid for p in servers.values()]
        before = common.clocks(pids)
        out = subprocess.run([CLIENT, "--addr", http, "--log", str(log), "--rate", f"{rate:.0f}",
                              "--seconds", str(args.seconds), "--connections",
                              str(args.paced_connections), "--prefix", f"{tag}-"],
                             capture_output=True, text=True, check=True).stdout
        load = [b - a for a, b in zip(before, common.clocks(pids))]
        common.alive(workdir, servers)
        line = next((l for l in out.splitlines() if l.startswith("BENCH ")), None)
        if line is None:
            sys.exit(f"bench: no summary from the paced client:\n{out}")
        s = json.loads(line[len("BENCH "):])
        gaps = sum(" gap " in l for l in log.read_text().splitlines())
        if s["missing"] or s["failures"] or s["answered"] != s["requests"] or gaps:
            sys.exit(f"bench: {s['missing']} of {s['requests']} events not seen in the log, "
                     f"{s['requests'] - s['answered']} not answered 200, {s['failures']} "
                     f"failures, {gaps} gap lines")
        # The client is a child: its CPU is in clocks()' children figure, as wrk's is.
        s["others"] = common.others(load)
        return s
    finally:
        common.stop(children)


ROW = "{:5} {:12} {:>7} {:>21} {:>21} {:>8} {:>8} {:>7} {:>6}"


def ms(d):
    return f"{d['p50_ms']:.2f} {d['p99_ms']:.2f} {d['p999_ms']:.2f} {d['max_ms']:.1f}"


def row(r, name, s):
    return ROW.format(r, name, f"{s['achieved_rate']:.0f}", ms(s["line"]), ms(s["answer"]),
                      f"{s['lag']['p99_ms'] * 1e3:.0f} us", f"{s['poll_us']['mean']:.0f} us",
                      f"{s['logged']}", f"{s['others']:.1f}")


def median_run(runs):
    """Per figure, the median over rounds (the distributions' quantiles too)."""
    def med(values):
        if isinstance(values[0], dict):
            return {k: med([v[k] for v in values]) for k in values[0]}
        if isinstance(values[0], list):
            return [med(list(column)) for column in zip(*values)]
        return statistics.median(values)
    return med(runs)


def main():
    p = common.parser(__doc__.split("\n")[0])
    p.set_defaults(rounds=1)
    p.add_argument("--rate", type=float, default=1000.0, help="the first paced rate, req/s")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds per paced run")
    p.add_argument("--paced-connections", type=int, default=64,
                   help="the paced client's keep-alive connections")
    p.add_argument("--other-subscriber", type=Path, metavar="PATH",
                   help="also run each paced rate with this subscriber binary (another build)")
    common.json_flag(p, "latency")
    args = p.parse_args()
    common.prepare(args, ["-p", "publisher", "-p", "subscriber"])
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "publisher", "--example",
                        "paced_load"], cwd=ROOT, check=True)
    load_before = os.getloadavg()
    print(f"max: wrk -t{args.threads} -c{args.connections} -d{args.duration}s; paced: "
          f"{args.seconds:g} s, {args.paced_connections} connections; {args.rounds} round(s); "
          f"{os.cpu_count()} CPUs, load average {load_before[0]:.1f}")
    paced_runs = ["1000/s", "half"]
    if args.other_subscriber:
        paced_runs += [f"{name} other" for name in paced_runs]
    results = {"max": [], **{name: [] for name in paced_runs}}
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        script = Path(tmp) / "unique.lua"
        script.write_text(WRK_SCRIPT)
        print("       rate     line seen − sent (ms)      HTTP answer (ms)   lag p99"
              "  poll  logged others")
        print(ROW.format("round", "run", "req/s", "p50 p99 p99.9 max", "p50 p99 p99.9 max",
                         "", "", "", ""))
        for r in range(1, args.rounds + 1):
            workdir = Path(tmp) / f"max-{r}"
            workdir.mkdir()
            results["max"].append(max_rate(args, workdir, script))
            top = results["max"][-1]
            print(f"{r:<5} max     {top['rps']:>7.0f}   (wrk, closed loop: p50 "
                  f"{top['p50_ms']:.2f} ms, p99 {top['p99_ms']:.2f} ms, others "
                  f"{top['others']:.1f})", flush=True)
            rates = {"1000/s": args.rate, "half": top["rps"] / 2}
            # Interleaved: this build first in odd rounds, the other in even ones.
            order = paced_runs if r % 2 or not args.other_subscriber else (
                [n for n in paced_runs if n.endswith(" other")] +
                [n for n in paced_runs if not n.endswith(" other")])
            for name in order:
                base = name.removesuffix(" other")
                subscriber = args.other_subscriber.resolve() if name != base else "subscriber"
                workdir = Path(tmp) / f"{name.replace('/', '').replace(' ', '-')}-{r}"
                workdir.mkdir()
                results[name].append(paced(args, workdir, rates[base], f"{name[:4]}{r}",
                                           subscriber))
                print(row(r, name, results[name][-1]), flush=True)

    med = {name: median_run(runs) for name, runs in results.items()}
    for name in paced_runs:
        if args.rounds > 1:
            print(row("med", name, med[name]))
    verdicts = {}
    for name, target in TARGETS.items():
        p99 = med[name]["line"]["p99_ms"]
        verdicts[name] = p99 < target
        print(f"{name} ({med[name]['rate']:.0f} req/s): line p99 {p99:.2f} ms (target < "
              f"{target:g} ms: {'met' if p99 < target else 'NOT met'})")
        if f"{name} other" in med:
            print(f"  other subscriber: line p99 {med[name + ' other']['line']['p99_ms']:.2f} ms")
    print(f"max (wrk): {med['max']['rps']:.0f} req/s")
    load_after = os.getloadavg()
    print(f"machine: load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    common.warn_if_busy(results)
    print("every request answered 200 and its line seen in subscriber.log, no gap line: yes")
    common.write_json(args.json, {
        "settings": {"rounds": args.rounds, "seconds": args.seconds,
                     "paced_connections": args.paced_connections, "wrk_duration_s": args.duration,
                     "wrk_connections": args.connections, "cpus": os.cpu_count(),
                     "load_average": [load_before[0], load_after[0]]},
        "rounds": results, "medians": med,
        "targets_ms": TARGETS, "met": verdicts,
    })


if __name__ == "__main__":
    main()
