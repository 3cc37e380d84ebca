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
  --costs adds (c) unguarded: the system with GUARD_DISABLED=true (no socket guard), and
                (d) keyed: the system with SHARED_KEY_FILE set (every message tagged).
  --anchor adds (f) anchor: a bare axum /downcase (publisher/examples/bare_downcase.rs: the same
                JSON answer, nothing published, no limits), the figure the system is held to.
  --journal adds (e) journaled: the system with JOURNAL_DIR set (JOURNAL_SYNC=always, group
                commit), with its fsyncs per second and events per fsync from /metrics.

Columns: req/s and wrk's latency; `pub us/req`, the publisher's utime+stime per completed
request ((a): until the log has settled); `sub us/ev`, the subscriber's per event; `wrk us/req`;
`others`, cores busy with anything else during the load. `med`: medians over rounds. wrk and
the servers share the cores, so once those are all busy req/s follows total CPU per request,
and CPU/req is the steadier figure. The issue's target is req/s (a)/(b) >= 0.85. The figures
are also written as JSON (--json, default bench/results/downcase.json).
"""

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import common
from common import PUBLISHER_ID

# Globals, not locals: thread:set/get reach only a thread's globals.
WRK_SCRIPT = r"""
threads, n = {}, 0
function setup(thread) table.insert(threads, thread); thread:set("id", #threads) end
function request()
  n = n + 1
  return wrk.format(nil, "/downcase?param=HeLLo-" .. id .. "-" .. n)
end
""" + common.WRK_DONE
EVENT_LINE = re.compile(r'^\S+ (\S+) ' + PUBLISHER_ID + r'#(\d+)(?: param="([^"]*)")?')


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


def variant_env(name, workdir):
    """What a run adds to both servers' environment: (c) no guard (GUARD_DISABLED reaches the
    subscriber too, so neither the publisher's sockets nor the subscriber's are guarded),
    (d) message tags."""
    if name == "unguarded":
        return {"GUARD_DISABLED": "true"}
    if name == "keyed":
        key = workdir / "shared.key"
        key.write_text("a shared secret for the benchmark, 32+ bytes\n")
        return {"SHARED_KEY_FILE": str(key)}
    if name == "journaled":
        return {"JOURNAL_DIR": str(workdir / "journal"), "JOURNAL_SYNC": "always"}
    return {}


def one_round(args, name, workdir, script):
    """Starts one configuration, loads it with wrk, checks the log, stops it; returns the
    figures."""
    children = []
    system = name not in ("baseline", "anchor")
    try:
        extra = variant_env(name, workdir)
        env = {**common.PUBLISHER_ENV, "EVENTS_DISABLED": str(not system).lower(), **extra}
        program = "examples/bare_downcase" if name == "anchor" else "publisher"
        servers = {"publisher": common.start(children, workdir, program, env, "publisher")}
        bound = common.wait_for("the publisher",
                                lambda: common.listening(workdir / "publisher.stderr"))
        base, log = f"http://{bound['http']}/downcase?param=", workdir / "subscriber.log"
        if system:
            servers["subscriber"] = common.start(
                children, workdir, "subscriber",
                {"EVENTS_CONNECT": bound["events"], "REPLAY_CONNECT": bound["replay"],
                 "LOG_FILE": str(log), **extra})
            tries = iter(range(10**9))

            def warmed_up():  # the slow joiner: send until one request makes it to the log
                common.get(f"{base}warmup-{next(tries)}")
                return log.exists() and 'param="warmup-' in log.read_text()
            common.wait_for("the subscriber to log a warm-up request", warmed_up)
        else:
            common.wait_for("the publisher to answer", lambda: common.get(f"{base}warmup") == 200)
        pids = [p.pid for p in servers.values()]
        api = f"http://{bound['http']}"
        journal = "JOURNAL_DIR" in extra
        fsyncs = common.metrics(api).get("journal_fsyncs_total", 0.0) if journal else 0.0
        journaled = common.metrics(api).get("journal_events_total", 0.0) if journal else 0.0
        before = common.clocks(pids)
        stats = common.run_wrk(args, f"{base}HeLLo", script)
        load = [b - a for a, b in zip(before, common.clocks(pids))]
        if journal:
            after = common.metrics(api)
            seconds = stats["duration_us"] / 1e6
            stats["fsyncs_s"] = (after.get("journal_fsyncs_total", 0.0) - fsyncs) / seconds
            stats["events_fsync"] = ((after.get("journal_events_total", 0.0) - journaled)
                                     / max(1.0, after.get("journal_fsyncs_total", 0.0) - fsyncs))
        stats["others"] = common.others(load)
        stats["wrk_cpu"] = load[2] / stats["requests"]
        if system:  # the servers' CPU counts until the last event is written
            common.log_settled(log)
            stats["logged"] = check_log(log, stats)
        spent = [b - a for a, b in zip(before[3:], common.clocks(pids)[3:])]
        common.alive(workdir, servers)
        if stats["status_errors"] or stats["socket_errors"]:
            sys.exit(f"bench: wrk saw {stats['status_errors']} non-2xx answers and "
                     f"{stats['socket_errors']} socket errors")
        stats["pub_cpu"] = spent[0] / stats["requests"]
        if system:
            stats["sub_cpu"] = spent[1] / stats["logged"]
        return stats
    finally:
        common.stop(children)


ROW = "{:5} {:9} {:>8} {:>7} {:>7} {:>11} {:>10} {:>11} {:>7}  {}"


def row(r, name, s):
    """One line of the table."""
    counts = f"{s['logged']} / {s['ok']} / {sum(s['issued'])}" if "logged" in s else ""
    return ROW.format(r, name, f"{s['rps']:.0f}", f"{s['p50_us'] / 1e3:.2f}",
                      f"{s['p99_us'] / 1e3:.2f}", f"{s['pub_cpu']:.1f}",
                      f"{s['sub_cpu']:.1f}" if "sub_cpu" in s else "-",
                      f"{s['wrk_cpu']:.1f}", f"{s['others']:.1f}", counts).rstrip()


def main():
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("--costs", action="store_true",
                        help="also (c) the system with no socket guard and (d) with message tags")
    parser.add_argument("--anchor", action="store_true",
                        help="also (f) a bare axum /downcase, the anchor the system is held to")
    parser.add_argument("--journal", action="store_true",
                        help="also (e) the system with the journal (JOURNAL_SYNC=always)")
    common.json_flag(parser, "downcase")
    args = parser.parse_args()
    common.prepare(args, ["-p", "publisher", "-p", "subscriber"])
    if args.anchor and not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "publisher", "--example",
                        "bare_downcase"], cwd=common.ROOT, check=True)
    load_before = os.getloadavg()[0]
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {args.rounds} rounds"
          f" of each interleaved, {os.cpu_count()} CPUs")
    print(ROW.format("round", "run", "req/s", "p50 ms", "p99 ms", "pub us/req", "sub us/ev",
                     "wrk us/req", "others", "logged / 2xx / issued"))
    names = ("system", "unguarded", "keyed", "baseline") if args.costs else ("system", "baseline")
    if args.journal:
        names = names[:1] + ("journaled",) + names[1:]
    if args.anchor:
        names = names + ("anchor",)
    results = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="bench-downcase-") as tmp:
        script = Path(tmp) / "unique.lua"
        script.write_text(WRK_SCRIPT)
        for r, name in common.interleaved(args.rounds, names):
            workdir = Path(tmp) / f"{name}-{r}"
            workdir.mkdir()
            results[name].append(one_round(args, name, workdir, script))
            print(row(r, name, results[name][-1]), flush=True)

    med = common.medians(results, skip=("logged",))
    a, b = med["system"], med["baseline"]
    print("\n".join(row("med", name, med[name]) for name in names))
    ratio = a["rps"] / b["rps"]
    print(f"(a)/(b): req/s {ratio:.2f} (target >= 0.85: {'met' if ratio >= 0.85 else 'NOT met'}),"
          f" publisher CPU/req {a['pub_cpu'] / b['pub_cpu']:.2f},"
          f" (publisher + subscriber) CPU/req {(a['pub_cpu'] + a['sub_cpu']) / b['pub_cpu']:.2f}")
    total = (b["pub_cpu"] + b["wrk_cpu"]) / (a["pub_cpu"] + a["sub_cpu"] + a["wrk_cpu"])
    print(f"(b)/(a) of all CPU per request (wrk + servers): {total:.2f}, which req/s (a)/(b) "
          f"approaches when the cores are the limit")
    for name, what in (("unguarded", "the socket guard"), ("keyed", "message tags")):
        if name in med:
            with_it, without = (a, med[name]) if name == "unguarded" else (med[name], a)
            print(f"cost of {what}: req/s with/without {with_it['rps'] / without['rps']:.2f} "
                  f"(target >= 0.90), publisher CPU/req {with_it['pub_cpu'] / without['pub_cpu']:.2f},"
                  f" subscriber CPU/event {with_it['sub_cpu'] / without['sub_cpu']:.2f}")
    if "anchor" in med:
        ratio = a["rps"] / med["anchor"]["rps"]
        print(f"(a)/(f), the system against bare axum: req/s {ratio:.2f} (target >= 0.85: "
              f"{'met' if ratio >= 0.85 else 'NOT met'}), publisher CPU/req "
              f"{a['pub_cpu'] / med['anchor']['pub_cpu']:.2f}")
    if "journaled" in med:
        j = med["journaled"]
        ratio = j["rps"] / a["rps"]
        print(f"cost of the journal (always, grouped): req/s with/without {ratio:.2f} (target >= 0.5:"
              f" {'met' if ratio >= 0.5 else 'NOT met'}), p99 {j['p99_us'] / 1e3:.2f} ms vs"
              f" {a['p99_us'] / 1e3:.2f} ms, publisher CPU/req {j['pub_cpu'] / a['pub_cpu']:.2f};"
              f" {j['fsyncs_s']:.0f} fsyncs/s, {j['events_fsync']:.1f} events per fsync")
    common.warn_if_busy(results)
    print("every 2xx request of every (a) round is in subscriber.log, no gap lines: yes")
    common.write_json(args.json, {
        "settings": {"rounds": args.rounds, "duration_s": args.duration, "threads": args.threads,
                     "connections": args.connections, "cpus": os.cpu_count(),
                     "load_average": [load_before, os.getloadavg()[0]]},
        "rounds": results, "medians": med,
        "ratios": {"system_over_baseline": a["rps"] / b["rps"], **({
            "system_over_anchor": a["rps"] / med["anchor"]["rps"]} if "anchor" in med else {})},
    })


if __name__ == "__main__":
    main()
