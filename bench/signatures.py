#!/usr/bin/env python3
"""End-to-end verified signatures per second through HTTP: one verifier against two.

Entry point (workspace root):  python3 bench/signatures.py   (--no-build, --rounds, --duration ...)

Needs `wrk` and the `openssl` CLI on PATH. Release builds (`cargo build --release --bins`). Each
round starts fresh processes on loopback (port 0): the publisher, a subscriber writing
subscriber.log (every request makes two events, as in production), and one or two verifiers
holding the demo key from examples/keys. wrk sends `POST /signatures?wait=10s` with
examples/document.txt (as data_base64) and examples/document.sig.hex; with --invalid-every K,
every K-th request carries that signature with its last hex digit changed. Rounds alternate
(1 2, 2 1, 1 2 ...) so drift on a shared machine falls on both alike.

  1-verifier   one verifier with VERIFY_WORKERS = CPU count (its default)
  2-verifiers  two verifiers with VERIFY_WORKERS = CPU count / 2 each (at least 1)
So both have as many verification threads as the machine has cores, and the same number of
tasks in flight at the verifiers (8 per thread): the difference is one process or two.
--workers N gives every verifier N threads instead.

Checked in every round, or the benchmark aborts: every answer wrk got was a 200 whose body
holds the expected verdict (`"status":"valid"`, or `"invalid"` for the altered signatures;
counted by the Lua response() callback); afterwards subscriber.log has, for this run's
requests, one `signature.requested` line per request and one verdict line per 2xx, no gap
line, unbroken seq numbers. Re-sent tasks (/metrics `tasks_resent_total`) are reported.
The figures are also written as JSON (--json, default bench/results/signatures.json).

Columns: req/s and wrk's latency; CPU (utime + stime) per completed request, in us, of the
publisher, the verifiers (sum, and each), the subscriber (two events per request) and wrk;
`total`, their sum; `cores`, cores busy on the whole machine during the load; `others`, cores
busy with anything else; `verdicts` per verifier, from the log. The servers' CPU counts until
the log has settled. `med`: medians over rounds. Baseline, measured in the same run before
and after the rounds: `openssl speed -seconds 2 -mr rsa2048`, verifications per second on one
core.

Also in every round, interleaved with the others: `downcase`, the (a) system round of
bench/downcase.py (publisher + subscriber, `GET /downcase`, every event checked in the log),
for the publisher's CPU per request on its simplest route. The three targets of the issue
"Speed" are printed, and written under "targets", each with whether it is met:
  end_to_end        1-verifier req/s / openssl verify/s                    >= 0.5
  publisher         publisher CPU per signature request / per /downcase request  <= 1.5
  verifier_overhead verifier CPU per request - the RSA arithmetic (1e6 / openssl verify/s), us
                                                                            <= 10
"""

import base64
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import common
import downcase
from common import PUBLISHER_ID, ROOT

PATH = "/signatures?wait=10s"
KEY = "demo"
KEYS_DIR = ROOT / "examples/keys"
CONFIGS = {"1-verifier": 1, "2-verifiers": 2}
# The targets: (name, what, limit, met when the figure is at least the limit).
TARGETS = (("end_to_end", "1-verifier req/s / one-core openssl verify/s", 0.5, True),
           ("publisher", "publisher CPU per signature request / per /downcase request", 1.5,
            False),
           ("verifier_overhead", "verifier CPU per request - RSA arithmetic, us", 10.0, False))
