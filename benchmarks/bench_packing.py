"""Packing benchmark: 16 small Fashion-MNIST unlearning jobs on Ray, packed vs one at a time.

On a GPU, "one at a time" gives each task a whole GPU (``gpus_per_task=1``) and "packed" gives it
a fraction (default 0.25, so four jobs share the GPU). On CPU only, "one at a time" gives each
task every CPU and "packed" one CPU each. The reference models are trained (untimed) into a shared
cache first, so both modes time the same 16 cells. Writes a JSON record and prints a table row.

    python benchmarks/bench_packing.py --out benchmarks/results/packing.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from forgetkit.bench.config import parse_config
from forgetkit.bench.runner import run_experiment

METHODS = ("ft", "ga", "rl", "neggrad_plus")
LRS = {"ft": (0.01, 0.02, 0.04, 0.08), "ga": (1e-4, 2e-4, 4e-4, 8e-4),
       "rl": (0.005, 0.01, 0.02, 0.04), "neggrad_plus": (0.005, 0.01, 0.02, 0.04)}


def sweep_config(name: str, cache_dir: Path, device: str, train_size: int) -> dict:
    """16 jobs: four methods × four learning rates, one long-tailed request, one seed."""
    methods = [{"name": m, "label": f"{m}@{lr:g}", "options": {"epochs": 2, "lr": lr}}
               for m in METHODS for lr in LRS[m]]
    return {"name": name, "dataset": "fashion_mnist", "train_size": train_size, "test_size": 2000,
            "device": device, "model": {"name": "cnn", "options": {"width": 16}},
            "train": {"epochs": 3, "lr": 0.05, "batch_size": 128},
            "requests": [{"kind": "longtail", "ratio": 0.1, "gamma": 1.0}],
            "methods": methods, "seeds": [0], "cache_dir": str(cache_dir)}


def timed_sweep(raw: dict, out: Path, options: dict) -> float:
    start = time.perf_counter()
    run_experiment(parse_config(raw), out, show_progress=False, executor="ray", executor_options=options)
    return time.perf_counter() - start


def main() -> None:
    import ray

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--gpus-per-task", type=float, default=0.25, help="GPU fraction of a packed job")
    p.add_argument("--train-size", type=int, default=6000)
    p.add_argument("--out", type=Path, help="JSON file for the record")
    args = p.parse_args()
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    ncpu = os.cpu_count() or 1
    if cuda:
        modes = {"one at a time": {"gpus_per_task": 1.0, "cpus_per_task": 1},
                 "packed": {"gpus_per_task": args.gpus_per_task, "cpus_per_task": 1}}
    else:
        modes = {"one at a time": {"gpus_per_task": 0.0, "cpus_per_task": ncpu},
                 "packed": {"gpus_per_task": 0.0, "cpus_per_task": 1}}
    device = "cuda" if cuda else "cpu"
    work = Path(tempfile.mkdtemp(prefix="bench-packing-"))
    ray.init(num_cpus=ncpu, include_dashboard=False, log_to_driver=False)
    try:
        warm = timed_sweep({**sweep_config("warm", work / "cache", device, args.train_size), "methods": [
            {"name": "ft", "options": {"epochs": 1}}]}, work / "warm", modes["packed"])
        seconds = {mode: timed_sweep(sweep_config(mode.replace(" ", "-"), work / "cache", device, args.train_size),
                                     work / mode.replace(" ", "-"), opts) for mode, opts in modes.items()}
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    record = {"device": torch.cuda.get_device_name(0) if cuda else f"cpu ({platform.machine()}, {ncpu} cores)",
              "jobs": 16, "train_size": args.train_size, "modes": modes, "seconds": seconds,
              "speedup": seconds["one at a time"] / seconds["packed"], "reference_training_s": warm,
              "torch": torch.__version__, "ray": ray.__version__}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1))
    print(f"| {record['device']} | 16 | {seconds['one at a time']:.1f} s | {seconds['packed']:.1f} s "
          f"| {record['speedup']:.2f}× |")


if __name__ == "__main__":
    main()
