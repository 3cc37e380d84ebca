#!/usr/bin/env python3
"""What one publisher's PUB fan-out costs: 1, 2 and 4 subscribers on one publisher, every event
checked in every log, each figure against 1 subscriber in the same run.

Entry point (workspace root):  python3 bench/fanout.py   (--no-build, --rounds, --duration ...)

Needs `wrk` on PATH (Debian: apt-get install -y wrk). Release builds of the publisher and the
subscriber. Every run starts fresh processes on loopback (port 0): one publisher and S
subscribers, each with a log and a health port of its own, all connected and caught up (a
warm-up request is seen in every log) before wrk sends `GET /downcase?param=<thread>-<n>` for
--duration s. Afterwards every log settles and must hold every request wrk completed: unbroken
seq numbers, no gap line, one line per param (as bench/replay.py's live run). Rounds are
interleaved (1 2 4, 4 2 1, ...) so drift on a shared machine falls on all alike.

Columns: S; events/s each log received (the slowest log; all hold the same events); deliveries/s
(events/s × S, what left the publisher's PUB socket); CPU (utime + stime) in us of the
publisher per event published and per delivery, of each subscriber per event (mean), of wrk
per request; `others`, cores busy with anything else meanwhile. `med`: medians over rounds,
then each against S=1. wrk, the publisher and S subscribers share the machine's cores, so
events/s falls as S grows for want of CPU; the publisher's CPU per event is the steadier
figure, and its growth with S is the fan-out's own cost. A straight line through the medians
(least squares) gives that cost per subscriber, and from it where one publisher core would be
full. The figures are also written as JSON (--json, default bench/results/fanout.json).
"""

import json
import os
import sys
import tempfile
from pathlib import Path

import common
import replay
from common import ROOT

SUBSCRIBERS = (1, 2, 4)


def start_subscribers(children, workdir, bound, count):
    """Starts `count` subscribers, each in a directory of its own (its log, position file and
    stderr there) with its health port on an ephemeral loopback port."""
    subs = []
    for i in range(1, count + 1):
        home = workdir / f"sub-{i}"
        home.mkdir()
        log = home / "subscriber.log"
        process = common.start(children, home, "subscriber",
                               {"EVENTS_CONNECT": bound["events"],
                                "REPLAY_CONNECT": bound["replay"], "LOG_FILE": str(log),
                                "HEALTH_ADDR": "127.0.0.1:0"})
        subs.append((home, log, process))
    return subs


def fanout(args, workdir, script, count):
    """One run: a publisher and `count` subscribers under wrk, every event checked in every log."""
    children = []
    try:
        publisher, bound, base = replay.start_publisher(children, workdir)
        subs = start_subscribers(children, workdir, bound, count)
        servers = {"publisher": publisher,
                   **{f"sub-{i}/subscriber": p for i, (_, _, p) in enumerate(subs, 1)}}
        tries = iter(range(10**9))

        def warmed_up():  # the slow joiners: send until a request makes it to every log
            common.get(f"{base}/downcase?param=warmup-{next(tries)}")
            return all(log.exists() and 'param="warmup-' in log.read_text() for _, log, _ in subs)
        common.wait_for(f"{count} subscribers to log a warm-up request", warmed_up, timeout=60)
        # A log holding a warm-up holds everything before it: each subscriber is live. What it
        # missed before joining (the first warm-ups) it fetched by replay: not odd.
        joined = [replay.replays(home) for home, _, _ in subs]
        pids = [p.pid for p in servers.values()]
        before = common.clocks(pids)
        stats = common.run_wrk(args, f"{base}/downcase", script)
        load = [b - a for a, b in zip(before, common.clocks(pids))]
        for _, log, _ in subs:  # the servers' CPU counts until the last event is written
            common.log_settled(log)
        spent = [b - a for a, b in zip(before[3:], common.clocks(pids)[3:])]
        common.alive(workdir, servers)
        if stats["status_errors"] or stats["socket_errors"]:
            sys.exit(f"bench: wrk saw {stats['status_errors']} non-2xx answers and "
                     f"{stats['socket_errors']} socket errors")
        logged = [replay.check_live_log(log, stats) for _, log, _ in subs]
        seconds = stats["duration_us"] / 1e6
        events = min(logged)
        seen = replay.oddities(workdir, base)
        warnings = seen["warnings"]
        replays = gaps = 0
        for (home, _, _), expected in zip(subs, joined):
            odd = replay.oddities(home, base, expected_replays=expected)
            replays, gaps = replays + odd["replays"], gaps + odd["gaps"]
            warnings += [f"{home.name}/{w}" for w in odd["warnings"]]
        return {"events_s": events / seconds, "deliveries_s": sum(logged) / seconds,
                "seconds": seconds, "logged": events, "ok": stats["ok"],
                "issued": sum(stats["issued"]), "p99_ms": stats["p99_us"] / 1e3,
                "pub_us": spent[0] / events, "pub_us_delivery": spent[0] / sum(logged),
                "sub_us": sum(spent[1:]) / sum(logged), "wrk_us": load[2] / stats["requests"],
                "others": common.others(load), "cuts": seen["cuts"], "replays": replays,
                "gaps": gaps, "warnings": warnings}
    finally:
        common.stop(children)


