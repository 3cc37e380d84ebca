#!/usr/bin/env python3
"""Tables and a picture from bench/results/all.json, so no figure is typed by hand.

Entry point (workspace root):  python3 bench/report.py   (bench/all.py runs it at its end)

Writes bench/results/all.md (the tables), bench/results/performance.png (matplotlib: req/s of
each /downcase configuration against the bare-axum anchor, and the one-way latency's
distribution at each paced rate) and, in README.md, everything between the markers
`<!-- performance:begin -->` and `<!-- performance:end -->`. --check only says whether the
README is up to date with all.json (exit 1 when not). A benchmark missing from all.json, or
failed, is left out with a line saying so.
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench/results"
README = ROOT / "README.md"
BEGIN, END = "<!-- performance:begin -->", "<!-- performance:end -->"
# /downcase configurations in the order drawn, with what each is.
DOWNCASE = [
    ("anchor", "(f) bare axum `/downcase`, nothing published"),
    ("baseline", "(b) our router, publishing off"),
    ("system", "(a) publisher + subscriber, every event checked in the log"),
    ("unguarded", "(c) the system without socket guards"),
    ("keyed", "(d) the system with message tags (`SHARED_KEY_FILE`)"),
    ("journaled", "(e) the system with the journal (`JOURNAL_SYNC=always`)"),
]


def n(value, digits=0):
    """A number with thin-space thousands, as the README writes them."""
    return f"{value:,.{digits}f}".replace(",", " ")


def table(header, rows):
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(str(c) for c in r) + " |" for r in rows)])


def downcase(f):
    med = f["medians"]
    anchor = med.get("anchor")
    rows = []
    for name, what in DOWNCASE:
        if name not in med:
            continue
        m = med[name]
        rows.append([what, n(m["rps"]), f"{anchor and m['rps'] / anchor['rps']:.2f}"
                     if anchor else "–", f"{m['p99_us'] / 1e3:.2f} ms", f"{m['pub_cpu']:.1f} µs",
                     f"{m['sub_cpu']:.1f} µs" if "sub_cpu" in m else "–", f"{m['others']:.1f}"])
    return ("**Throughput on `/downcase`** — `python3 bench/downcase.py --anchor --costs "
            f"--journal` (wrk -t{f['settings']['threads']} -c{f['settings']['connections']} "
            f"-d{f['settings']['duration_s']}s, medians of {f['settings']['rounds']} interleaved "
            "rounds; every 2xx request of the system's runs is checked in `subscriber.log`):\n\n"
            + table(["run", "req/s", "of bare axum", "p99", "publisher CPU/req",
                     "subscriber CPU/event", "others"], rows))


def latency(f):
    med = f["medians"]
    rows = []
    for name in ("1000/s", "half"):
        m = med[name]
        line, answer = m["line"], m["answer"]
        target = f["targets_ms"][name]
        rows.append([f"{n(m['rate'])} req/s" + (" (half the max)" if name == "half" else ""),
                     f"{line['p50_ms']:.2f} / {line['p99_ms']:.2f} / {line['p999_ms']:.2f} ms",
                     f"< {target:g} ms: {'met' if line['p99_ms'] < target else 'NOT met'}",
                     f"{answer['p50_ms']:.2f} / {answer['p99_ms']:.2f} / "
                     f"{answer['p999_ms']:.2f} ms", f"{m['lag']['p99_ms'] * 1e3:.0f} µs",
                     f"{m['others']:.1f}"])
    s = f["settings"]
    return ("**One-way latency** — `python3 bench/latency.py`: an open-loop client "
            f"(`publisher/examples/paced_load.rs`, {s['paced_connections']} keep-alive "
            f"connections, {s['seconds']:g} s per rate, medians of {s['rounds']} round(s)) "
            "sends unique params at a fixed rate and, on the same clock, follows "
            "`subscriber.log` (polling every 50 µs) for each param's line; every request is "
            f"answered and every line seen. The max rate, {n(med['max']['rps'])} req/s, is "
            "wrk's flat out against the same system.\n\n"
            + table(["rate", "request sent → line in log p50 / p99 / p99.9", "target (p99)",
                     "HTTP answer p50 / p99 / p99.9", "client's pacing lag p99", "others"],
                    rows))


def signatures(f):
    rows = [[name, n(m["rps"]), f"{m['p50_us'] / 1000:.2f} / {m['p99_us'] / 1000:.2f} ms",
             f"{m['total_cpu']:.1f} µs", f"{m['others']:.1f}"]
            for name, m in f["medians"].items()]
    openssl = sum(f["openssl_verify_per_s"]) / len(f["openssl_verify_per_s"])
    return ("**Signature verification end to end** — `python3 bench/signatures.py` "
            f"(`POST /signatures?wait=10s`; baseline `openssl speed rsa2048` on one core, "
            f"{n(openssl)} verify/s; one verifier gives {f['ratios']['one_over_openssl']:.2f} of "
            f"it, two on the same cores {f['ratios']['two_over_one']:.2f} of one):\n\n"
            + table(["run", "req/s", "p50 / p99", "CPU per request, all processes", "others"],
                    rows) + signature_targets(f))


# The speed issue's three targets for the signature path, as bench/signatures.py decides them.
SIGNATURE_TARGETS = [
    ("end_to_end", "1-verifier req/s against one core's openssl verify/s", "≥ {:g}", "{:.2f}"),
    ("publisher", "publisher CPU per signature request against per `/downcase` request",
     "≤ {:g} ×", "{:.2f} ×"),
    ("verifier_overhead", "verifier CPU per request beyond the RSA arithmetic", "≤ {:g} µs",
     "{:.1f} µs"),
]


def signature_targets(f):
    """The targets' lines under the table; nothing for a run from before they were printed."""
    targets = f.get("targets")
    if not targets:
        return ""
    rows = [[what, shown.format(targets[key]["value"]), limit.format(targets[key]["limit"]),
             "met" if targets[key]["met"] else "NOT met"]
            for key, what, limit, shown in SIGNATURE_TARGETS if key in targets]
    return "\n\n" + table(["target", "measured", "limit", "verdict"], rows)


