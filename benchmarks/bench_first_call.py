"""First-call latency: whole-process time of a small ``forgetkit.unlearn`` call, before and after LoopSGD.

Each repeat is a fresh process under ``/usr/bin/time -v`` (wall clock, user + system CPU), one
torch thread. "before" runs the same script on the package as it was at ``--before`` (extracted
with ``git archive`` into a temporary folder, so torch.optim.SGD imports ``torch._dynamo``);
"after" on the working tree. Runs alternate (before, after, before, ...) so both see the same load.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_first_call.py --before a9354bb --repeats 5
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import sys, time
t0 = time.perf_counter()
import numpy as np, torch
from sklearn.datasets import load_digits
import forgetkit
t1 = time.perf_counter()
d = load_digits()
x = torch.tensor(np.round(d.images * 255 / 16), dtype=torch.uint8).unsqueeze(1)
y = torch.tensor(d.target)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
forgetkit.unlearn(model, (x, y), np.arange(180), method="rl", epochs=1, lr=0.01)
t2 = time.perf_counter()
print(f"import {t1 - t0:.3f} call {t2 - t1:.3f} dynamo {'torch._dynamo' in sys.modules}")
"""


def timed(src: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(src)}
    out = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         env=env, timeout=600, check=True)
    err = out.stderr

    def field(name: str) -> str:
        return re.search(rf"{re.escape(name)}: (.+)", err).group(1).strip()

    m, s = field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")[-2:]
    inner = dict(zip(*[iter(out.stdout.split())] * 2))
    return {"wall": 60 * float(m) + float(s), "cpu": float(field("User time (seconds)")) + float(field("System time (seconds)")),
            "import": float(inner["import"]), "call": float(inner["call"]), "dynamo": inner["dynamo"] == "True"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="commit whose package is the 'before' (torch.optim.SGD)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before, "src"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        sources = {"before": Path(tmp) / "src", "after": ROOT / "src"}
        runs: dict[str, list[dict]] = {k: [] for k in sources}
        for _ in range(args.repeats):
            for label, src in sources.items():
                runs[label].append(timed(src))
    print(f"{'':8}{'wall s (min-max, median)':>28}{'CPU s (median)':>16}{'unlearn call s (median)':>26}  dynamo imported")
    for label, rs in runs.items():
        wall = [r["wall"] for r in rs]
        print(f"{label:8}{min(wall):>10.2f}-{max(wall):.2f}, {statistics.median(wall):.2f}"
              f"{statistics.median(r['cpu'] for r in rs):>16.2f}{statistics.median(r['call'] for r in rs):>26.3f}"
              f"  {sorted({r['dynamo'] for r in rs})}")
        print("        wall:", " ".join(f"{w:.2f}" for w in wall))


if __name__ == "__main__":
    main()
