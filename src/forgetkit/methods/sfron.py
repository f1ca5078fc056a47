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

Each forget or retain stretch is its own engine call on the same model, sharing one SGD optimiser
(so momentum carries across the alternation, as in the reference). ``round_forget_steps`` sets
how many forget steps (and ``forget_freq`` times as many retain steps) one stretch holds: 1
(default) keeps the reference's step order exactly. The learning rate and α_t are held at their
cosine value for the stretch's first iteration. Deviation: forget steps keep unselected weights
exactly fixed (the engine's mask, which also zeroes their momentum); the reference only masks
their gradient.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Split, as_float
from ..unlearn.engine import LoopConfig, Parts, run_engine
from ..unlearn.masks import Mask
from ..unlearn.objectives import Batch, NegativeCE, RetainCE
from ..unlearn.weightings import WEIGHTINGS, Uniform, Weighting
from .base import METHODS, Method, check_requirements


def adaptive_weights(losses: torch.Tensor, power: float) -> torch.Tensor:
    """w_i = B·c_i/Σc_j, c_i = 1/(ℓ_i^λ + 1e-15): low-loss (still remembered) samples weigh more."""
    c = 1.0 / (losses.detach().clamp_min(0) ** power + 1e-15)
    return len(c) * c / c.sum()


@WEIGHTINGS.register("sfron_adaptive")
class SFRonAdaptive(Weighting):
    """SFR-on's adaptive forget weights from each sample's current CE loss."""

    description = "SFR-on: w_i ∝ 1/CE_i^λ, normalised to mean 1 over the batch"

    def __init__(self, power: float = 0.5):
        self.power = power

    def __call__(self, logits, batch, ctx):
        return adaptive_weights(F.cross_entropy(logits.float(), batch.y, reduction="none"), self.power)


def mean_sq_batch_grad(model: nn.Module, split: Split, batch_size: int, device) -> dict[str, torch.Tensor]:
    """(1/#batches)·Σ_batches (∇ batch-mean CE)², in eval mode (the reference's "Fisher")."""
    was_training = model.training
    model.eval()
    params = dict(model.named_parameters())
    acc = {n: torch.zeros_like(p) for n, p in params.items()}
    batches = torch.arange(len(split)).split(batch_size)
    for idx in batches:
        loss = F.cross_entropy(model(as_float(split.x[idx].to(device))).float(), split.y[idx].to(device))
        for n, g in zip(params, torch.autograd.grad(loss, list(params.values()), allow_unused=True)):
            if g is not None:
                acc[n] += g * g
    model.train(was_training)
    return {n: a / max(1, len(batches)) for n, a in acc.items()}


def fisher_ratio_mask(fisher_forget: dict, fisher_retain: dict, threshold: float) -> Mask:
    """Weights more important to D_f than to D_r: (F_f + 1e-15)/(F_r + 1e-15) ≥ threshold."""
    return {n: (f + 1e-15) / (fisher_retain[n] + 1e-15) >= threshold for n, f in fisher_forget.items()}


def cosine_value(start: float, t: int, total: int) -> float:
    """start·(1 + cos(πt/T))/2: the reference's cosine schedule of both lr and α."""
    return start * (1 + math.cos(math.pi * min(t, total) / total)) / 2


class _Stream:
    """Endless reshuffled passes over n positions (the reference cycles its loaders)."""

    def __init__(self, n: int, gen: torch.Generator):
        self.n, self.gen, self.buf = n, gen, torch.empty(0, dtype=torch.long)

    def take(self, k: int) -> torch.Tensor:
        while len(self.buf) < k:
            self.buf = torch.cat([self.buf, torch.randperm(self.n, generator=self.gen)])
        out, self.buf = self.buf[:k], self.buf[k:]
        return out


class _Positions(Weighting):
    """Runs a weighting set up on the whole forget split over a subset: maps positions back."""

    def __init__(self, inner: Weighting, idx: torch.Tensor, ctx, step0: int):
        self.inner, self.idx, self.ctx, self.step0 = inner, idx, ctx, step0

    def before_step(self, model, ctx, step):
        self.inner.before_step(model, self.ctx, self.step0 + step)

    def __call__(self, logits, batch, ctx):
        pos = self.idx.to(batch.pos.device)[batch.pos]
        return self.inner(logits, Batch(batch.x, batch.y, pos), self.ctx)

    def end_epoch(self, epoch):
        return self.inner.end_epoch(epoch)


def _sub_context(ctx, **splits):
    sub = copy.copy(ctx)  # shallow: shares the frozen original (no __post_init__ deep copy)
    for k, v in splits.items():
        setattr(sub, k, v)
    return sub


@METHODS.register("sfron")
@dataclass
class SFRon(Method):
    description: ClassVar[str] = "Fisher-ratio mask, adaptive forget weights, alternating forget/retain steps"
    needs: ClassVar[frozenset] = frozenset({"forget", "retain"})
    supports_weighting: ClassVar[bool] = True

    n_iters: int = 1500
    """retain steps T (``n_iters``)"""
    forget_freq: int = 5
    """one forget step before every ``forget_freq``-th retain step"""
    lr: float = 0.01
    """initial SGD learning rate (cosine to 0 over T)"""
    batch_size: int = 128
    """mini-batch size of both steps"""
    momentum: float = 0.9
    """SGD momentum"""
    weight_decay: float = 5e-4
    """SGD weight decay"""
    forget_alpha: float = 25.0
    """initial forget-step multiplier α (cosine to 0 over T)"""
    adaptive_power: float = 0.5
    """λ of the adaptive weights (used when the weighting is uniform)"""
    threshold: float = 1.0
    """Fisher-ratio threshold γ of the mask"""
    max_norm: float = 7.0
    """gradient-norm clip of forget steps"""
    round_forget_steps: int = 1
    """forget steps per engine call (1 = the reference's step order)"""

    def __post_init__(self):
        if self.n_iters < 1 or self.forget_freq < 1 or self.round_forget_steps < 1:
            raise ValueError("n_iters, forget_freq and round_forget_steps must be >= 1")

    def _loop(self, mixing: str, lr: float, **kw) -> LoopConfig:
        return LoopConfig(epochs=1, lr=lr, batch_size=self.batch_size, momentum=self.momentum,
                          weight_decay=self.weight_decay, mixing=mixing, **kw)

    def unlearn(self, model, ctx, weighting=None, progress=None):
        check_requirements(self, ctx, weighting)
        model = copy.deepcopy(model).to(ctx.device)
        if weighting is None or type(weighting) is Uniform:
            weighting = SFRonAdaptive(self.adaptive_power)
        mask = fisher_ratio_mask(mean_sq_batch_grad(model, ctx.forget, self.batch_size, ctx.device),
                                 mean_sq_batch_grad(model, ctx.retain, self.batch_size, ctx.device),
                                 self.threshold)
        weighting.setup(ctx, model)
        f_stream, r_stream = _Stream(len(ctx.forget), ctx.generator(41)), _Stream(len(ctx.retain), ctx.generator(42))
        bf, br = min(self.batch_size, len(ctx.forget)), min(self.batch_size, len(ctx.retain))
        T, span = self.n_iters, self.forget_freq * self.round_forget_steps
        history, steps, opt = [], 0, None
        for t0 in range(0, T, span):
            n_retain = min(span, T - t0)
            n_forget = math.ceil(n_retain / self.forget_freq)
            lr = cosine_value(self.lr, t0, T)
            f_idx = f_stream.take(n_forget * bf)
            f_ctx = _sub_context(ctx, forget=ctx.forget.subset(f_idx))
            f_parts = Parts(forget=NegativeCE(), weighting=_Positions(weighting, f_idx, ctx, steps), mask=mask)
            f_log = run_engine(model, f_ctx, f_parts, self._loop(
                "forget_only", lr, forget_weight=cosine_value(self.forget_alpha, t0, T), grad_clip=self.max_norm),
                optimizer=opt)
            r_ctx = _sub_context(ctx, retain=ctx.retain.subset(r_stream.take(n_retain * br)))
            r_log = run_engine(model, r_ctx, Parts(retain=RetainCE()), self._loop("retain_only", lr),
                               optimizer=f_log.optimizer)
            opt = r_log.optimizer
            steps += f_log.steps + r_log.steps
            weight_stats = {k: v for k, v in f_log.epochs[0].items() if k not in ("epoch", "loss")}
            history.append({"iter": t0, "forget_loss": f_log.epochs[0]["loss"],
                            "retain_loss": r_log.epochs[0]["loss"], **weight_stats})
            if progress is not None:
                progress(t0 + n_retain, T)
        selected = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
        return model, {"history": history, "steps": steps, "mask_fraction": selected}
