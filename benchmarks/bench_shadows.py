"""Time to train 8 + 8 U-LiRA shadow models of the Fashion-MNIST network vs one model.

Two ways to train M models: one after another (what ``metrics.shadows.train_shadows`` does), and
all at once as one batched ensemble (``torch.func.stack_module_state`` + ``vmap``: one kernel
launch per layer for all models, each model with its own data order). The issue's target
(16 models in <= 3x one model's time) is for one GPU; run with ``--device cuda`` there.

BatchNorm under vmap cannot update running statistics in place, so the batched variant replaces
BN by batch-statistics-only BN (``replace_all_batch_norm_modules_``); the timing is representative,
the models are not interchangeable with the sequential ones.

    python benchmarks/bench_shadows.py --models 16 --train-size 6000 --epochs 1
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

import torch
from torch import nn
from torch.func import functional_call, replace_all_batch_norm_modules_, stack_module_state

from forgetkit.data import load_dataset
from forgetkit.data.base import as_float
from forgetkit.models import build_model
from forgetkit.train import TrainRecipe, train_classifier


def sequential(n_models: int, build, data, recipe: TrainRecipe, device) -> float:
    """Seconds to train ``n_models`` one after another."""
    start = time.perf_counter()
    for seed in range(n_models):
        torch.manual_seed(seed)
        train_classifier(build(), data, recipe, seed, device, 10)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def batched(n_models: int, build, data, recipe: TrainRecipe, device) -> float:
    """Seconds to train ``n_models`` as one vmapped ensemble (plain SGD with momentum)."""
    models = []
    for seed in range(n_models):
        torch.manual_seed(seed)
        m = build()
        replace_all_batch_norm_modules_(m)
        models.append(m.to(device))
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    opt = torch.optim.SGD(params.values(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)

    def one(p, b, x, y):
        return nn.functional.cross_entropy(functional_call(base, (p, b), (x,)), y)

    loss_fn = torch.vmap(one, in_dims=(0, 0, 0, 0))
    x_all, y_all = data.x.to(device), data.y.to(device)
    n = len(data)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(recipe.epochs):
        perms = torch.stack([torch.randperm(n, generator=gen) for _ in range(n_models)]).to(device)
        for i in range(0, n, recipe.batch_size):
            idx = perms[:, i:i + recipe.batch_size]
            loss = loss_fn(params, buffers, as_float(x_all[idx]), y_all[idx]).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=16, help="shadow models in all (8 + 8)")
    ap.add_argument("--train-size", type=int, default=6000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--sequential-sample", type=int, default=2,
                    help="sequential models actually trained; the rest is extrapolated linearly")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    bundle = load_dataset("fashion_mnist")
    data = bundle.train.subset(torch.arange(args.train_size))
    recipe = TrainRecipe(epochs=args.epochs, batch_size=128)

    def build():
        return build_model("cnn", bundle.input_shape, 10, width=args.width)

    sequential(1, build, data.subset(torch.arange(256)), recipe, device)  # warm-up: thread pool, allocator
    one = sequential(1, build, data, recipe, device)
    print(f"one model: {one:.2f}s", file=sys.stderr, flush=True)
    k = max(1, args.sequential_sample)
    seq = sequential(k, build, data, recipe, device) / k * args.models
    print(f"sequential ({k} trained, scaled to {args.models}): {seq:.2f}s", file=sys.stderr, flush=True)
    bat = batched(args.models, build, data, recipe, device)
    out = {"device": str(device), "threads": torch.get_num_threads(), "loadavg": os.getloadavg()[0],
           "models": args.models, "train_size": args.train_size, "epochs": args.epochs,
           "one_model_s": round(one, 2), "sequential_all_s": round(seq, 2), "batched_all_s": round(bat, 2),
           "sequential_ratio": round(seq / one, 2), "batched_ratio": round(bat / one, 2)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
