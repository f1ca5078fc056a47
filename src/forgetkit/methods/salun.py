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

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Split
from ..unlearn.grads import accumulate_grads
from ..unlearn.masks import Mask, top_fraction_mask
from .base import METHODS, EnginePlan
from .rl import RL

FREEZE_MODES = ("exact", "grad_only")


def forget_gradient_saliency(model: nn.Module, forget: Split, batch_size: int,
                             device: torch.device) -> dict[str, torch.Tensor]:
    """|Σ_batches ∇_θ(−mean CE)| on the forget set, in eval mode (``save_gradient_ratio``)."""
    sums, _ = accumulate_grads(model, forget, batch_size, lambda out, y: -F.cross_entropy(out.float(), y),
                               train=False, device=device)
    return {n: g.abs() for n, g in sums.items()}


def saliency_mask(model: nn.Module, forget: Split, fraction: float, batch_size: int,
                  device: torch.device) -> Mask:
    """SalUn's hard-threshold mask: the top ``fraction`` of coordinates by forget-gradient saliency."""
    return top_fraction_mask(forget_gradient_saliency(model, forget, batch_size, device), fraction)


@METHODS.register("salun")
@dataclass
class SalUn(RL):
    description: ClassVar[str] = "random labels (RL) on the top forget-gradient-saliency weights only"
    paper_name: ClassVar[str] = "SalUn"
    tune_space: ClassVar[dict] = {
        "lr": {"low": 0.001, "high": 0.1, "log": True},
        "epochs": {"low": 1, "high": 10},
        "mask_ratio": {"low": 0.1, "high": 0.9},
    }

    lr: float = 0.013
    """SGD learning rate (Unlearn-Saliency README, CIFAR-10 10% random)"""
    mask_ratio: float = 0.5
    """fraction of weights that may change, ranked by |∇ forget loss| (``with_0.5.pt``)"""
    freeze_mode: str = "exact"
    """exact: unselected weights fixed bit for bit (2026 fix); grad_only: only their gradients are zeroed (published)"""

    def __post_init__(self):
        super().__post_init__()
        if self.freeze_mode not in FREEZE_MODES:
            raise ValueError(f"freeze_mode must be one of {FREEZE_MODES}, got {self.freeze_mode!r}")

    def prepare(self, model, ctx, weighting):
        mask = saliency_mask(model, ctx.forget, self.mask_ratio, self.batch_size, ctx.device)
        plan = super().prepare(model, ctx, weighting)
        if self.freeze_mode == "exact":
            plan.parts.mask = mask
        else:  # zero gradients only; weight decay and momentum still act on every weight
            plan.extra["hooks"] = [p.register_hook(lambda g, m=mask[n].to(p.dtype): g * m)
                                   for n, p in model.named_parameters()]
        plan.extra["mask_fraction"] = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
        return plan

    def finish(self, model, ctx, plan: EnginePlan, info):
        for h in plan.extra.get("hooks", []):
            h.remove()
        return super().finish(model, ctx, plan, {**info, "mask_fraction": plan.extra["mask_fraction"]})