# Globals, not locals: thread:get reaches only a thread's globals. Requests are formatted once
# per thread in init(); response() sorts every 2xx by the verdict its body holds.
WRK_SCRIPT = r"""
threads = {}
n, bad, valid, invalid, other = 0, 0, 0, 0, 0
function setup(thread) table.insert(threads, thread) end
function init(args)
  local headers = {["Content-Type"] = "application/json"}
  good_request = wrk.format("POST", "@PATH@", headers, [==[@GOOD@]==])
  bad_request = wrk.format("POST", "@PATH@", headers, [==[@BAD@]==])
end
function request()
  n = n + 1
  if @EVERY@ > 0 and n % @EVERY@ == 0 then bad = bad + 1; return bad_request end
  return good_request
end
function response(status, headers, body)
  if status < 200 or status > 299 then return end  -- wrk counts 4xx and 5xx itself
  if status == 200 and string.find(body, '"status":"valid"', 1, true) then
    valid = valid + 1
  elseif status == 200 and string.find(body, '"status":"invalid"', 1, true) then
    invalid = invalid + 1
  else
    other = other + 1  -- 202 pending (no verdict in time) or status "error"
  end
end
function done(summary, latency, requests)
  local sum = {n = 0, bad = 0, valid = 0, invalid = 0, other = 0}
  for _, t in ipairs(threads) do
    for k, _ in pairs(sum) do sum[k] = sum[k] + t:get(k) end
  end
  local e = summary.errors
  io.write(string.format('BENCH {"requests": %d, "duration_us": %d, "issued": %d, ' ..
    '"issued_bad": %d, "valid": %d, "invalid": %d, "other": %d, "status_errors": %d, ' ..
    '"socket_errors": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, sum.n, sum.bad, sum.valid, sum.invalid, sum.other,
    e.status, e.connect + e.read + e.write + e.timeout, latency:percentile(50),
    latency:percentile(99)))
end
"""
EVENT_LINE = re.compile(r'^\S+ (\S+) ' + PUBLISHER_ID + r'#(\d+)(?: id="([\w-]+)")?'
                        r'(?:.*? status="(\w+)")?(?:.*? verified_by="([^"]*)")?')


def bodies():
    """The request bodies: the demo document with its signature, and with a wrong one."""
    document = base64.b64encode((ROOT / "examples/document.txt").read_bytes()).decode()
    signature = (ROOT / "examples/document.sig.hex").read_text().strip()
    wrong = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    return ({"data_base64": document, "signature": signature, "key": KEY},
            {"data_base64": document, "signature": wrong, "key": KEY})


def lua_script(good, bad, every):
    """The wrk script for these bodies; every `every`-th request is `bad` (0: none)."""
    script = WRK_SCRIPT
    for name, value in (("@PATH@", PATH), ("@GOOD@", json.dumps(good)),
                        ("@BAD@", json.dumps(bad)), ("@EVERY@", str(every))):
        script = script.replace(name, value)
    return script


def openssl_verify_per_s():
    """RSA-2048 verifications per second on one core, as `openssl speed` counts them."""
    out = subprocess.run(["openssl", "speed", "-seconds", "2", "-mr", "rsa2048"],
                         capture_output=True, text=True, check=True).stdout
    line = next((l for l in out.splitlines() if l.startswith("+F2:")), None)
    if line is None:
        sys.exit(f"bench: no +F2 line from openssl speed:\n{out}")
    return float(line.split(":")[4])  # +F2:<n>:<bits>:<sign/s>:<verify/s>


def warm_up(base, good, bad, ids, log):
    """Sends valid requests until every verifier has answered one and the subscriber has
    logged a verdict (the slow joiner), then one wrong signature, which must come back
    invalid. Returns the warm-up request ids."""
    warm, seen = [], set()

    def ready():
        reply = common.post_json(base + PATH, good)
        if reply and reply.get("status") == "valid":
            warm.append(reply["id"])
            seen.add(reply.get("verified_by"))
        return seen >= set(ids) and log.exists() and "signature.verified" in log.read_text()
    common.wait_for("every verifier to answer and the subscriber to log a verdict", ready)
    reply = common.post_json(base + PATH, bad)
    if not reply or reply.get("status") != "invalid":
        sys.exit(f"bench: a wrong signature was not found invalid: {reply}")
    warm.append(reply["id"])
    return warm


def check_answers(stats):
    """Fails unless every answer wrk got was a 200 with the verdict its request calls for."""
    good_issued = stats["issued"] - stats["issued_bad"]
    cut_off = stats["issued"] - stats["requests"]  # in flight when wrk stopped
    if stats["status_errors"] or stats["socket_errors"] or stats["other"] \
            or stats["valid"] + stats["invalid"] != stats["ok"] \
            or not good_issued - cut_off <= stats["valid"] <= good_issued \
            or not stats["issued_bad"] - cut_off <= stats["invalid"] <= stats["issued_bad"]:
        sys.exit("bench: not every answer was the expected verdict: " + ", ".join(
            f"{k} {stats[k]}" for k in ("requests", "issued", "issued_bad", "valid", "invalid",
                                        "other", "status_errors", "socket_errors")))


