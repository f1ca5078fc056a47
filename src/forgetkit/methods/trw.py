"""TRW: Tilted ReWeighting for class unlearning, and TRW-2R (only k random layers move).

Source: "On the Necessity of Output Distribution Reweighting for Effective Class Unlearning"
(TRW/TREW, §3.4 Eq. 1–5, App. A.3). No reference code is public; the constants the paper leaves
out are our documented choices.

The forget samples are fine-tuned toward the ORIGINAL model's distribution over the remaining
classes R, tilted toward classes similar to the forgotten one, so the unlearned model sends a
forgotten image where a retrained model would (automobile → truck) instead of anywhere:

    p̃_β(k|x) = softmax_{k∈R}( z_k(x; θ_o) + β·s_k ),   s = softmax_R(cos(PCA(w_f), PCA(w_k)) / T)

β = 0 is plain renormalisation (RWFT). Targets are computed once from θ_o and stay fixed. Loss:
retain CE + λ_f · soft CE to p̃ on forget samples (per sample, so weightings and masks compose).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import as_float
from ..models import last_linear
from ..unlearn.context import UnlearnContext
from ..unlearn.engine import LoopConfig, Parts
from ..unlearn.masks import random_layers_mask
from ..unlearn.objectives import RetainCE, SoftTargetCE
from .base import METHODS, EngineMethod

COMBINE = {"sum_of_means": "paired", "pooled": "mixed"}


def class_similarity(weight: torch.Tensor, forget_classes, *, rank: int | None = None,
                     temperature: float = 0.1) -> torch.Tensor:
    """Scores s^(f)_k of Eq. 5 as a (K, K) matrix: row f holds f's scores over the remaining classes.

    ``weight`` is the (K, d) last-layer weight (one row per class, bias unused). Class vectors are
    mean-centred and projected on their top ``rank`` principal directions (default min(K−1, d),
    the full centred rank); cosine to f, then a softmax with temperature T over R = Y \\ F.
    Entries for forgotten classes are 0; rows of retained classes are 0 (never used).
    """
    w = weight.detach().double()
    k, d = w.shape
    forget = sorted({int(c) for c in forget_classes})
    if not forget or len(forget) >= k:
        raise ValueError(f"need between 1 and {k - 1} forget classes, got {forget}")
    rank = min(k - 1, d) if rank is None else rank
    if not 1 <= rank <= min(k, d):
        raise ValueError(f"PCA rank must be in [1, {min(k, d)}], got {rank}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    centred = w - w.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    z = F.normalize(centred @ vh[:rank].T, dim=1, eps=1e-12)
    retained = torch.ones(k, dtype=torch.bool)
    retained[forget] = False
    scores = torch.zeros(k, k, dtype=torch.float64)
    for f in forget:
        cos = z @ z[f]
        scores[f, retained] = torch.softmax(cos[retained] / temperature, 0)
    return scores.float()


def output_similarity(logits: torch.Tensor, labels: torch.Tensor, forget_classes, num_classes: int) -> torch.Tensor:
    """Data-driven scores (ours): row f = the original's mean distribution over R on f's samples.

    Where the original model already puts a forgotten class's probability mass among the remaining
    classes is a direct estimate of where a retrained model sends it; the weight-vector cosine of
    :func:`class_similarity` is a proxy for it that can name a different neighbour (Fashion-MNIST:
    Sneaker → Ankle boot by weights, Sandal by the retrained model). Same shape as
    :func:`class_similarity`: (K, K), rows of forgotten classes sum to 1 over R, other entries 0.
    """
    forget = sorted({int(c) for c in forget_classes})
    z = logits.detach().double().cpu().clone()
    z[:, forget] = float("-inf")
    probs = torch.softmax(z, 1)
    scores = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    for f in forget:
        mine = labels.cpu() == f
        if not mine.any():
            raise ValueError(f"forget class {f} has no forget samples to estimate its similarity from")
        scores[f] = probs[mine].mean(0)
    return scores.float()


def tilted_targets(logits: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor, forget_classes,
                   *, beta: float = 10.0) -> torch.Tensor:
    """Eq. 2 per sample: softmax over R of (original logits + β · s^(label)); forgotten classes get 0.

    Each forget sample is tilted by the score row of its own (forgotten) label (multi-class requests).
    """
    forget = torch.as_tensor(sorted({int(c) for c in forget_classes}), dtype=torch.long)
    if not torch.isin(labels.cpu(), forget).all():
        raise ValueError("every forget sample must belong to a forgotten class (TRW targets whole classes)")
    z = logits.detach().float().cpu() + beta * scores[labels.cpu()]
    z[:, forget] = float("-inf")
    return torch.softmax(z, 1)


@torch.no_grad()
def original_logits(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` (eval mode) on CPU, batched."""
    model.eval()
    return torch.cat([model(as_float(c.to(device))).float().cpu() for c in x.split(batch_size)])


