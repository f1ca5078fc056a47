"""FaLW's cost and quality against its base method (RL) at equal epochs, per estimation schedule.

``python benchmarks/bench_falw.py [--train-size 10000] [--model mlp] [--train-epochs 10] [--epochs 3] [--repeats 3]
[--quality-seeds 0 1 2] [--out /tmp/falw-bench]``

Timing: one Fashion-MNIST long-tailed request (30%, γ = 1), one original model; RL with uniform
weights and RL + FaLW under each schedule run interleaved ``--repeats`` times in this process on
the same context, so load on the machine hits every variant alike; the median is reported.
Quality: the same variants through the runner (Retrain reference, Avg. Gap) over ``--quality-seeds``.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import torch

from forgetkit.bench.config import parse_config
from forgetkit.bench.intervals import PLUS_MINUS, fmt_ci
from forgetkit.bench.runner import Workspace, run_experiment
from forgetkit.bench.store import ResultStore
from forgetkit.methods import build_method
from forgetkit.unlearn.weightings import build_weighting

VARIANTS = {  # label → (weighting, options)
    "RL": ("uniform", {}),
    "FaLW every_step": ("falw", {"estimate": "every_step"}),
    "FaLW every_k (k=10)": ("falw", {"estimate": "every_k", "k": 10}),
    "FaLW every_k (k=50)": ("falw", {"estimate": "every_k", "k": 50}),
    "FaLW running (128)": ("falw", {"estimate": "running", "running_batch": 128}),
}


def config(train_size: int, model: str, train_epochs: int, epochs: int, seeds: list[int]) -> dict:
    methods = [{"name": "rl", "label": label, "weightings": [w], "options": {"epochs": epochs},
                "weighting_options": {w: opts}} for label, (w, opts) in VARIANTS.items()]
    return {"name": "falw-bench", "dataset": "fashion_mnist", "train_size": train_size, "test_size": 2000,
            "model": {"name": model, "options": {"width": 16} if model == "cnn" else {}},
            "train": {"epochs": train_epochs, "lr": 0.05, "batch_size": 128, "schedule": "cosine"},
            "requests": [{"kind": "longtail", "ratio": 0.3, "gamma": 1.0}], "methods": methods,
            "seeds": seeds, "device": "cpu"}


def time_variants(cfg, cache_dir: Path, epochs: int, repeats: int) -> dict[str, list[float]]:
    """Wall seconds of ``method.unlearn`` per variant, interleaved over repeats."""
    ws = Workspace(cfg, cache_dir)
    ctx = ws.context(0, 0)
    original = ws.original(0)[0]
    times: dict[str, list[float]] = {label: [] for label in VARIANTS}
    for _ in range(repeats):
        for label, (w, opts) in VARIANTS.items():
            method = build_method("rl", epochs=epochs)
            start = time.perf_counter()
            method.unlearn(original, ctx, build_weighting(w, **opts))
            times[label].append(time.perf_counter() - start)
    return times


def quality(cfg, out: Path) -> dict[str, list[float]]:
    """Avg. Gap to Retrain per variant and seed, through the runner."""
    run_experiment(cfg, out, show_progress=False)
    gaps: dict[str, list[float]] = {label: [] for label in VARIANTS}
    with ResultStore(out / "results.sqlite") as store:
        for r in store.rows(status="ok"):
            if r["method"] in gaps:
                gaps[r["method"]].append(r["metrics"]["AvgGap"])
    return gaps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-size", type=int, default=10000)
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--train-epochs", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quality-seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("/tmp/falw-bench"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    raw = config(args.train_size, args.model, args.train_epochs, args.epochs, args.quality_seeds or [0])
    cfg = parse_config(raw)
    gaps = quality(cfg, args.out / "quality") if args.quality_seeds else {}
    times = time_variants(cfg, args.out / ".forgetkit-cache", args.epochs, args.repeats)
    base = statistics.median(times["RL"])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, train_size {args.train_size}, "
          f"model {args.model}, {args.epochs} epochs, {args.repeats} repeats")
    print(f"| Variant | median time (s) | × RL | Avg. Gap ({PLUS_MINUS}) |")
    print("|---|---|---|---|")
    for label, ts in times.items():
        med = statistics.median(ts)
        g = gaps.get(label, [])
        gap = fmt_ci(g)
        print(f"| {label} | {med:.2f} | {med / base:.2f}× | {gap} |")


if __name__ == "__main__":
    main()