def replay(f):
    med, r = f["medians"], f["ratios"]
    raw = f"raw zmq.rs PUB→SUB ({n(med['raw']['events_s'])}/s)"
    if "live-http" in med:  # the event path flooded, and HTTP apart
        lv, lh = med["live"], med["live-http"]
        rows = [["live: the publishing path → subscriber → log (no HTTP in front)",
                 f"{n(lv['events_s'])} events/s",
                 f"{r['live_over_raw']:.3f} of {raw}; target 0.5: "
                 f"{'met' if r['live_over_raw'] >= 0.5 else 'NOT met'}; CPU per event: "
                 f"publisher {lv['pub_us']:.2f} µs, subscriber {lv['sub_us']:.2f} µs"],
                ["live over HTTP: wrk → publisher → subscriber → log",
                 f"{n(lh['events_s'])} events/s", f"{lh['events_s'] / lv['events_s']:.2f} of "
                 "the publishing path's rate"],
                ["catch-up by replay", f"{n(med['catch-up']['events_s'])} events/s",
                 f"{r['catch_up_over_live']:.2f} × live over HTTP, "
                 f"{r['catch_up_over_event_path']:.2f} × the publishing path"]]
    else:
        rows = [["live: publisher → subscriber → log", f"{n(med['live']['events_s'])} events/s",
                 f"{r['live_over_raw']:.3f} of {raw}"],
                ["catch-up by replay", f"{n(med['catch-up']['events_s'])} events/s",
                 f"{r['catch_up_over_live']:.2f} × live"]]
    if f.get("memory"):
        mem = f["memory"]
        rows.append(["publisher memory per 1 000 events held", f"{mem['mb_per_1000']:.3f} MB",
                     f"RSS {mem['rss_idle_mb']:.1f} MB idle, {mem['rss_full_mb']:.1f} MB with "
                     f"{n(mem['events'])}"])
    return ("**Replay** — `python3 bench/replay.py` (every event checked in the log):\n\n"
            + table(["measure", "median", "against"], rows))


def fanout(f):
    rows = [[count, n(m["events_s"]), n(m["deliveries_s"]), f"{m['pub_us']:.1f} µs"]
            for count, m in f["medians"].items()]
    return ("**Fan-out** — `python3 bench/fanout.py` (S subscribers on one publisher, every "
            "event checked in every log):\n\n"
            + table(["subscribers", "events/s per log", "deliveries/s", "publisher CPU/event"],
                    rows))


SECTIONS = [("downcase", downcase), ("latency", latency), ("signatures", signatures),
            ("replay", replay), ("fanout", fanout)]


