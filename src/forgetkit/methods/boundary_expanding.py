"""BE (Boundary Expanding): push forget samples into an extra "shadow" class, then prune it.

Source: Chen et al., "Boundary Unlearning", CVPR'23; reference ``boundary_unlearning.py::
boundary_expanding`` of the authors' code (mirror ``TY-LEE-KR/Boundary-Unlearning-Code``): widen the
last linear layer to C+1 outputs (old rows copied), train every parameter with CE to the shadow
label C on D_f, then copy rows 0..C−1 back into a C-way head. Defaults from that file and its
``main.py``: SGD lr 1e-5, momentum 0.9, no weight decay, 10 epochs, batch 64.

Fidelity switch ``prune_shadow``: True (default, paper and original code) returns a model of the
input's architecture; False keeps the C+1-way head as the SalUn re-implementation
(``Unlearn-Saliency/Classification/unlearn/boundary_ex.py``) evaluates it. The shadow row gets
PyTorch's default ``nn.Linear`` initialisation (as in the SalUn version), drawn from the run seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..models import last_linear
from ..unlearn.engine import Parts
from ..unlearn.objectives import ForgetObjective
from .base import METHODS, EngineMethod, EnginePlan


class ShadowClassCE(ForgetObjective):
    """CE to the last output (the shadow class) per sample."""

    def __call__(self, logits, batch, ctx):
        target = torch.full_like(batch.y, logits.shape[1] - 1)
        return F.cross_entropy(logits.float(), target, reduction="none")


def last_linear_name(model: nn.Module) -> str:
    """Module name of the model's final ``nn.Linear`` (:func:`forgetkit.models.last_linear`)."""
    head = last_linear(model)
    return next(n for n, m in model.named_modules() if m is head)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def expand_head(head: nn.Linear, generator: torch.Generator) -> nn.Linear:
    """A (C+1)-way copy of ``head``; the new row drawn U(±1/√fan_in) like nn.Linear's default init."""
    wide = nn.Linear(head.in_features, head.out_features + 1, bias=head.bias is not None)
    wide = wide.to(device=head.weight.device, dtype=head.weight.dtype)
    bound = 1.0 / math.sqrt(head.in_features)
    with torch.no_grad():
        new = (torch.rand(head.in_features + 1, generator=generator) * 2 - 1) * bound
        new = new.to(device=head.weight.device, dtype=head.weight.dtype)
        wide.weight[:-1] = head.weight
        wide.weight[-1] = new[:-1]
        if head.bias is not None:
            wide.bias[:-1] = head.bias
            wide.bias[-1] = new[-1]
    return wide


def prune_head(wide: nn.Linear, head: nn.Linear) -> nn.Linear:
    """Copy the first C rows of the widened head back into the C-way ``head`` (in place)."""
    with torch.no_grad():
        head.weight.copy_(wide.weight[:-1])
        if head.bias is not None:
            head.bias.copy_(wide.bias[:-1])
    return head


@dataclass
class BoundaryUnlearning(EngineMethod):
    """Shared optimiser defaults of BE and BS: both come from the same Boundary Unlearning code."""

    supports_weighting: ClassVar[bool] = True
    mixing: ClassVar[str] = "forget_only"

    epochs: int = 10
    """passes over D_f (``finetune_epochs`` / ``poison_epoch``, hard-coded in the reference)"""
    lr: float = 1e-5
    """SGD learning rate (reference optimiser)"""
    batch_size: int = 64
    """mini-batch size (reference ``main.py``)"""
    weight_decay: float = 0.0
    """SGD weight decay (0 in the reference; the SalUn version uses 5e-4)"""


@METHODS.register("be")
@dataclass
class BoundaryExpanding(BoundaryUnlearning):
    description: ClassVar[str] = "train the forget set into an extra shadow class, then prune that class"
    paper_name: ClassVar[str] = "BE"
    tune_space: ClassVar[dict] = {"lr": {"low": 1e-05, "high": 0.01, "log": True}, "epochs": {"low": 1, "high": 10}}

    prune_shadow: bool = True
    """drop the shadow output afterwards (paper); False keeps C+1 outputs (SalUn code)"""

    def parts(self, model, ctx):
        return Parts(forget=ShadowClassCE())

    def prepare(self, model, ctx, weighting):
        name = last_linear_name(model)
        head = model.get_submodule(name)
        wide = expand_head(head, ctx.generator(31))
        _set_module(model, name, wide)
        plan = super().prepare(model, ctx, weighting)
        plan.extra.update(name=name, head=head, wide=wide)
        return plan

    def finish(self, model, ctx, plan: EnginePlan, info):
        if self.prune_shadow:
            _set_module(model, plan.extra["name"], prune_head(plan.extra["wide"], plan.extra["head"]))
        return super().finish(model, ctx, plan, info)
