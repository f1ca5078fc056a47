"""BS (Boundary Shrinking): relabel each forget sample with the class its FGSM neighbour falls in.

Source: Chen et al., "Boundary Unlearning", CVPR'23; reference ``boundary_unlearning.py::
boundary_shrink`` and ``adv_generator.py::FGSM`` of the authors' code (mirror
``TY-LEE-KR/Boundary-Unlearning-Code``; same logic in ``Unlearn-Saliency/Classification/unlearn/
boundary_sh.py``): x_adv = x + ε·sign(∇ₓCE(θ₀(x), y)) with ε = 0.1 in [0, 1] pixel space, clamped to
[0, 1] and rounded to 1/255; y_nb = argmax θ₀(x_adv) (kept even when it equals y); train on
CE(θ(x), y_nb). Defaults: SGD lr 1e-5, momentum 0.9, no weight decay, 10 epochs, batch 64.

Since θ₀ is frozen and FGSM has no random start, the neighbour labels are computed once before
training (the reference recomputes the same labels every batch; it also augments, we do not).
Tabular data: the documented equivalent is the same step on the feature scale without clamping or
1/255 rounding (both are pixel-only), so ``epsilon`` must then be chosen in feature units.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import as_float
from ..unlearn.engine import Parts
from ..unlearn.objectives import ForgetObjective
from .base import METHODS
from .boundary_expanding import BoundaryUnlearning


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, pixels: bool) -> torch.Tensor:
    """One FGSM step of size ε (L∞); for pixels clamp to [0, 1] and round to the 8-bit grid."""
    x = x.detach().requires_grad_(True)
    grad, = torch.autograd.grad(F.cross_entropy(model(x).float(), y), x)
    adv = x.detach() + epsilon * grad.sign()
    if pixels:
        adv = torch.round(adv.clamp(0.0, 1.0) * 255) / 255
    return adv


def neighbour_labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float,
                     pixels: bool, batch_size: int = 256) -> torch.Tensor:
    """argmax of ``model`` at each sample's FGSM neighbour (the "nearest but incorrect" class)."""
    out = []
    for idx in torch.arange(len(y)).split(batch_size):
        xb, yb = as_float(x[idx]), y[idx]
        adv = fgsm(model, xb, yb, epsilon, pixels)
        with torch.no_grad():
            out.append(model(adv).argmax(1))
    return torch.cat(out) if out else y.clone()


class NeighbourLabelCE(ForgetObjective):
    """CE to the neighbour label of each forget sample (computed once on the frozen original)."""

    def __init__(self, epsilon: float):
        self.epsilon = epsilon

    def setup(self, ctx):
        f = ctx.forget.to(ctx.device)
        self.labels = neighbour_labels(ctx.original, f.x, f.y, self.epsilon, pixels=ctx.kind == "image")

    def __call__(self, logits, batch, ctx):
        return F.cross_entropy(logits.float(), self.labels[batch.pos], reduction="none")


@METHODS.register("bs")
@dataclass
class BoundaryShrinking(BoundaryUnlearning):
    description: ClassVar[str] = "train the forget set to the labels of its FGSM neighbours"
    paper_name: ClassVar[str] = "BS"
    tune_space: ClassVar[dict] = {
        "lr": {"low": 1e-05, "high": 0.01, "log": True},
        "epochs": {"low": 1, "high": 10},
        "epsilon": {"low": 0.01, "high": 0.3, "log": True},
    }

    epsilon: float = 0.1
    """FGSM step ε (L∞; [0, 1] pixel units for images, feature units for tabular data)"""

    def parts(self, model, ctx):
        return Parts(forget=NeighbourLabelCE(self.epsilon))
