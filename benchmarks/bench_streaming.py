"""Streaming data path vs resident tensors on the same work: MNIST-5k, MLP, CPU, one thread.

    OMP_NUM_THREADS=1 python benchmarks/bench_streaming.py [--epochs 3] [--repeats 3]

One original model (MLP 784-256-256-10, trained 3 epochs on the 4,000 MNIST-5k training images)
unlearns a seeded random 10 % (400 images) with RL (mixed forget/retain batches) and FT (retain
only), batch 256, through ``forgetkit.unlearn`` with the training data given as

* ``resident``: uint8 tensors (the fast path);
* ``stream, no transform``: the same tensors as a ``TensorDataset`` with ``data_path="streaming"``
  (the path's own cost: per-sample reads, collation, the up-front check pass);
* ``stream, ToTensor-like``: a Dataset whose transform scales each uint8 image to float (what
  torchvision's ``ToTensor`` does), so the transform's cost is included;
* ``DataLoader, 1 worker``: the transform Dataset in a ``DataLoader(num_workers=1)``;
* ``resident + metrics``: resident, with the live per-epoch accuracy line (``progress="metrics"``,
  lines discarded here) to show its cost.

Times are the unlearning itself (``result.seconds``) and the whole call (input checks included),
median of ``--repeats``. The first two give the same model bit for bit (checked here).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import forgetkit
from forgetkit.bench.progress import EpochMetrics
from forgetkit.data import load_dataset
from forgetkit.models import build_model
from forgetkit.train import TrainRecipe, train_classifier


class Scaled(Dataset):
    """uint8 images scaled to float in [0, 1] by a transform at every read (as ToTensor does)."""

    def __init__(self, x, y):
        self.x, self.y = x, y
        self.transform = lambda img: img.float().div(255)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.transform(self.x[i]), self.y[i]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    bundle = load_dataset("mnist5k")
    x, y = bundle.train.x, bundle.train.y
    torch.manual_seed(0)
    model = build_model("mlp", bundle.input_shape, 10)
    train_classifier(model, bundle.train, TrainRecipe(epochs=3, lr=0.05, batch_size=128), 0, torch.device("cpu"), 10)
    forget = np.sort(np.random.RandomState(0).choice(len(y), len(y) // 10, replace=False))
    inputs = {
        "resident": lambda: ((x, y), {}),
        "stream, no transform": lambda: (TensorDataset(x, y), {"data_path": "streaming"}),
        "stream, ToTensor-like": lambda: (Scaled(x, y), {}),
        "DataLoader, 1 worker": lambda: (DataLoader(Scaled(x, y), batch_size=256, num_workers=1), {}),
        "resident + metrics": lambda: ((x, y), {"progress": EpochMetrics(write=lambda line: None)}),
    }
    print(f"MNIST-5k train {len(y)} images, forget {len(forget)}, MLP, {args.epochs} epochs, batch 256, "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread")
    print(f"{'method':6} {'data':24} {'unlearn s':>10} {'call s':>8} {'x resident':>11}  path")
    for method in ("rl", "ft"):
        base, models = None, {}
        for label, make in inputs.items():
            seconds, calls = [], []
            for _ in range(args.repeats):
                data, kw = make()
                t = time.perf_counter()
                res = forgetkit.unlearn(model, data, forget, method=method, epochs=args.epochs, batch_size=256,
                                        seed=0, **kw)
                calls.append(time.perf_counter() - t)
                seconds.append(res.seconds)
            models[label] = res.model
            med = statistics.median(seconds)
            base = base or med
            print(f"{method:6} {label:24} {med:>10.3f} {statistics.median(calls):>8.3f} {med / base:>10.2f}×  "
                  f"{res.info['data_path']}")
        same = all(torch.equal(a, b) for a, b in zip(models["resident"].state_dict().values(),
                                                     models["stream, no transform"].state_dict().values()))
        print(f"{method}: streamed and resident models identical: {same}")


if __name__ == "__main__":
    main()
