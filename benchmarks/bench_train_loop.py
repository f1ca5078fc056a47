"""Library training loop vs a bare PyTorch loop on the same ResNet-18 / 32×32 workload, in one run.

    python benchmarks/bench_train_loop.py [--n 2048] [--steps 40] [--width 64] [--device auto]

Both loops use the same model init, data (resident on the device), batch size, SGD settings and,
on CUDA, bf16 autocast + channels-last. Prints images/s of each and the ratio (target ≥ 0.9).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from forgetkit.data.base import Split
from forgetkit.models import build_model
from forgetkit.unlearn.context import UnlearnContext
from forgetkit.unlearn.engine import LoopConfig, Parts, run_engine
from forgetkit.unlearn.objectives import RetainCE


def bare_loop(model, x, y, batch_size, epochs, device):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=gen).split(batch_size):
            idx = idx.to(device)
            xb = x[idx].float().div_(255)
            if device.type == "cuda":
                xb = xb.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = F.cross_entropy(model(xb).float(), y[idx])
            else:
                loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--width", type=int, default=64, help="ResNet-18 base width (64 = standard)")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    dev = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if a.device == "auto" else a.device))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (a.n, 3, 32, 32), dtype=torch.uint8, generator=g).to(dev)
    y = torch.randint(0, 10, (a.n,), generator=g).to(dev)

    def fresh():
        torch.manual_seed(0)
        m = build_model("resnet18", (3, 32, 32), 10, width=a.width).to(dev)
        return m.to(memory_format=torch.channels_last) if dev.type == "cuda" else m

    def lib():
        m = fresh()
        ctx = UnlearnContext(original=torch.nn.Identity(), forget=Split(x[:0], y[:0]), retain=Split(x, y),
                             num_classes=10, device=dev)
        run_engine(m, ctx, Parts(retain=RetainCE()),
                   LoopConfig(epochs=a.epochs, lr=0.01, batch_size=a.batch_size, mixing="retain_only"))

    def bare():
        bare_loop(fresh(), x, y, a.batch_size, a.epochs, dev)

    bare()  # warm-up (cuDNN autotune, allocator)
    t_bare = min(timed(bare, dev) for _ in range(2))
    t_lib = min(timed(lib, dev) for _ in range(2))
    n = a.n * a.epochs
    print(f"device={dev} n={a.n} epochs={a.epochs} batch={a.batch_size} width={a.width}")
    print(f"bare loop:    {n / t_bare:8.1f} img/s")
    print(f"forgetkit:    {n / t_lib:8.1f} img/s")
    print(f"ratio lib/bare: {t_bare / t_lib:.3f} (target >= 0.9)")


if __name__ == "__main__":
    main()
