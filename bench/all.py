#!/usr/bin/env python3
"""Every benchmark in one go, collected into one file.

Entry point (workspace root):  python3 bench/all.py   (--quick to try it, --only NAME ...)

Builds the release binaries once, then runs each script with --no-build and its own --json
under bench/results/: downcase.py (--anchor --costs --journal), signatures.py, replay.py,
latency.py, and fanout.py when it is there. Each script's output goes to the terminal as it
runs; a script that fails stops nothing else and is recorded as failed. Afterwards:

  bench/results/all.json      every script's JSON, with the machine (CPU model, cores, load
                              average before and after), the commit, the date and the mode
  then bench/report.py, which writes bench/results/all.md (the human table),
  bench/results/performance.png and README.md's Performance figures from all.json.

--quick: one round of everything, 2 s wrk runs, 3 s paced runs, a 20 000-event catch-up and no
memory fill — minutes instead of half an hour, for trying the pipeline, not for the README.
Standard library only (the picture needs matplotlib: pip install matplotlib).
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
# (name, script, flags always, flags in --quick mode)
SCRIPTS = [
    ("downcase", "downcase.py", ["--anchor", "--costs", "--journal"],
     ["--rounds", "1", "--duration", "2"]),
    ("signatures", "signatures.py", [], ["--rounds", "1", "--duration", "2"]),
    ("replay", "replay.py", [],
     ["--rounds", "1", "--duration", "2", "--catch-up-events", "20000", "--flood-events",
      "200000", "--no-memory"]),
    ("latency", "latency.py", [], ["--rounds", "1", "--duration", "2", "--seconds", "3"]),
    ("fanout", "fanout.py", [], ["--rounds", "1", "--duration", "2"]),
]


def machine():
    """What the figures were measured on."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), "unknown")
    memory = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    return {"cpu": model, "cores": os.cpu_count(), "memory_gb": round(int(memory) / 1e6, 1),
            "kernel": os.uname().release}


def commit():
    """The commit measured, with `+dirty` when the tree differs from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                          capture_output=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           text=True, capture_output=True).stdout.strip()
    return head + ("+dirty" if dirty else "")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="one short round of everything")
    p.add_argument("--only", action="append", choices=[name for name, *_ in SCRIPTS],
                   help="run only this benchmark (repeatable); the others keep their last JSON")
    p.add_argument("--no-build", action="store_true", help="use the binaries as built")
    args = p.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "--bins"], cwd=ROOT, check=True)
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "publisher", "--example",
                        "bare_downcase", "--example", "paced_load", "--example", "flood"],
                       cwd=ROOT, check=True)
        # replay.py's baseline: the guard's raw PUB→SUB bench binary.
        subprocess.run(["cargo", "bench", "-q", "-p", "guard", "--bench", "relay", "--no-run"],
                       cwd=ROOT, check=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    runs = {}
    for name, script, flags, quick in SCRIPTS:
        if not (BENCH / script).exists() or (args.only and name not in args.only):
            continue
        out = RESULTS / f"{name}.json"
        command = [sys.executable, str(BENCH / script), "--no-build", "--json", str(out), *flags,
                   *(quick if args.quick else [])]
        print(f"\n== {name}: {' '.join(Path(c).name if '/' in c else c for c in command[1:])}",
              flush=True)
        began = time.monotonic()
        code = subprocess.run(command, cwd=ROOT).returncode
        runs[name] = {"command": ["python3", f"bench/{script}", *flags,
                                  *(quick if args.quick else [])],
                      "ok": code == 0, "seconds": round(time.monotonic() - began)}
    path = RESULTS / "all.json"
    collected = json.loads(path.read_text()) if args.only and path.exists() else {"benchmarks": {}}
    for name, run in runs.items():
        figures = RESULTS / f"{name}.json"
        collected["benchmarks"][name] = {
            **run, "figures": json.loads(figures.read_text())
            if run["ok"] and figures.exists() else None}
    collected.update({
        "date": started.strftime("%Y-%m-%d %H:%M UTC"), "commit": commit(),
        "quick": args.quick, "machine": {**machine(),
                                         "load_average": [round(load_before[0], 1),
                                                          round(os.getloadavg()[0], 1)]},
    })
    path.write_text(json.dumps(collected, indent=2) + "\n")
    print(f"\nwritten: {path.relative_to(ROOT)}")
    subprocess.run([sys.executable, str(BENCH / "report.py")], cwd=ROOT, check=True)
    failed = [name for name, run in runs.items() if not run["ok"]]
    if failed:
        sys.exit(f"bench: failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
