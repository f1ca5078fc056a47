"""SFR-on: alternate masked, adaptively weighted ascent on D_f with plain descent on D_r.

Source: Huang et al., "Unified gradient-based machine unlearning with remain geometry
enhancement", NeurIPS'24; reference ``K1nght/Unified-Unlearning-w-Remain-Geometry``
``Classification/unlearn/sfron.py`` (CIFAR-10 10% block). Mask (``get_weight_saliency_mask``, eval
mode): F = mean over batches of (∇ batch-mean CE)², kept where (F_f + 1e-15)/(F_r + 1e-15) ≥ 1.
Adaptive forget loss (``AdaptiveLoss``): w_i = B·c_i/Σc_j with c_i = 1/(ℓ_i^λ + 1e-15), λ = 0.5.
Loop: T = 1500 retain steps of CE (unmasked, unclipped); before every 5th one a forget step on
−α_t·mean(w_i·CE_i), α_t = 25·(1 + cos(πt/T))/2, gradient masked and clipped to norm 7. SGD
lr 0.01 (cosine over T), momentum 0.9, wd 5e-4, batch 128, train mode.

Weighting: the adaptive weights are the weighting ``sfron_adaptive``; when the caller passes the
``uniform`` weighting (the runner's default) or none, SFR-on uses its own; any other weighting
(e.g. FaLW) replaces it.

The loop is the engine's ``alternating`` mixing: one optimiser (momentum shared by both kinds of
step, as in the reference), endless reshuffled forget and retain streams, the mask, the clip and
the weighting on forget steps only; the learning rate and α_t follow the cosine per iteration t,
a forget step and the retain step after it sharing t. Deviation: forget steps keep unselected
weights exactly fixed (the engine's mask, which also zeroes their momentum); the reference only
masks their gradient.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Split
from ..unlearn.engine import LoopConfig, Parts
from ..unlearn.grads import accumulate_grads
from ..unlearn.masks import Mask
from ..unlearn.objectives import NegativeCE, RetainCE
from ..unlearn.weightings import WEIGHTINGS, Weighting
from .base import METHODS, EngineMethod


def adaptive_weights(losses: torch.Tensor, power: float) -> torch.Tensor:
    """w_i = B·c_i/Σc_j, c_i = 1/(ℓ_i^λ + 1e-15): low-loss (still remembered) samples weigh more."""
    c = 1.0 / (losses.detach().clamp_min(0) ** power + 1e-15)
    return len(c) * c / c.sum()


@WEIGHTINGS.register("sfron_adaptive")
class SFRonAdaptive(Weighting):
    """SFR-on's adaptive forget weights from each sample's current CE loss."""

    description = "SFR-on: w_i ∝ 1/CE_i^λ, normalised to mean 1 over the batch"
    paper_name: ClassVar[str] = "SFRon weights"

    def __init__(self, power: float = 0.5):
        self.power = power

    def __call__(self, logits, batch, ctx):
        return adaptive_weights(F.cross_entropy(logits.float(), batch.y, reduction="none"), self.power)


def mean_sq_batch_grad(model: nn.Module, split: Split, batch_size: int, device) -> dict[str, torch.Tensor]:
    """(1/#batches)·Σ_batches (∇ batch-mean CE)², in eval mode (the reference's "Fisher")."""
    sums, batches = accumulate_grads(model, split, batch_size, lambda out, y: F.cross_entropy(out.float(), y),
                                     train=False, device=device, combine=lambda g: g * g)
    return {n: a / max(1, batches) for n, a in sums.items()}


def fisher_ratio_mask(fisher_forget: dict, fisher_retain: dict, threshold: float) -> Mask:
    """Weights more important to D_f than to D_r: (F_f + 1e-15)/(F_r + 1e-15) ≥ threshold."""
    return {n: (f + 1e-15) / (fisher_retain[n] + 1e-15) >= threshold for n, f in fisher_forget.items()}


@METHODS.register("sfron")
@dataclass
class SFRon(EngineMethod):
    description: ClassVar[str] = "Fisher-ratio mask, adaptive forget weights, alternating forget/retain steps"
    paper_name: ClassVar[str] = "SFRon"
    tune_space: ClassVar[dict] = {
        "lr": {"low": 0.001, "high": 0.1, "log": True},
        "n_iters": {"low": 100, "high": 1500, "log": True},
        "forget_alpha": {"low": 1.0, "high": 100.0, "log": True},
    }
    needs: ClassVar[frozenset] = frozenset({"forget", "retain"})
    supports_weighting: ClassVar[bool] = True
    mixing: ClassVar[str] = "alternating"
    smoke_caps: ClassVar[dict[str, int | float]] = {"n_iters": 10}

    n_iters: int = 1500
    """retain steps T (``n_iters``)"""
    epochs: int | None = None
    """optional cap on passes over D_r; None: as many as ``n_iters`` needs"""
    forget_freq: int = 5
    """one forget step before every ``forget_freq``-th retain step"""
    lr: float = 0.01
    """initial SGD learning rate"""
    schedule: str = "cosine"
    """learning-rate schedule (reference: cosine to 0 over the T iterations)"""
    batch_size: int = 128
    """mini-batch size of both steps"""
    forget_alpha: float = 25.0
    """initial forget-step multiplier α (cosine to 0 over T)"""
    adaptive_power: float = 0.5
    """λ of the adaptive weights (used when the weighting is uniform)"""
    threshold: float = 1.0
    """Fisher-ratio threshold γ of the mask"""
    max_norm: float = 7.0
    """gradient-norm clip of forget steps"""

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.n_iters, int) or self.n_iters < 1:
            raise ValueError(f"n_iters must be an integer >= 1, got {self.n_iters!r}")
        if not isinstance(self.forget_freq, int) or self.forget_freq < 1:
            raise ValueError(f"forget_freq must be an integer >= 1, got {self.forget_freq!r}")

    def default_weighting(self) -> Weighting:
        return SFRonAdaptive(self.adaptive_power)

    def parts(self, model, ctx):
        mask = fisher_ratio_mask(mean_sq_batch_grad(model, ctx.forget, self.batch_size, ctx.device),
                                 mean_sq_batch_grad(model, ctx.retain, self.batch_size, ctx.device),
                                 self.threshold)
        return Parts(forget=NegativeCE(), retain=RetainCE(), mask=mask)

    def loop(self) -> LoopConfig:
        # every epoch holds >= 1 iteration, so n_iters epochs always reach the iteration budget
        opts = {**self.optimisation(), "epochs": self.epochs if self.epochs is not None else self.n_iters}
        return LoopConfig(**opts, mixing=self.mixing, iterations=self.n_iters, forget_every=self.forget_freq,
                          forget_weight=self.forget_alpha, forget_weight_schedule="cosine", grad_clip=self.max_norm)

    def finish(self, model, ctx, plan, info):
        mask = plan.parts.mask
        selected = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
        return super().finish(model, ctx, plan, {**info, "mask_fraction": selected})
