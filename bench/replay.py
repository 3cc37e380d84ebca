#!/usr/bin/env python3
"""Nothing lost between publisher and log, and what it costs: the live rate into
subscriber.log against raw zmq.rs PUB→SUB, catch-up by replay, and the replay window's memory.

Entry point (workspace root):  python3 bench/replay.py   (--no-build, --rounds, --duration ...)

Needs `wrk` on PATH (Debian: apt-get install -y wrk). Release builds of the publisher and the
subscriber, and the guard's bench binary (`cargo bench -p guard --bench relay`), which gives
the baseline. Every run starts fresh processes on loopback (port 0). Events are ~100 B as the
publisher sends them: `GET /downcase?param=<thread>-<n, 7 digits>`, unique per request; the
`event` line says what they measured (the window's bytes per event, less its 64 B of
bookkeeping). Rounds are interleaved (a b c, c b a, ...) so drift on a shared machine falls on
all alike.

  live      the publishing path itself: `publisher/examples/flood.rs`, the publisher's own
            code bound and configured as the binary is, with tasks publishing instead of HTTP
            handlers, and a subscriber connected before (a warm-up event is seen in the log).
            --flood-events events are published as fast as the path takes them; timed from the
            command to the moment the log's last line is the last of them (polled every 5 ms).
            Then the log must hold each of them once, in order, no gap line. events/s = N / that
            time; CPU per event of the flood process (publishing tasks, socket task, guard) and
            of the subscriber. This is the rate the issue compares with raw PUB→SUB.
  live-http publisher + subscriber, connected before the load (a warm-up request is seen in the
            log), wrk for --duration s. Afterwards the log settles (a heartbeat would expose a
            lost tail) and every request wrk completed must be in it: unbroken seq numbers, no
            gap line, one line per param; `logged / 2xx / issued` as in bench/downcase.py.
            events/s = logged / wrk's duration. The publisher takes at most what HTTP brings,
            with wrk and both servers on the same cores: the rate events arrive at in use,
            bounded by the HTTP front, which catch-up must outrun.
  catch-up  --catch-up-events requests with no subscriber (wrk stops each thread at its share;
            the few in flight are published too), then a subscriber (FROM=earliest) is started
            and timed until the log's last line is the newest event; then the log must be
            exactly seq 1..N with no gap line. events/s = N / that time, which includes the
            subscriber's start and its wait for the first heartbeat (sent each second while
            idle); `replay s` is the subscriber's own "caught up" figure (its catch-up only).
  raw       the guard's bench binary, PUB→SUB over loopback in one process, one frame of the
            events' size: `direct` (the baseline) and `guarded` (through the guard, as the
            publisher sends), one 1.5 s measurement of each.
  memory    once, after the rounds: a publisher with the default window (REPLAY_WINDOW_EVENTS,
            REPLAY_WINDOW_BYTES unset) is loaded with wrk until its replay_window_events gauge
            reaches --fill-events or stops growing; VmRSS idle (after one request) and then.

Columns: events/s; seconds measured; CPU (utime + stime) per event, in us, of the publisher,
the subscriber and wrk; `others`, cores busy with anything else meanwhile. `med`: medians over
rounds. Targets (the issue's Speed section): live / raw >= 0.5; catch-up faster than the
live rate (live-http: the rate events come at in use; the event path's own rate is printed
beside it).
The figures are also written as JSON (--json, default bench/results/replay.json).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from common import PUBLISHER_ID, ROOT

# Globals, not locals: thread:set/get reach only a thread's globals. @LIMIT@ > 0 stops each
# thread after that many answers (catch-up and memory fills); 0 runs for the duration. Params
# are of fixed width, so every event has the same size.
WRK_SCRIPT = r"""
threads, n, got, limit = {}, 0, 0, @LIMIT@
function setup(thread) table.insert(threads, thread); thread:set("id", #threads) end
function request()
  n = n + 1
  return wrk.format(nil, string.format("/downcase?param=%d-%07d", id, n))
end
@RESPONSE@
""" + common.WRK_DONE
# Only with a limit: a response() makes wrk run Lua for every answer.
WRK_STOP = r"""
function response()
  got = got + 1
  if got >= limit then wrk.thread:stop() end
end
"""
EVENT_LINE = re.compile(r'^\S+ (\S+) ' + PUBLISHER_ID + r'#(\d+)(?: param="([^"]*)")?')
LAST_SEQ = re.compile(rb'#(\d+)[^\n]*\n$')
# The publisher's window accounting adds this much to each event's frames (replay/window.rs).
ENTRY_OVERHEAD = 64
RUNS = ("live", "live-http", "catch-up", "raw")
FLOOD = common.RELEASE / "examples" / "flood"


def wrk_script(tmp, limit=0):
    """Writes the wrk script (stopping each thread after `limit` answers when > 0)."""
    path = Path(tmp) / f"events-{limit}.lua"
    path.write_text(WRK_SCRIPT.replace("@LIMIT@", str(limit))
                    .replace("@RESPONSE@", WRK_STOP if limit else ""))
    return path


def rss_mb(pid):
    """VmRSS of `pid` in MB (10^6 bytes)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:", 1)[1].split()[0]) * 1024 / 1e6


def window(base):
    """(events, bytes) the publisher's replay window holds, from /metrics."""
    m = common.metrics(base)
    return int(m.get("replay_window_events", 0)), int(m.get("replay_window_bytes", 0))


def settled_window(base):
    """The window once two reads 0.3 s apart agree (the last answers are published)."""
    last = None
    while (now := window(base)) != last:
        last = now
        time.sleep(0.3)
    return now


def start_publisher(children, workdir, env=None):
    """Starts a publisher; returns (process, its bound addresses, its HTTP base URL), once it
    answers (one request: event #1)."""
    process = common.start(children, workdir, "publisher", {**common.PUBLISHER_ENV, **(env or {})})
    bound = common.wait_for("the publisher", lambda: common.listening(workdir / "publisher.stderr"))
    base = f"http://{bound['http']}"
    common.wait_for("the publisher to answer",
                    lambda: common.get(f"{base}/downcase?param=warmup") == 200)
    return process, bound, base


def start_subscriber(children, workdir, bound, log):
    """Starts a subscriber following `bound`'s events (FROM=earliest, the default)."""
    return common.start(children, workdir, "subscriber",
                        {"EVENTS_CONNECT": bound["events"], "REPLAY_CONNECT": bound["replay"],
                         "LOG_FILE": str(log)})


def stderr_lines(path, message):
    """The `fields` of every JSON log line of `path` whose message is `message`."""
    found = []
    for line in path.read_text().splitlines():
        try:
            fields = json.loads(line).get("fields", {})
        except ValueError:
            continue
        if fields.get("message") == message:
            found.append(fields)
    return found


def replays(workdir):
    """How many catch-ups by replay the subscriber has begun."""
    return len(stderr_lines(workdir / "subscriber.stderr", "catching up by replay"))


def oddities(workdir, base, expected_replays=0):
    """What a run should not show: guard cuts (/metrics guard_cut_total), catch-ups by replay
    beyond `expected_replays` and gaps reported by the subscriber, warnings of either process."""
    cuts = sum(v for k, v in common.metrics(base).items() if k.startswith("guard_cut_total"))
    seen = {"cuts": int(cuts)}
    sub = workdir / "subscriber.stderr"
    if sub.exists():
        seen["replays"] = replays(workdir) - expected_replays
        seen["gaps"] = len(stderr_lines(sub, "events missing; gap written"))
    warnings = []
    for name in ("publisher", "subscriber"):
        path = workdir / f"{name}.stderr"
        if path.exists():
            # Not odd: the start-up warning that messages are not tagged (no SHARED_KEY_FILE).
            warnings += [f"{name}: {line}" for line in path.read_text().splitlines()
                         if ('"level":"WARN"' in line or '"level":"ERROR"' in line)
                         and "NOT authenticated" not in line]
    seen["warnings"] = warnings
    return seen


def check_live_log(log, stats):
    """Counts this run's events in the log; fails on gaps, duplicates, a broken seq or a
    missing 2xx. Lines before the last warm-up are skipped (the slow joiner)."""
    lines = log.read_text().splitlines()
    start = max(i for i, line in enumerate(lines) if 'param="warmup-' in line)
    events = [m.groups() for m in map(EVENT_LINE.match, lines[start + 1:]) if m]
    gaps = sum(topic == "gap" for topic, _, _ in events)
    seqs = [int(seq) for _, seq, _ in events]
    logged = [p for topic, _, p in events if topic == "downcase"]
    params = set(logged)
    issued = {f"{t}-{n:07d}" for t, last in enumerate(stats["issued"], 1)
              for n in range(1, last + 1)}
    cut_off = sum(stats["issued"]) - stats["requests"]  # in flight when wrk stopped
    missing = len(issued - params)
    if not seqs or gaps or seqs != list(range(seqs[0], seqs[0] + len(seqs))) \
            or len(params) < stats["ok"] or missing > cut_off or params - issued \
            or len(params) != len(logged):
        sys.exit(f"bench: log incomplete: {len(params)} logged, {stats['ok']} 2xx, "
                 f"{missing} issued but not logged (at most {cut_off} may be), {gaps} gap lines")
    return len(params)


def check_whole_log(log, newest):
    """The log must be exactly events 1..newest of one publisher, in order, no gap line."""
    seqs, gaps = [], 0
    for m in map(EVENT_LINE.match, log.read_text().splitlines()):
        if m:
            gaps += m.group(1) == "gap"
            seqs.append(int(m.group(2)))
    if gaps or seqs != list(range(1, newest + 1)):
        first_bad = next((i for i, s in enumerate(seqs, 1) if s != i), len(seqs) + 1)
        sys.exit(f"bench: log after catch-up is not events 1..{newest}: {len(seqs)} lines, "
                 f"{gaps} gap lines, first out of place at line {first_bad}")
    return len(seqs)


def last_logged(log):
    """The seq number of the log's last complete line, 0 when there is none."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 512))
            m = LAST_SEQ.search(f.read())
    except FileNotFoundError:
        return 0
    return int(m.group(1)) if m else 0


def flood_log(log, first_seq, last_seq, count, tasks):
    """The flood's events in the log: exactly seq first..last, each param once, no gap line."""
    events = [m.groups() for m in map(EVENT_LINE.match, log.read_text().splitlines()) if m]
    ours = [(topic, int(seq), param) for topic, seq, param in events
            if topic == "gap" or int(seq) >= first_seq]
    seqs = [seq for _, seq, _ in ours]
    params = {param for _, _, param in ours}
    expected = {f"{t}-{i:07d}" for t in range(1, tasks + 1)
                for i in range(1, count // tasks + (t <= count % tasks) + 1)}
    if seqs != list(range(first_seq, last_seq + 1)) or params != expected:
        gaps = sum(topic == "gap" for topic, _, _ in ours)
        sys.exit(f"bench: flood's log is not seq {first_seq}..{last_seq}, each param once: "
                 f"{len(seqs)} lines, {len(params)} params, {gaps} gap lines, "
                 f"{len(expected - params)} params missing")
    return len(seqs)


def live(args, workdir, scripts):
    """(1): the publishing path flooded without HTTP, every event checked in the log."""
    children = []
    try:
        flood = common.start(children, workdir, "publisher", common.PUBLISHER_ENV,
                             program=args.flood, args=["--tasks", str(args.flood_tasks)],
                             piped=True)
        bound = common.wait_for("the flood's publisher",
                                lambda: common.listening(workdir / "publisher.stderr"))
        base = f"http://{bound['http']}"
        log = workdir / "subscriber.log"
        subscriber = start_subscriber(children, workdir, bound, log)
        servers = {"publisher": flood, "subscriber": subscriber}
        tries = iter(range(10**9))

        def command(line):
            flood.stdin.write(line + "\n")
            flood.stdin.flush()

        def warmed_up():  # the slow joiner: publish until one warm-up makes it to the log
            command(f"warm {next(tries)}")
            return log.exists() and 'param="warmup-' in log.read_text()
        common.wait_for("the subscriber to log a warm-up event", warmed_up)
        joined = common.wait_for("the subscriber's first catch-up to end", lambda: (
            replays(workdir), stderr_lines(workdir / "subscriber.stderr",
                                           "caught up; following live"))[0], timeout=10)
        common.log_settled(log)  # every warm-up is in: the flood's numbers come next
        pids = [flood.pid, subscriber.pid]
        before = common.clocks(pids)
        command(f"flood {args.flood_events}")
        reply = flood.stdout.readline()
        if not reply.startswith("BENCH "):
            sys.exit(f"bench: the flood gave no summary ({reply!r}):\n"
                     f"{(workdir / 'publisher.stderr').read_text()[-3000:]}")
        sent = json.loads(reply[len("BENCH "):])
        deadline = time.monotonic() + 120
        while last_logged(log) < sent["last_seq"]:
            if time.monotonic() > deadline or subscriber.poll() is not None:
                sys.exit(f"bench: event {sent['last_seq']} never reached the log "
                         f"(last: {last_logged(log)})")
            time.sleep(0.005)
        after = common.clocks(pids)
        load = [b - a for a, b in zip(before, after)]
        common.alive(workdir, servers)
        logged = flood_log(log, sent["first_seq"], sent["last_seq"], args.flood_events,
                           args.flood_tasks)
        events, held = settled_window(base)
        seconds = load[0] / 1e6
        return {"events_s": logged / seconds, "seconds": seconds, "logged": logged,
                "publish_s": sent["seconds"], "pub_us": load[3] / logged,
                "sub_us": load[4] / logged, "others": common.others(load),
                "event_bytes": held / events - ENTRY_OVERHEAD,
                **oddities(workdir, base, expected_replays=joined)}
    finally:
        common.stop(children)


def live_http(args, workdir, scripts):
    """(1b): the system under HTTP load, every event checked in the log."""
    children = []
    try:
        publisher, bound, base = start_publisher(children, workdir)
        log = workdir / "subscriber.log"
        subscriber = start_subscriber(children, workdir, bound, log)
        servers = {"publisher": publisher, "subscriber": subscriber}
        tries = iter(range(10**9))

        def warmed_up():  # the slow joiner: send until one request makes it to the log
            common.get(f"{base}/downcase?param=warmup-{next(tries)}")
            return log.exists() and 'param="warmup-' in log.read_text()
        common.wait_for("the subscriber to log a warm-up request", warmed_up)
        # What it missed before joining (the first warm-ups) it fetches by replay: not odd.
        joined = common.wait_for("the subscriber's first catch-up to end", lambda: (
            replays(workdir), stderr_lines(workdir / "subscriber.stderr",
                                           "caught up; following live"))[0], timeout=10)
        pids = [p.pid for p in servers.values()]
        before = common.clocks(pids)
        stats = common.run_wrk(args, f"{base}/downcase", scripts[0])
        load = [b - a for a, b in zip(before, common.clocks(pids))]
        common.log_settled(log)  # the servers' CPU counts until the last event is written
        spent = [b - a for a, b in zip(before[3:], common.clocks(pids)[3:])]
        common.alive(workdir, servers)
        if stats["status_errors"] or stats["socket_errors"]:
            sys.exit(f"bench: wrk saw {stats['status_errors']} non-2xx answers and "
                     f"{stats['socket_errors']} socket errors")
        logged = check_live_log(log, stats)
        events, held = settled_window(base)
        seconds = stats["duration_us"] / 1e6
        return {"events_s": logged / seconds, "seconds": seconds, "logged": logged,
                "ok": stats["ok"], "issued": sum(stats["issued"]), "req_s": stats["rps"],
                "p50_ms": stats["p50_us"] / 1e3, "p99_ms": stats["p99_us"] / 1e3,
                "pub_us": spent[0] / logged, "sub_us": spent[1] / logged,
                "wrk_us": load[2] / stats["requests"], "others": common.others(load),
                "event_bytes": held / events - ENTRY_OVERHEAD,
                **oddities(workdir, base, expected_replays=joined)}
    finally:
        common.stop(children)


def catch_up(args, workdir, scripts):
    """(2): N events with no subscriber, then a subscriber timed until all are in its log."""
    children = []
    try:
        publisher, bound, base = start_publisher(children, workdir)
        rss_idle = rss_mb(publisher.pid)
        fill = argparse.Namespace(**{**vars(args), "duration": 120})
        stats = common.run_wrk(fill, f"{base}/downcase", scripts[1])
        if stats["status_errors"] or stats["socket_errors"]:
            sys.exit(f"bench: wrk saw {stats['status_errors']} non-2xx answers and "
                     f"{stats['socket_errors']} socket errors")
        newest, _ = settled_window(base)  # the warm-up, the requests and the few in flight
        rss_held = rss_mb(publisher.pid)
        log = workdir / "subscriber.log"
        pids = [publisher.pid]
        before = common.clocks(pids)
        subscriber = start_subscriber(children, workdir, bound, log)
        # Its clock starts at zero: only the publisher's is read before it exists. Polled
        # every 10 ms: the tail of the log is all that is read.
        deadline, first = time.monotonic() + 120, None
        while (last := last_logged(log)) < newest:
            if first is None and last:
                first = time.monotonic() * 1e6
            if time.monotonic() > deadline or subscriber.poll() is not None:
                sys.exit(f"bench: event {newest} never reached the log (last: {last}):\n"
                         f"{(workdir / 'subscriber.stderr').read_text()}")
            time.sleep(0.01)
        after = common.clocks([publisher.pid, subscriber.pid])
        wall = (after[0] - before[0]) / 1e6
        load = [after[0] - before[0], after[1] - before[1], 0.0,
                after[3] - before[3], after[4]]
        common.alive(workdir, {"publisher": publisher, "subscriber": subscriber})
        done = common.wait_for("the subscriber's 'caught up' line", lambda: stderr_lines(
            workdir / "subscriber.stderr", "caught up; following live"), timeout=10)[-1]
        logged = check_whole_log(log, newest)
        first_s = ((first or after[0]) - before[0]) / 1e6
        return {"events_s": logged / wall, "seconds": wall, "logged": logged, "first_s": first_s,
                "replay_s": float(done["seconds"]), "replayed": int(done["replayed"]),
                "fill_req_s": stats["rps"], "pub_us": load[3] / logged,
                "sub_us": load[4] / logged, "others": common.others(load),
                "rss_idle_mb": rss_idle, "rss_held_mb": rss_held,
                **oddities(workdir, base, expected_replays=1)}
    finally:
        common.stop(children)


def relay_binary(args):
    """The guard's bench binary: built (and its path reported by cargo) unless --no-build,
    else the newest one built."""
    if not args.no_build:
        out = subprocess.run(["cargo", "bench", "-q", "-p", "guard", "--bench", "relay",
                              "--no-run", "--message-format=json"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            message = json.loads(line)
            if message.get("target", {}).get("name") == "relay" and message.get("executable"):
                return Path(message["executable"])
    built = [p for p in (common.RELEASE / "deps").glob("relay-*")
             if p.suffix == "" and os.access(p, os.X_OK)]
    if not built:
        sys.exit("bench: no guard bench binary; run without --no-build, or "
                 "cargo bench -p guard --bench relay --no-run")
    return max(built, key=lambda p: p.stat().st_mtime)


def raw(binary, size):
    """(baseline): PUB→SUB msg/s of one frame of `size` bytes, direct and through the guard."""
    before = common.clocks([])
    out = subprocess.run([binary, "--paths", "pub-sub", "--sizes", str(size), "--rounds", "1",
                          "--json"], capture_output=True, text=True, check=True).stdout
    load = [b - a for a, b in zip(before, common.clocks([]))]
    line = next((l for l in out.splitlines() if l.startswith("BENCH ")), None)
    if line is None:
        sys.exit(f"bench: no summary from the guard's bench binary:\n{out}")
    rates = json.loads(line[len("BENCH "):])
    # The bench process is a child waited for: its CPU is in load[2], not in `others`.
    return {"events_s": rates["direct"][0], "guarded_s": rates["guarded"][0],
            "seconds": load[0] / 1e6, "others": common.others(load), "size": size}


def memory(args, workdir, script):
    """(3): the publisher's RSS idle and with the default window full."""
    children = []
    try:
        publisher, _, base = start_publisher(children, workdir)
        idle = rss_mb(publisher.pid)
        chunk = argparse.Namespace(**{**vars(args), "duration": 10})
        steps, started, held = [], time.monotonic(), (1, 0)
        while held[0] < args.fill_events and time.monotonic() - started < args.fill_timeout:
            before = held
            common.run_wrk(chunk, f"{base}/downcase", script)
            held = settled_window(base)
            steps.append({"events": held[0], "rss_mb": rss_mb(publisher.pid),
                          "window_mb": held[1] / 1e6})
            print(f"  memory: {held[0]:>9} events held, window {held[1] / 1e6:6.1f} MB, "
                  f"RSS {steps[-1]['rss_mb']:6.1f} MB", flush=True)
            if held[0] <= before[0]:
                break  # the bytes bound, or nothing more gets in
        full = steps[-1]
        return {"rss_idle_mb": idle, "rss_full_mb": full["rss_mb"], "events": full["events"],
                "window_mb": full["window_mb"], "seconds": time.monotonic() - started,
                "mb_per_1000": (full["rss_mb"] - idle) / (full["events"] / 1000),
                "window_mb_per_1000": full["window_mb"] / (full["events"] / 1000),
                "steps": steps, **oddities(workdir, base)}
    finally:
        common.stop(children)


ROW = "{:5} {:9} {:>9} {:>7} {:>9} {:>9} {:>10} {:>6}  {}"


def row(r, name, s):
    """One line of the table."""
    us = lambda k: f"{s[k]:.1f}" if k in s else "-"
    if name == "live":
        detail = (f"{s['logged']:.0f} events, all on the path after {s['publish_s']:.2f} s")
    elif name == "live-http":
        detail = (f"{s['logged']:.0f} / {s['ok']:.0f} / {s['issued']:.0f}, p99 "
                  f"{s['p99_ms']:.1f} ms")
    elif name == "catch-up":
        detail = (f"{s['logged']:.0f} events, first logged at {s['first_s']:.2f} s, "
                  f"replay {s['replay_s']:.2f} s")
    else:
        detail = f"guarded {s['guarded_s']:.0f}/s"
    return ROW.format(r, name, f"{s['events_s']:.0f}", f"{s['seconds']:.2f}", us("pub_us"),
                      us("sub_us"), us("wrk_us"), f"{s['others']:.1f}", detail).rstrip()


def main():
    p = common.parser(__doc__.split("\n")[0])
    p.add_argument("--catch-up-events", type=int, default=100_000,
                   help="events published before the catch-up subscriber starts")
    p.add_argument("--fill-events", type=int, default=1_000_000,
                   help="events held when the memory is read (the default window's count)")
    p.add_argument("--fill-timeout", type=int, default=240, help="most seconds of filling")
    p.add_argument("--no-memory", action="store_true", help="skip the memory fill")
    p.add_argument("--flood-events", type=int, default=1_000_000,
                   help="events the live run publishes through the publishing path")
    p.add_argument("--flood-tasks", type=int, default=8, choices=range(1, 10),
                   metavar="1-9", help="tasks publishing them at once")
    p.add_argument("--flood", type=Path, default=FLOOD,
                   help="the flood binary the live run uses (another build's, for an A/B)")
    p.add_argument("--runs", default=",".join(RUNS),
                   help=f"which runs, comma-separated (of {','.join(RUNS)}; raw needs live)")
    common.json_flag(p, "replay")
    args = p.parse_args()
    if args.threads > 9:
        sys.exit("bench: at most 9 wrk threads (params are <thread>-<7 digits>)")
    runs = tuple(name for name in RUNS if name in args.runs.split(","))
    if "raw" in runs and "live" not in runs:
        sys.exit("bench: raw measures the live run's event size: run live too")
    common.prepare(args, ["-p", "publisher", "-p", "subscriber"])
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "publisher", "--example",
                        "flood"], cwd=ROOT, check=True)
    binary = relay_binary(args)
    load_before = os.getloadavg()
    print(f"wrk -t{args.threads} -c{args.connections}, live {args.duration}s, catch-up "
          f"{args.catch_up_events} events, {args.rounds} rounds of each interleaved, "
          f"{os.cpu_count()} CPUs, load average {load_before[0]:.1f}")
    results = {name: [] for name in runs}
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        per_thread = -(-args.catch_up_events // args.threads)
        scripts = (wrk_script(tmp), wrk_script(tmp, per_thread))
        size = None  # the events' size, from the first live round
        header = ROW.format("round", "run", "events/s", "s", "pub us/ev", "sub us/ev",
                            "wrk us/req", "others", "detail")
        print(header)
        # live comes first in round 1, so raw knows the size it measures.
        for r, name in common.interleaved(args.rounds, runs):
            workdir = Path(tmp) / f"{name}-{r}"
            workdir.mkdir()
            if name == "live":
                s = live(args, workdir, scripts)
                size = size or round(s["event_bytes"])
            elif name == "live-http":
                s = live_http(args, workdir, scripts)
            elif name == "catch-up":
                s = catch_up(args, workdir, scripts)
            else:
                s = raw(binary, size)
            results[name].append(s)
            print(row(r, name, s), flush=True)
        mem = None
        if not args.no_memory:
            (Path(tmp) / "memory").mkdir()
            mem = memory(args, Path(tmp) / "memory", scripts[0])

    med = common.medians(results)
    for name in runs:
        print(row("med", name, med[name]))
    lv, lh, cu, rw = (med.get(name) for name in RUNS)
    ratios = {"target_live_over_raw": 0.5}
    if lv and rw:
        ratios["live_over_raw"] = lv["events_s"] / rw["events_s"]
        ratios["subscriber_ceiling_over_raw"] = 1e6 / lv["sub_us"] / rw["events_s"]
        print(f"event: {lv['event_bytes']:.0f} B as sent (topic + envelope frames); raw: one "
              f"frame of {size} B")
        print(f"live / raw: {ratios['live_over_raw']:.3f} (target >= 0.5: "
              f"{'met' if ratios['live_over_raw'] >= 0.5 else 'NOT met'}); publisher "
              f"{lv['pub_us']:.2f} + subscriber {lv['sub_us']:.2f} us CPU per event, on "
              f"{os.cpu_count()} cores; the subscriber alone on one core would log "
              f"{1e6 / lv['sub_us']:.0f}/s ({ratios['subscriber_ceiling_over_raw']:.2f} of raw)")
        print(f"guard through / direct (raw PUB→SUB): {rw['guarded_s'] / rw['events_s']:.2f}")
    if lh:
        print(f"live-http: {lh['events_s']:.0f} events/s, what the publisher takes over HTTP "
              f"({lh['req_s']:.0f} req/s, wrk and both servers on {os.cpu_count()} cores)"
              + (f"; {lh['events_s'] / lv['events_s']:.2f} of the event path's rate" if lv else ""))
    if cu:
        replay_rate = cu["replayed"] / cu["replay_s"]
        line = (f"catch-up: {cu['logged']:.0f} events in {cu['seconds']:.2f} s from the "
                f"subscriber's start ({cu['events_s']:.0f}/s; the first after "
                f"{cu['first_s']:.2f} s: start-up and the wait for a heartbeat; its replay alone "
                f"{cu['replay_s']:.2f} s, {replay_rate:.0f}/s)")
        # The target is against live-http, the rate events come at in use.
        for against, m, key in (("live-http", lh, "live"), ("the event path", lv, "event_path")):
            if m:
                ratios[f"catch_up_over_{key}"] = cu["events_s"] / m["events_s"]
                ratios[f"replay_alone_over_{key}"] = replay_rate / m["events_s"]
                line += (f"; catch-up / {against}: {ratios[f'catch_up_over_{key}']:.2f}, "
                         f"replay alone: {ratios[f'replay_alone_over_{key}']:.2f}")
        if lh:
            line += f" (target > 1: {'met' if ratios['catch_up_over_live'] > 1 else 'NOT met'})"
        print(line)
    if mem:
        print(f"memory: publisher RSS idle {mem['rss_idle_mb']:.1f} MB; with {mem['events']} "
              f"events held (window {mem['window_mb']:.1f} MB by its own count, filled in "
              f"{mem['seconds']:.0f} s) {mem['rss_full_mb']:.1f} MB: {mem['mb_per_1000']:.3f} MB "
              f"per 1000 events held (the window counts {mem['window_mb_per_1000']:.3f})"
              + (f"; with {cu['logged']:.0f} held: {cu['rss_held_mb']:.1f} MB" if cu else ""))
    load_after = os.getloadavg()
    print(f"machine: load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
          f"`others` = cores busy with anything else during each run")
    common.warn_if_busy(results)
    checked = [name for name in ("live", "live-http", "catch-up") if name in runs]
    odd = [f"{name} {r}: {k} {s[k]}" for name in checked
           for r, s in enumerate(results[name], 1)
           for k in ("cuts", "replays", "gaps") if s.get(k)]
    odd += [f"{name} {r}: {w}" for name in checked
            for r, s in enumerate(results[name], 1) for w in s["warnings"]]
    if mem:
        odd += [f"memory: {w}" for w in mem["warnings"]] + \
               ([f"memory: cuts {mem['cuts']}"] if mem["cuts"] else [])
    print(f"every event of every {', '.join(checked)} run is in subscriber.log, in order, no "
          "gap line: yes" + ("" if not odd else "; seen on the way:\n  " + "\n  ".join(odd)))

    common.write_json(args.json, {
        "settings": {"rounds": args.rounds, "duration_s": args.duration, "threads": args.threads,
                     "connections": args.connections, "catch_up_events": args.catch_up_events,
                     "fill_events": args.fill_events, "flood_events": args.flood_events,
                     "flood_tasks": args.flood_tasks, "cpus": os.cpu_count(),
                     "load_average": [load_before[0], load_after[0]], "event_bytes": size},
        "rounds": results, "medians": med, "memory": mem, "ratios": ratios,
    })


if __name__ == "__main__":
    main()
