"""SSD: Selective Synaptic Dampening, a closed-form edit driven by two diagonal Fisher estimates.

Source: Foster, Schoepf & Brintrup, "Fast Machine Unlearning Without Retraining Through Selective
Synaptic Dampening", AAAI 2024; reference ``if-loops/selective-synaptic-dampening``
``src/ssd.py`` (``ParameterPerturber.calc_importance``, ``modify_weight``) and
``src/forget_random_strategies.py::ssd_tuning``; defaults from ``src/forget_random_main.py``
(α = 10 "selection weighting", λ = 1 "dampening constant", batch 128).

Importance of a parameter on a data set: the squared gradient of the batch-mean cross-entropy,
summed over mini-batches and divided by their number, with the model in eval mode. The "full"
importance is taken on D_r ∪ D_f (the reference concatenates retain and forget training data),
the forget importance on D_f. Every parameter with I_f > α·I_full is multiplied by
min(λ·I_full / I_f, 1); all others are left exactly as they are. No training loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Split, as_float
from .base import METHODS, Method


def importance(model: nn.Module, data: Split, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Diagonal Fisher as in the reference: mean over mini-batches of (∂ mean-batch CE / ∂θ)²."""
    imp = {n: torch.zeros_like(p) for n, p in model.named_parameters() if p.requires_grad}
    batches = 0
    for start in range(0, len(data), batch_size):
        x = as_float(data.x[start:start + batch_size].to(device))
        y = data.y[start:start + batch_size].to(device)
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        for n, p in model.named_parameters():
            if n in imp and p.grad is not None:
                imp[n] += p.grad.detach().square()
        batches += 1
    model.zero_grad(set_to_none=True)
    return {n: v / max(1, batches) for n, v in imp.items()}


def dampening_factors(imp_full: torch.Tensor, imp_forget: torch.Tensor, alpha: float, lam: float) -> torch.Tensor:
    """β = min(λ·I_full/I_f, 1) where I_f > α·I_full, else exactly 1 (SSD Eq. 3–4)."""
    selected = imp_forget > alpha * imp_full
    beta = (lam * imp_full / imp_forget.where(selected, torch.ones_like(imp_forget))).clamp(max=1.0)
    return torch.where(selected, beta, torch.ones_like(beta))


@METHODS.register("ssd")
@dataclass
class SSD(Method):
    description: ClassVar[str] = "dampen weights far more important to the forget set than to all data (closed form)"
    paper_name: ClassVar[str] = "SSD"
    tune_space: ClassVar[dict] = {
        "alpha": {"low": 0.1, "high": 100.0, "log": True},
        "lam": {"low": 0.1, "high": 10.0, "log": True},
    }
    needs: ClassVar[frozenset] = frozenset({"forget", "retain"})
    streams: ClassVar[bool] = False  # its importances read the retain and forget inputs concatenated in memory

    alpha: float = 10.0
    """selection weighting α: dampen where forget importance exceeds α × full importance"""
    lam: float = 1.0
    """dampening constant λ: selected parameters are scaled by min(λ·I_full/I_f, 1)"""
    batch_size: int = 128
    """mini-batch size of both importance passes (the reference's ``-b`` default)"""

    def __post_init__(self):
        for name in ("alpha", "lam"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"ssd: {name} must be a number > 0, got {v!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"ssd: batch_size must be an integer >= 1, got {self.batch_size!r}")

    def run(self, model, ctx, prepared, progress):
        model.eval()
        full = Split(torch.cat([ctx.retain.x, ctx.forget.x]), torch.cat([ctx.retain.y, ctx.forget.y]))
        imp_forget = importance(model, ctx.forget, self.batch_size, ctx.device)
        imp_full = importance(model, full, self.batch_size, ctx.device)
        dampened = total = 0
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n not in imp_full:
                    continue
                beta = dampening_factors(imp_full[n], imp_forget[n], self.alpha, self.lam)
                p.mul_(beta)
                dampened += int((beta < 1).sum())
                total += beta.numel()
        if progress is not None:
            progress(1, 1)
        return {"dampened_fraction": dampened / max(1, total)}
