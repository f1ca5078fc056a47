"""SalUn: random-label unlearning restricted to the weights most salient for the forget loss.

Source: Fan et al., "SalUn: Empowering machine unlearning via gradient-based weight saliency",
ICLR'24; reference ``OPTML-Group/Unlearn-Saliency``: mask from ``Classification/generate_mask.py``
(``save_gradient_ratio``: eval mode, G = Σ_batches ∇(−CE), saliency |G|, global top fraction over
all parameters), update from ``Classification/unlearn/RL.py`` with the mask. Defaults: top 50%
(``with_0.5.pt``), lr 0.013, 10 epochs (README).

Fidelity switch ``freeze_mode``: ``"exact"`` (default) keeps unselected weights bit-for-bit fixed,
weight decay and momentum included (the 2026-02 fix, commit a6e89fd, done by the engine);
``"grad_only"`` only masks gradients, so weight decay and momentum still move unselected weights —
the behaviour that produced the published SalUn numbers. The RL switches (``label_sampling``,
``redraw``, ``sequential``) are inherited from :mod:`forgetkit.methods.rl`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Split, as_float
from ..unlearn.engine import run_engine
from ..unlearn.masks import Mask, top_fraction_mask
from .base import METHODS, check_requirements
from .rl import RL

FREEZE_MODES = ("exact", "grad_only")


def forget_gradient_saliency(model: nn.Module, forget: Split, batch_size: int,
                             device: torch.device) -> dict[str, torch.Tensor]:
    """|Σ_batches ∇_θ(−mean CE)| on the forget set, in eval mode (``save_gradient_ratio``)."""
    was_training = model.training
    model.eval()
    params = dict(model.named_parameters())
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    for idx in torch.arange(len(forget)).split(batch_size):
        x = as_float(forget.x[idx].to(device))
        loss = -F.cross_entropy(model(x).float(), forget.y[idx].to(device))
        for n, g in zip(params, torch.autograd.grad(loss, list(params.values()), allow_unused=True)):
            if g is not None:
                grads[n] += g
    model.train(was_training)
    return {n: g.abs() for n, g in grads.items()}


def saliency_mask(model: nn.Module, forget: Split, fraction: float, batch_size: int,
                  device: torch.device) -> Mask:
    """SalUn's hard-threshold mask: the top ``fraction`` of coordinates by forget-gradient saliency."""
    return top_fraction_mask(forget_gradient_saliency(model, forget, batch_size, device), fraction)


@METHODS.register("salun")
@dataclass
class SalUn(RL):
    description: ClassVar[str] = "random labels (RL) on the top forget-gradient-saliency weights only"

    lr: float = 0.013
    """SGD learning rate (Unlearn-Saliency README, CIFAR-10 10% random)"""
    mask_ratio: float = 0.5
    """fraction of weights that may change, ranked by |∇ forget loss| (``with_0.5.pt``)"""
    freeze_mode: str = "exact"
    """exact: unselected weights fixed bit for bit (2026 fix); grad_only: only their gradients are zeroed (published)"""

    def __post_init__(self):
        if self.freeze_mode not in FREEZE_MODES:
            raise ValueError(f"freeze_mode must be one of {FREEZE_MODES}, got {self.freeze_mode!r}")

    def unlearn(self, model, ctx, weighting=None, progress=None):
        check_requirements(self, ctx, weighting)
        model = copy.deepcopy(model).to(ctx.device)
        mask = saliency_mask(model, ctx.forget, self.mask_ratio, self.batch_size, ctx.device)
        parts = self.parts(model, ctx)
        if weighting is not None:
            parts.weighting = weighting
        hooks = []
        if self.freeze_mode == "exact":
            parts.mask = mask
        else:  # zero gradients only; weight decay and momentum still act on every weight
            for n, p in model.named_parameters():
                m = mask[n].to(p.dtype)
                hooks.append(p.register_hook(lambda g, m=m: g * m))
        try:
            log = run_engine(model, ctx, parts, self.loop(), progress)
        finally:
            for h in hooks:
                h.remove()
        selected = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
        return model, {"history": log.epochs, "steps": log.steps, "mask_fraction": selected}

