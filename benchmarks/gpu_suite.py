"""The GPU numbers in one run: training loop vs a bare loop, evaluation, a FaLW γ-sweep, U-LiRA shadows.

    python benchmarks/gpu_suite.py --out runs/gpu-suite [--data-dir DIR]   # CUDA, within 10 minutes
    python benchmarks/gpu_suite.py --cpu --out runs/gpu-suite-cpu          # tiny sizes, seconds

Writes ``gpu_suite.json`` (every measurement with its sizes and the machine) and ``gpu_suite.md``
(one table). The four parts, each on a ResNet-18 (CIFAR stem) with the data resident on the device:

1. training throughput, images/s: forgetkit's engine (bf16 autocast and channels-last on CUDA) vs a
   bare PyTorch loop doing the same steps (``bench_train_loop.bare_loop``), best of two;
2. evaluation throughput, images/s: ``predict_logits`` (fp32, eval mode) over the training images;
3. the FaLW γ-sweep: RL with FaLW's weights on a 30 % long-tailed forget set for each of the FaLW
   paper's seven γ (Table 2), seconds in all; CIFAR-10 from ``--data-dir`` when given, else random
   CIFAR-shaped images;
4. U-LiRA shadows per minute: shadow models trained with the shadow recipe (``train_shadows``),
   and shadows trained then unlearned by RL, as the U-LiRA evaluator makes them.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_loop import bare_loop, timed  # noqa: E402  the one bare loop the benchmarks share

from forgetkit import api  # noqa: E402
from forgetkit.data import load_dataset  # noqa: E402
from forgetkit.data.base import Split, heldout_split  # noqa: E402
from forgetkit.data.requests import longtail_request  # noqa: E402
from forgetkit.metrics.core import predict_logits  # noqa: E402
from forgetkit.metrics.shadows import train_shadows  # noqa: E402
from forgetkit.models import build_model  # noqa: E402
from forgetkit.train import TrainRecipe, train_classifier  # noqa: E402

GAMMAS = (0.0, 0.25, 1 / 3, 0.5, 1.0, 1.5, 2.0)
"""the imbalance factors of the FaLW paper's Table 2"""


@dataclass(frozen=True)
class Sizes:
    """How big each part is: the GPU defaults fit 10 minutes of an H100 with room to spare."""

    width: int = 64
    train_images: int = 16384
    train_epochs: int = 3
    eval_images: int = 50000
    sweep_pool: int = 10000
    sweep_epochs: int = 5
    sweep_original_epochs: int = 10
    shadows: int = 4
    shadow_pool: int = 10000
    shadow_epochs: int = 5


CPU_SIZES = Sizes(width=4, train_images=128, train_epochs=1, eval_images=256, sweep_pool=300, sweep_epochs=1,
                  sweep_original_epochs=1, shadows=2, shadow_pool=128, shadow_epochs=1)
GAMMAS_CPU = (0.0, 1.0)


def random_cifar(n: int, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                 torch.arange(n) % 10)


def cifar_pool(data_dir: str | None, n: int) -> tuple[Split, str]:
    """``n`` CIFAR-10 training images (the first ``n``), or random CIFAR-shaped ones without a data dir."""
    if data_dir is None:
        return random_cifar(n), "random CIFAR-shaped images"
    bundle = load_dataset("cifar10", data_dir)
    return bundle.train.subset(np.arange(min(n, len(bundle.train)))), f"CIFAR-10 ({bundle.source})"


def build(width: int, device: torch.device) -> torch.nn.Module:
    return build_model("resnet18", (3, 32, 32), 10, width=width).to(device)


def training_throughput(s: Sizes, device: torch.device) -> dict:
    data = random_cifar(s.train_images)
    x, y = data.x.to(device), data.y.to(device)
    recipe = TrainRecipe(epochs=s.train_epochs, lr=0.01, batch_size=128, schedule="constant")

    def fresh():
        torch.manual_seed(0)
        return build(s.width, device)

    def library():
        train_classifier(fresh(), Split(x, y), recipe, 0, device, 10)

    def bare():
        bare_loop(fresh(), x, y, recipe.batch_size, recipe.epochs, device)

    bare()  # warm-up: cuDNN autotuning, allocator
    t_bare = min(timed(bare, device) for _ in range(2))
    t_lib = min(timed(library, device) for _ in range(2))
    n = s.train_images * s.train_epochs
    return {"images": s.train_images, "epochs": s.train_epochs, "batch_size": recipe.batch_size,
            "bare_images_per_s": round(n / t_bare, 1), "forgetkit_images_per_s": round(n / t_lib, 1),
            "ratio": round(t_bare / t_lib, 3)}


def evaluation_throughput(s: Sizes, device: torch.device) -> dict:
    model = build(s.width, device)
    x = random_cifar(s.eval_images).x.to(device)
    predict_logits(model, x[:1024], device)  # warm-up
    seconds = timed(lambda: predict_logits(model, x, device), device)
    return {"images": s.eval_images, "images_per_s": round(s.eval_images / seconds, 1), "precision": "fp32"}