def check_log(log, stats, warm):
    """Reads this run's events from the log (after the last warm-up request); fails on gaps,
    broken numbering, verdicts missing or twice. Returns the verdicts per verifier."""
    lines = log.read_text().splitlines()
    start = max(i for i, line in enumerate(lines) if f'id="{warm[-1]}"' in line
                and " signature.requested " in line)
    events = [m.groups() for m in map(EVENT_LINE.match, lines[start:]) if m]
    seqs = [int(seq) for _, seq, _, _, _ in events]
    gaps = sum(topic == "gap" for topic, _, _, _, _ in events)
    warm = set(warm)
    requested = {i for t, _, i, _, _ in events if t == "signature.requested" and i not in warm}
    verdicts = [(i, status, by) for t, _, i, status, by in events
                if t in ("signature.verified", "signature.failed") and i not in warm]
    statuses = [status for _, status, _ in verdicts]
    verdict_ids = {i for i, _, _ in verdicts}
    if gaps or seqs != list(range(seqs[0], seqs[0] + len(seqs))) \
            or not stats["ok"] <= len(requested) <= stats["issued"] \
            or len(verdict_ids) != len(verdicts) or not verdict_ids <= requested \
            or statuses.count("valid") < stats["valid"] \
            or statuses.count("invalid") < stats["invalid"] \
            or len(statuses) != statuses.count("valid") + statuses.count("invalid"):
        sys.exit(f"bench: log incomplete: {len(requested)} requested, {len(verdicts)} verdicts "
                 f"({len(verdict_ids)} distinct; {statuses.count('valid')} valid, "
                 f"{statuses.count('invalid')} invalid), {stats['ok']} 2xx, {gaps} gap lines")
    by = [b for _, _, b in verdicts]
    return {v: by.count(v) for v in sorted(set(by))}