def figures_md(everything):
    """The markdown of the figures: the run's header, then one table per benchmark."""
    m = everything["machine"]
    out = [f"Measured {everything['date']} at `{everything['commit']}` by `python3 bench/all.py`"
           f"{' --quick (short runs: for trying it, not for quoting)' if everything['quick'] else ''}"
           f" on {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Linux {m['kernel']}; "
           f"load average {m['load_average'][0]} before, {m['load_average'][1]} after. "
           "`others` is the cores kept busy by other processes during the load (from "
           "/proc/stat): above 0.3 the run shared the machine, and its req/s are lower and "
           "noisier than on a quiet one; ratios within one table and CPU per request hold "
           "better."]
    for name, render in SECTIONS:
        run = everything["benchmarks"].get(name)
        if run is None:
            continue
        if not run["figures"]:
            out.append(f"**{name}**: the last run failed (`{' '.join(run['command'])}`).")
            continue
        out.append(render(run["figures"]))
    return "\n\n".join(out)


def picture(everything, path):
    """Throughput per configuration against the anchors; the latency's distribution."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = everything["benchmarks"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    if (d := runs.get("downcase")) and d["figures"]:
        med = d["figures"]["medians"]
        names = [name for name, _ in DOWNCASE if name in med]
        rps = [med[name]["rps"] for name in names]
        bars = left.barh(names[::-1], rps[::-1], color=[
            "0.6" if name in ("anchor", "baseline") else "tab:blue" for name in names[::-1]])
        if "anchor" in med:
            left.axvline(med["anchor"]["rps"], color="k", ls="--", lw=1, label="bare axum")
            left.axvline(0.85 * med["anchor"]["rps"], color="tab:red", ls=":", lw=1,
                         label="0.85 × bare axum")
            for bar, value in zip(bars, rps[::-1]):
                left.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                          f" {value / med['anchor']['rps']:.2f}", va="center", fontsize=8)
            left.legend(loc="lower right", fontsize=8)
        left.set_xlabel("req/s (GET /downcase, wrk -c32)")
        left.set_title("Throughput per configuration")
    if (lat := runs.get("latency")) and lat["figures"]:
        med = lat["figures"]["medians"]
        for name, color in (("1000/s", "tab:blue"), ("half", "tab:orange")):
            m = med[name]
            label = f"{m['rate']:.0f} req/s"
            # Share of events slower than each quantile, on a log scale: the tail is visible.
            keep = [i for i, q in enumerate(m["line"]["quantiles"]) if q < 1]
            above = [1 - m["line"]["quantiles"][i] for i in keep]
            right.plot([m["line"]["ms"][i] for i in keep], above, color=color, marker="o",
                       ms=3, label=f"{label}: sent → line in log")
            right.plot([m["answer"]["ms"][i] for i in keep], above, color=color, ls="--",
                       marker=".", ms=3, label=f"{label}: HTTP answer")
        right.axvline(2, color="tab:blue", ls=":", lw=1)
        right.axvline(5, color="tab:orange", ls=":", lw=1)
        right.set_xscale("log")
        right.set_xlabel("ms (log scale); dotted: p99 targets")
        right.set_yscale("log")
        right.invert_yaxis()
        right.set_yticks([1, 0.5, 0.1, 0.01, 0.001], ["p0", "p50", "p90", "p99", "p99.9"])
        right.set_ylabel("quantile")
        right.set_title("One-way latency, paced open-loop load")
        right.legend(fontsize=8, loc="upper left")
        right.grid(alpha=0.3)
    m = everything["machine"]
    fig.suptitle(f"{everything['date']}, {everything['commit']}, {m['cores']} cores, load "
                 f"average {m['load_average'][0]}–{m['load_average'][1]}"
                 f"{' (quick)' if everything['quick'] else ''}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def readme_with(figures):
    """README.md with `figures` between the markers."""
    text = README.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"report: README.md lacks the markers {BEGIN} … {END}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return (f"{head}{BEGIN}\n<!-- written by bench/report.py from bench/results/all.json -->\n\n"
            f"![Throughput and latency](bench/results/performance.png)\n\n{figures}\n\n{END}{tail}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="only check README.md is up to date")
    args = p.parse_args()
    everything = json.loads((RESULTS / "all.json").read_text())
    figures = figures_md(everything)
    readme = readme_with(figures)
    if args.check:
        sys.exit(0 if readme == README.read_text() else "report: README.md's Performance "
                 "figures differ from bench/results/all.json; run python3 bench/report.py")
    (RESULTS / "all.md").write_text(f"# Benchmarks\n\n{figures}\n")
    picture(everything, RESULTS / "performance.png")
    README.write_text(readme)
    print("written: bench/results/all.md, bench/results/performance.png, README.md "
          "(Performance figures)")


if __name__ == "__main__":
    main()
