"""Live feedback from an unlearning run: after every engine epoch, forget and retain accuracy.

Used by ``forgetkit.unlearn(progress="metrics")`` and by a sweep's ``progress: metrics`` bars alike,
so it lives below both.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..data.base import as_float
from ..inputs import model_device

METRIC_SAMPLES = 512
"""at most this many forget and this many retain samples are scored per epoch (a fixed seeded draw)"""
EVAL_BATCH = 512


class EpochMetrics:
    """A progress callback ``(step, total)`` that also writes, after every engine epoch, a line of
    forget and retain accuracy (eval mode, fp32, no gradients; the model's mode is restored).

    The engine calls :meth:`epoch_end`; the samples are drawn once per run (seeded, at most
    ``samples`` of each split), so the lines of one run are comparable. ``steps``: the step
    callback to forward to (a bar); ``write``: where lines go (default: print to stdout).
    """

    def __init__(self, steps: Callable[[int, int], None] | None = None, write: Callable[[str], None] | None = None,
                 samples: int = METRIC_SAMPLES, label: str = "unlearning"):
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
        self.steps, self.samples, self.label = steps, samples, label
        self.write = write or (lambda line: print(line, flush=True))
        self._ctx, self._data, self.lines = None, {}, 0

    def __call__(self, step: int, total: int) -> None:
        if self.steps is not None:
            self.steps(step, total)

    def _sample(self, ctx) -> dict:
        if self._ctx is not ctx:  # a new run (or a method's next stage): draw its samples once
            self._ctx, self._data = ctx, {}
            for name in ("forget", "retain"):
                split = getattr(ctx, name)
                if split is None or not len(split):
                    continue
                gen = torch.Generator().manual_seed(0)
                pos = torch.randperm(len(split), generator=gen)[:self.samples].sort().values
                self._data[name] = (split.x[pos], split.y[pos.to(split.y.device)])
        return self._data

    @torch.no_grad()
    def accuracies(self, model: torch.nn.Module, ctx) -> dict[str, float]:
        """Top-1 accuracy in % on the fixed forget / retain samples of ``ctx``."""
        mode = model.training
        model.eval()
        dev = model_device(model)
        out = {}
        try:
            for name, (x, y) in self._sample(ctx).items():
                hits = sum((model(as_float(x[i:i + EVAL_BATCH].to(dev))).float().argmax(1).cpu()
                            == y[i:i + EVAL_BATCH].cpu()).sum().item() for i in range(0, len(y), EVAL_BATCH))
                out[name] = 100.0 * hits / len(y)
        finally:
            model.train(mode)
        return out

    def epoch_end(self, model: torch.nn.Module, ctx, epoch: int, record: dict) -> None:
        """Write epoch ``epoch``'s line (called by the engine after each epoch)."""
        self.line(model, ctx, f"{self.label} epoch {epoch + 1}", f"loss {record['loss']:.4f}")

    def line(self, model: torch.nn.Module, ctx, *head: str) -> None:
        """Write ``head`` and the accuracies of ``model`` on the samples of ``ctx`` as one line."""
        acc = self.accuracies(model, ctx)
        parts = [*head] + [f"{name} acc {acc[name]:.1f} % (n={len(self._data[name][1])})"
                           for name in ("forget", "retain") if name in acc]
        self.write("  " + "  ".join(parts))
        self.lines += 1