def fit(points):
    """Least-squares (intercept, slope) of y over x for [(x, y)]."""
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    slope = (sum((x - mx) * (y - my) for x, y in points)
             / sum((x - mx) ** 2 for x, _ in points))
    return my - slope * mx, slope


ROW = "{:5} {:>2} {:>9} {:>12} {:>9} {:>10} {:>9} {:>10} {:>6}  {}"


def row(r, count, s):
    """One line of the table."""
    return ROW.format(r, count, f"{s['events_s']:.0f}", f"{s['deliveries_s']:.0f}",
                      f"{s['pub_us']:.1f}", f"{s['pub_us_delivery']:.2f}", f"{s['sub_us']:.1f}",
                      f"{s['wrk_us']:.1f}", f"{s['others']:.1f}",
                      f"{s['logged']:.0f} / {s['ok']:.0f} / {s['issued']:.0f} in each log, "
                      f"p99 {s['p99_ms']:.1f} ms")


def main():
    p = common.parser(__doc__.split("\n")[0])
    p.add_argument("--json", type=Path, default=ROOT / "bench/results/fanout.json",
                   help="where the figures are written")
    args = p.parse_args()
    if args.threads > 9:
        sys.exit("bench: at most 9 wrk threads (params are <thread>-<7 digits>)")
    common.prepare(args, ["-p", "publisher", "-p", "subscriber"])
    load_before = os.getloadavg()
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, subscribers "
          f"{', '.join(map(str, SUBSCRIBERS))}, {args.rounds} rounds interleaved, "
          f"{os.cpu_count()} CPUs, load average {load_before[0]:.1f}")
    results = {count: [] for count in SUBSCRIBERS}
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        script = replay.wrk_script(tmp)
        print(ROW.format("round", "S", "events/s", "deliveries/s", "pub us/ev", "pub us/del",
                         "sub us/ev", "wrk us/req", "others", "detail"))
        for r, count in common.interleaved(args.rounds, SUBSCRIBERS):
            workdir = Path(tmp) / f"{count}-{r}"
            workdir.mkdir()
            s = fanout(args, workdir, script, count)
            results[count].append(s)
            print(row(r, count, s), flush=True)

    med = common.medians(results)
    for count in SUBSCRIBERS:
        print(row("med", count, med[count]))
    one = med[SUBSCRIBERS[0]]
    ratios = {count: {"events_s": med[count]["events_s"] / one["events_s"],
                      "deliveries_s": med[count]["deliveries_s"] / one["deliveries_s"],
                      "pub_us": med[count]["pub_us"] / one["pub_us"]} for count in SUBSCRIBERS}
    for count in SUBSCRIBERS[1:]:
        q = ratios[count]
        print(f"S={count} against S=1: events/s per log {q['events_s']:.2f}, deliveries/s "
              f"{q['deliveries_s']:.2f}, publisher CPU per event {q['pub_us']:.2f}")
    base, per_sub = fit([(count, med[count]["pub_us"]) for count in SUBSCRIBERS])
    print(f"publisher CPU per event = {base:.1f} us + {per_sub:.2f} us per subscriber "
          f"(least squares over the medians)")
    ceilings = {}
    if per_sub > 0:
        for count in (1, 10, 100):
            ceilings[count] = 1e6 / (base + per_sub * count)
        print("one publisher core full at: " + ", ".join(
            f"{c:.0f} events/s with {count} subscriber{'s' if count > 1 else ''}"
            for count, c in ceilings.items())
              + f"; the fan-out alone: {1e6 / per_sub:.0f} deliveries/s per core")
    else:
        print("no growth of publisher CPU per event with subscribers measurable in this run")
    load_after = os.getloadavg()
    print(f"machine: load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
          f"`others` = cores busy with anything else during each run")
    common.warn_if_busy(results)
    odd = [f"S={count} round {r}: {k} {s[k]}" for count in SUBSCRIBERS
           for r, s in enumerate(results[count], 1) for k in ("cuts", "replays", "gaps") if s[k]]
    # Run without SHARED_KEY_FILE on purpose: each process's warning of that is expected.
    odd += [f"S={count} round {r}: {w}" for count in SUBSCRIBERS
            for r, s in enumerate(results[count], 1) for w in s["warnings"]
            if "NOT authenticated" not in w]
    print("every event of every run is in every subscriber.log, in order, no gap line: yes"
          + ("" if not odd else "; seen on the way:\n  " + "\n  ".join(odd)))

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "settings": {"rounds": args.rounds, "duration_s": args.duration, "threads": args.threads,
                     "connections": args.connections, "subscribers": SUBSCRIBERS,
                     "cpus": os.cpu_count(), "load_average": [load_before[0], load_after[0]]},
        "rounds": results, "medians": med, "against_one": ratios,
        "publisher_us_per_event": {"base": base, "per_subscriber": per_sub},
        "one_core_full_events_s": ceilings,
    }, indent=2) + "\n")
    shown = args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json
    print(f"written: {shown}")


if __name__ == "__main__":
    main()