SIMILARITIES = ("weights", "outputs")


def trw_targets(ctx: UnlearnContext, *, beta: float, temperature: float, pca_rank: int | None,
                similarity: str = "weights") -> torch.Tensor:
    """The fixed N_f × K TRW targets of one forget request, from the original model of ``ctx``."""
    logits = original_logits(ctx.original, ctx.forget.x, ctx.device)
    if similarity == "outputs":
        scores = output_similarity(logits, ctx.forget.y, ctx.forget_classes, logits.shape[1])
    else:
        scores = class_similarity(last_linear(ctx.original).weight, ctx.forget_classes, rank=pca_rank,
                                  temperature=temperature)
    return tilted_targets(logits, ctx.forget.y, scores, ctx.forget_classes, beta=beta)


@METHODS.register("trw")
@dataclass
class TRW(EngineMethod):
    description: ClassVar[str] = "soft CE to the original model's tilted distribution over the remaining classes"
    paper_name: ClassVar[str] = "TRW"
    tune_space: ClassVar[dict] = {
        "lr": {"low": 0.0001, "high": 0.1, "log": True},
        "epochs": {"low": 1, "high": 10},
        "beta": {"low": 1.0, "high": 30.0, "log": True},
    }
    needs: ClassVar[frozenset] = frozenset({"forget", "retain"})
    supports_weighting: ClassVar[bool] = True
    class_only: ClassVar[bool] = True

    epochs: int = 10
    """unlearning epochs (paper §4.3)"""
    lr: float = 0.001
    """SGD learning rate (paper §4.3)"""
    weight_decay: float = 0.0
    """the paper gives none for unlearning"""
    beta: float = 10.0
    """tilt β (paper §B.7); 0 = plain renormalisation (RWFT)"""
    temperature: float = 0.1
    """softmax temperature T of the class scores (paper's value stripped; "small"; our choice)"""
    pca_rank: int | None = None
    """PCA rank r of the class vectors (paper's value stripped); None = min(K−1, d)"""
    similarity: str = "weights"
    """class scores s: "weights" (paper: PCA-projected last-layer cosine, softmax at T) or "outputs"
    (ours: the original's mean distribution over the remaining classes on the forgotten class)"""
    forget_weight: float = 1.0
    """λ_f, multiplier of the forget term"""
    combine: str = "sum_of_means"
    """sum_of_means: mean retain CE + λ_f·mean forget soft CE (our reading of Eq. 4, engine mixing
    ``paired``); pooled: one shuffled pass over D_r ∪ D_f averaged per batch (engine ``mixed``)"""

    def __post_init__(self):
        super().__post_init__()
        if self.combine not in COMBINE:
            raise ValueError(f"combine must be one of {sorted(COMBINE)}, got {self.combine!r}")
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {self.similarity!r}")

    def _targets(self, ctx: UnlearnContext) -> torch.Tensor:
        return trw_targets(ctx, beta=self.beta, temperature=self.temperature, pca_rank=self.pca_rank,
                           similarity=self.similarity)

    def parts(self, model, ctx):
        return Parts(forget=SoftTargetCE(self._targets), retain=RetainCE())

    def loop(self) -> LoopConfig:
        cfg = super().loop()
        cfg.mixing = COMBINE[self.combine]
        cfg.forget_weight = self.forget_weight
        return cfg


def draw_generator(ctx: UnlearnContext, draw: int) -> torch.Generator:
    """Layer-draw stream of one (seed, forget classes, draw): each request gets its own draw."""
    salt = sum((c + 1) * 7919 ** i for i, c in enumerate(sorted(ctx.forget_classes)))
    return ctx.generator(50_000 + 1_000 * draw + salt % 997)


@METHODS.register("trw_2r")
@dataclass
class TRW2R(TRW):
    """TRW fine-tuning only ``n_random_layers`` randomly drawn parametrised layers (paper §5).

    One run uses one draw, fixed by (seed, forget classes, ``draw``). "Averaged over draws" is
    realised by the benchmark, not inside a run: list the method once per ``draw`` under one label
    (the report averages rows of a label), and/or average over seeds and class requests, which
    draw different layers. Averaging parameters of several draws would not be a TRW-2R model.
    """

    description: ClassVar[str] = "TRW loss on k randomly chosen layers only (TRW-2R)"
    paper_name: ClassVar[str] = "TRW-2R"

    n_random_layers: int = 2
    """k, layers that may change (our reading of "2R")"""
    draw: int = 0
    """which random draw of layers (another value gives an independent draw)"""

    def parts(self, model, ctx):
        parts = super().parts(model, ctx)
        parts.mask = random_layers_mask(model, self.n_random_layers, draw_generator(ctx, self.draw))
        return parts