def falw_sweep(s: Sizes, device: torch.device, data_dir: str | None, gammas) -> dict:
    pool, source = cifar_pool(data_dir, s.sweep_pool)
    keep, held = heldout_split(pool.y, 0.1, 0)
    train, heldout = pool.subset(keep), pool.subset(held)
    torch.manual_seed(0)
    original = build(s.width, device)
    train_classifier(original, train, TrainRecipe(epochs=s.sweep_original_epochs, batch_size=128), 0, device, 10)
    per_gamma = {}
    for gamma in gammas:
        forget = longtail_request(train.y.numpy(), 10, 0.3, gamma, 0).indices
        start = time.perf_counter()
        api.unlearn(original, train, forget, "rl", heldout=heldout, weighting="falw", device=device,
                    epochs=s.sweep_epochs, batch_size=512)
        if device.type == "cuda":
            torch.cuda.synchronize()
        per_gamma[f"{gamma:.3g}"] = round(time.perf_counter() - start, 2)
    return {"data": source, "pool": len(train), "heldout": len(heldout), "forget_ratio": 0.3,
            "epochs": s.sweep_epochs, "batch_size": 512, "seconds_per_gamma": per_gamma,
            "seconds": round(sum(per_gamma.values()), 2)}


def shadows_per_minute(s: Sizes, device: torch.device) -> dict:
    pool = random_cifar(s.shadow_pool, seed=1)
    recipe = TrainRecipe(epochs=s.shadow_epochs, batch_size=128)
    template = build(s.width, device)
    seeds = list(range(s.shadows))
    train_shadows(template, pool.subset(np.arange(min(256, len(pool)))), recipe, seeds[:1], device, 10)  # warm-up
    start = time.perf_counter()
    models = train_shadows(template, pool, recipe, seeds, device, 10)
    trained = time.perf_counter() - start
    forget = np.arange(0, len(pool), 10)
    start = time.perf_counter()
    for m in models:
        api.unlearn(m, pool, forget, "rl", device=device, epochs=s.shadow_epochs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    unlearned = time.perf_counter() - start
    return {"shadows": s.shadows, "pool": s.shadow_pool, "epochs": s.shadow_epochs,
            "trained_per_min": round(60 * s.shadows / trained, 2),
            "trained_and_unlearned_per_min": round(60 * s.shadows / (trained + unlearned), 2)}


def machine(device: torch.device) -> dict:
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else (platform.processor() or platform.machine())
    return {"device": f"{device.type} ({name})", "torch": torch.__version__, "threads": torch.get_num_threads(),
            "commit": _commit()}


def _commit() -> str:
    import subprocess

    git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True,  # noqa: E731
                                    cwd=Path(__file__).parent).stdout.strip()
    return (git("rev-parse", "--short", "HEAD") or "unknown") + ("+dirty" if git("status", "--porcelain") else "")


def markdown(result: dict) -> str:
    t, e, f, sh = result["training"], result["evaluation"], result["falw_sweep"], result["shadows"]
    m = result["machine"]
    rows = [
        ("training loop, images/s (ResNet-18 width {w}, {n} images × {ep} epochs, batch {b})".format(
            w=result["width"], n=t["images"], ep=t["epochs"], b=t["batch_size"]),
         f"forgetkit {t['forgetkit_images_per_s']:,.0f}; bare loop {t['bare_images_per_s']:,.0f}; "
         f"ratio {t['ratio']:.3f}"),
        (f"evaluation, images/s ({e['precision']}, {e['images']} images)", f"{e['images_per_s']:,.0f}"),
        (f"FaLW γ-sweep ({len(f['seconds_per_gamma'])} γ, RL + FaLW {f['epochs']} epochs, pool {f['pool']}, "
         f"{f['data']})", f"{f['seconds']:.1f} s in all"),
        (f"U-LiRA shadows ({sh['shadows']} shadows, {sh['pool']} images × {sh['epochs']} epochs)",
         f"{sh['trained_per_min']:.2f} trained/min; {sh['trained_and_unlearned_per_min']:.2f} trained + unlearned/min"),
    ]
    lines = [f"Device {m['device']}, torch {m['torch']}, commit `{m['commit']}`; the whole suite "
             f"{result['seconds']:.0f} s.", "", "| what | measured |", "|---|---|"]
    return "\n".join(lines + [f"| {a} | {b} |" for a, b in rows]) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for gpu_suite.json and gpu_suite.md")
    ap.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ (else random CIFAR-shaped images)")
    ap.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU: a check that the suite runs")
    a = ap.parse_args(argv)
    if not a.cpu and not torch.cuda.is_available():
        ap.error("no CUDA device: run on a GPU machine, or pass --cpu for the tiny check")
    device = torch.device("cpu" if a.cpu else "cuda")
    sizes, gammas = (CPU_SIZES, GAMMAS_CPU) if a.cpu else (Sizes(), GAMMAS)
    start = time.perf_counter()
    result = {"machine": machine(device), "width": sizes.width,
              "training": training_throughput(sizes, device),
              "evaluation": evaluation_throughput(sizes, device),
              "falw_sweep": falw_sweep(sizes, device, a.data_dir, gammas),
              "shadows": shadows_per_minute(sizes, device)}
    result["seconds"] = round(time.perf_counter() - start, 1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_suite.json").write_text(json.dumps(result, indent=1))
    (out / "gpu_suite.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