def one_round(args, verifiers, workdir, script, good, bad):
    """Starts the system with `verifiers` verifiers, loads it with wrk, checks answers and
    log, stops it; returns the figures."""
    workers = args.workers or max(1, (os.cpu_count() or 1) // verifiers)
    children = []
    try:
        servers = {"publisher": common.start(children, workdir, "publisher",
                                             common.PUBLISHER_ENV)}
        bound = common.wait_for("the publisher",
                                lambda: common.listening(workdir / "publisher.stderr"))
        base, log = f"http://{bound['http']}", workdir / "subscriber.log"
        servers["subscriber"] = common.start(
            children, workdir, "subscriber",
            {"EVENTS_CONNECT": bound["events"], "REPLAY_CONNECT": bound["replay"],
                 "LOG_FILE": str(log)})
        ids = [f"verifier-{n}" for n in range(1, verifiers + 1)]
        for vid in ids:
            servers[vid] = common.start(
                children, workdir, "verifier",
                {"TASKS_CONNECT": bound["tasks"], "RESULTS_CONNECT": bound["results"],
                 "KEYS_DIR": str(KEYS_DIR), "VERIFIER_ID": vid, "VERIFY_WORKERS": str(workers)},
                stderr_name=vid)
        warm = warm_up(base, good, bad, ids, log)
        pids = [p.pid for p in servers.values()]
        before = common.clocks(pids)
        stats = common.run_wrk(args, base + PATH, script)
        load = [b - a for a, b in zip(before, common.clocks(pids))]
        stats["others"] = common.others(load)
        stats["cores"] = load[1] / load[0]
        stats["wrk_cpu"] = load[2] / stats["requests"]
        check_answers(stats)
        common.log_settled(log)  # the servers' CPU counts until the last event is written
        spent = [(b - a) / stats["requests"]
                 for a, b in zip(before[3:], common.clocks(pids)[3:])]
        common.alive(workdir, servers)
        split = check_log(log, stats, warm)
        m = common.metrics(base)
        stats["resent"] = m.get("tasks_resent_total", 0.0)
        stats["pub_cpu"], stats["sub_cpu"] = spent[0], spent[1]
        for n, vid in enumerate(ids, 1):
            stats[f"ver_cpu_{n}"] = spent[1 + n]
            stats[f"verdicts_{n}"] = split.get(vid, 0)
        stats["ver_cpu"] = sum(spent[2:])
        stats["total_cpu"] = sum(spent) + stats["wrk_cpu"]
        stats["workers"] = workers
        return stats
    finally:
        common.stop(children)


ROW = "{:5} {:11} {:>7} {:>6} {:>6} {:>6} {:>6} {:>11} {:>5} {:>5} {:>6} {:>5} {:>6}  {}"


def row(r, name, s):
    """One line of the table."""
    each = [s[k] for k in sorted(s) if k.startswith("ver_cpu_")]
    split = [s[k] for k in sorted(s) if k.startswith("verdicts_")]
    return ROW.format(r, name, f"{s['rps']:.0f}", f"{s['p50_us'] / 1e3:.2f}",
                      f"{s['p99_us'] / 1e3:.2f}", f"{s['pub_cpu']:.1f}", f"{s['ver_cpu']:.1f}",
                      "+".join(f"{v:.1f}" for v in each), f"{s['sub_cpu']:.1f}",
                      f"{s['wrk_cpu']:.1f}", f"{s['total_cpu']:.1f}", f"{s['cores']:.2f}",
                      f"{s['others']:.2f}", " + ".join(f"{v:.0f}" for v in split))


def main():
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=0,
                        help="VERIFY_WORKERS of every verifier (default: CPU count / verifiers)")
    parser.add_argument("--invalid-every", type=int, default=0, metavar="K",
                        help="every K-th request has a wrong signature (default 0: none)")
    common.json_flag(parser, "signatures")
    args = parser.parse_args()
    if args.workers < 0 or args.invalid_every < 0:
        sys.exit("bench: --workers and --invalid-every must not be negative")
    common.prepare(args, ["--bins"])
    good, bad = bodies()
    cpus = os.cpu_count() or 1
    openssl = [openssl_verify_per_s()]
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s POST {PATH}, "
          f"{args.rounds} rounds of each interleaved, {cpus} CPUs, publisher + subscriber + "
          f"verifiers; VERIFY_WORKERS " + ", ".join(
              f"{args.workers or max(1, cpus // v)} per verifier ({name})"
              for name, v in CONFIGS.items())
          + (f"; every {args.invalid_every}th signature wrong" if args.invalid_every else ""))
    print(" " * 40 + "CPU per request, us" + " " * 26 + "machine, cores")
    print(ROW.format("round", "run", "req/s", "p50 ms", "p99 ms", "pub", "ver", "ver each",
                     "sub", "wrk", "total", "busy", "others", "verdicts per verifier"))
    results = {name: [] for name in CONFIGS}
    down = []
    with tempfile.TemporaryDirectory(prefix="bench-signatures-") as tmp:
        script = Path(tmp) / "signatures.lua"
        script.write_text(lua_script(good, bad, args.invalid_every))
        down_script = Path(tmp) / "downcase.lua"
        down_script.write_text(downcase.WRK_SCRIPT)
        for r, name in common.interleaved(args.rounds, (*CONFIGS, "downcase")):
            workdir = Path(tmp) / f"{name}-{r}"
            workdir.mkdir()
            if name == "downcase":
                down.append(downcase.one_round(args, "system", workdir, down_script))
                print(f"{r:5} {'downcase':11} {down[-1]['rps']:>7.0f}   publisher "
                      f"{down[-1]['pub_cpu']:.1f} us/req, others {down[-1]['others']:.2f}",
                      flush=True)
                continue
            results[name].append(one_round(args, CONFIGS[name], workdir, script, good, bad))
            print(row(r, name, results[name][-1]), flush=True)
    openssl.append(openssl_verify_per_s())

    med = common.medians(results)
    down_med = common.medians({"downcase": down})["downcase"]
    one, two = med["1-verifier"], med["2-verifiers"]
    for name in CONFIGS:
        print(row("med", name, med[name]))
    verify_per_s = statistics.mean(openssl)
    rsa_us = 1e6 / verify_per_s
    print(f"openssl speed -seconds 2 -mr rsa2048, one core: {openssl[0]:.0f} verify/s before "
          f"the rounds, {openssl[1]:.0f} after ({rsa_us:.1f} us per verification)")
    print(f"2-verifiers / 1-verifier: req/s {two['rps'] / one['rps']:.2f}, "
          f"all CPU per request {two['total_cpu'] / one['total_cpu']:.2f}, "
          f"verifiers' CPU per request {two['ver_cpu'] / one['ver_cpu']:.2f}")
    print(f"end-to-end req/s / openssl verify/s (one core): 1-verifier "
          f"{one['rps'] / verify_per_s:.2f}, 2-verifiers {two['rps'] / verify_per_s:.2f}")
    shares = ", ".join(f"{label} {one[k] / one['total_cpu']:.0%}" for label, k in (
        ("publisher", "pub_cpu"), ("verifier", "ver_cpu"), ("subscriber", "sub_cpu"),
        ("wrk", "wrk_cpu")))
    print(f"1-verifier, where the CPU per request goes: {shares}; the RSA arithmetic itself "
          f"({rsa_us:.1f} us) is {rsa_us / one['total_cpu']:.0%} of it")
    ceiling = cpus * 1e6 / one["total_cpu"]  # req/s if every core did nothing else
    if one["rps"] >= 0.8 * ceiling:
        print(f"reading: CPU-bound - 1-verifier runs at {one['rps'] / ceiling:.0%} of "
              f"{cpus} cores / CPU per request ({ceiling:.0f} req/s); verifying is "
              f"{one['ver_cpu'] / one['total_cpu']:.0%} of that CPU, so a second verifier on "
              f"the same cores adds no capacity, only its own overhead (verifiers' CPU/req "
              f"x{two['ver_cpu'] / one['ver_cpu']:.2f}); it pays only with cores of its own")
    else:
        print(f"reading: not CPU-bound - 1-verifier runs at {one['rps'] / ceiling:.0%} of "
              f"{cpus} cores / CPU per request ({ceiling:.0f} req/s): latency x "
              f"{args.connections} connections bounds req/s")
    figures = {"end_to_end": one["rps"] / verify_per_s,
               "publisher": one["pub_cpu"] / down_med["pub_cpu"],
               "verifier_overhead": one["ver_cpu"] - rsa_us}
    targets = {}
    for key, what, limit, at_least in TARGETS:
        met = figures[key] >= limit if at_least else figures[key] <= limit
        targets[key] = {"value": figures[key], "limit": limit, "met": met}
        print(f"target {key}: {what} = {figures[key]:.2f} ({'>=' if at_least else '<='} "
              f"{limit:g}): {'met' if met else 'NOT met'}")
    print(f"  (publisher {one['pub_cpu']:.1f} us per signature request, {down_med['pub_cpu']:.1f}"
          f" us per /downcase request; verifier {one['ver_cpu']:.1f} us per request, RSA "
          f"{rsa_us:.1f} us)")
    common.warn_if_busy({**results, "downcase": down})
    resent = sum(s["resent"] for runs in results.values() for s in runs)
    if resent:
        print(f"note: {resent:.0f} tasks were re-sent after their deadline (tasks_resent_total)")
    print("every answer of every round was a 200 with the expected verdict, every request and "
          "verdict is in subscriber.log once, no gap lines: yes")
    common.write_json(args.json, {
        "settings": {"rounds": args.rounds, "duration_s": args.duration, "threads": args.threads,
                     "connections": args.connections, "cpus": cpus,
                     "invalid_every": args.invalid_every, "load_average": os.getloadavg()[0]},
        "rounds": results, "medians": med, "openssl_verify_per_s": openssl,
        "ratios": {"two_over_one": two["rps"] / one["rps"],
                   "one_over_openssl": one["rps"] / verify_per_s},
        "downcase": {"rounds": down, "medians": down_med},
        "targets": targets,
    })


if __name__ == "__main__":
    main()
