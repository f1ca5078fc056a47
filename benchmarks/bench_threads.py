"""Thread benchmark: the demo (configs/quick.yaml, cold cache) at 1 and 2 torch threads, and two
small runs side by side at two threads each vs one thread each.

Each configuration runs in a fresh process with its own output and cache directory, so every model
is trained; wall time is measured around the process. Writes a JSON record and prints table rows.

    python benchmarks/bench_threads.py --out benchmarks/results/threads.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(config: str, out: Path, sets: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "forgetkit.cli", "run", config, "--out", str(out), "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def timed(procs: list[subprocess.Popen]) -> float:
    start = time.perf_counter()
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"run failed ({p.returncode}): {err[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--dataset", default=None, help="dataset for the demo (default: the config's)")
    ap.add_argument("--pairs-only", action="store_true", help="skip the two demo runs")
    args = ap.parse_args()
    data = [f"dataset={args.dataset}"] if args.dataset else []
    record = {"cpu": platform.processor() or platform.machine(), "cores": len(os.sched_getaffinity(0)), "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for threads in () if args.pairs_only else (1, 2):
            t = timed([run("configs/quick.yaml", tmp / f"demo{threads}" / "out", data + [f"threads={threads}"])])
            record["runs"][f"demo, threads={threads}"] = round(t, 1)
            print(f"| demo (configs/quick.yaml), threads {threads} | {t:.0f} s |", flush=True)
        small = ["train_size=3000", "test_size=1000", "seeds=[0]"] + data
        for label, sets in (("threads=2 each", ["threads=2"]), ("threads=1 each", ["threads=1"])):
            t = timed([run("configs/quick.yaml", tmp / f"pair{i}{len(sets)}" / "out", small + sets) for i in range(2)])
            record["runs"][f"two small runs at once, {label}"] = round(t, 1)
            print(f"| two small runs at once, {label} | {t:.0f} s |", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
