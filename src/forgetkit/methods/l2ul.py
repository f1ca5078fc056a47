"""L2UL: forget-set-only unlearning with adversarial examples and weight importance.

Source: Cha et al., "Learning to Unlearn: Instance-wise Unlearning for Pre-trained Classifiers",
AAAI'24; reference ``csm9493/L2UL`` ``main_unlearn_cifar10_mixed_label_resnet18.py`` ("Baseline 3"
block), ``utils.py::estimate_parameter_importance`` and ``adv_attack`` of the first commit
(b8b335b); defaults from ``run_unlearn_cifar_imagenet.sh`` (CIFAR-10: 20 adversarial images per
forget sample, PGD ε = 4.0, lr 1e-3, λ = 1.0).

Only D_f and the original model are used:
1. adversarial set: ``num_adv_images`` rounds of targeted L2-PGD (own implementation, ε-ball,
   random start, step ``pgd_step`` on the normalised gradient) from each forget sample towards a
   uniformly drawn label ≠ y, labelled with that target (the reference turns collisions into
   label 5, a quirk we do not copy: ``target_sampling="exclude_true"``);
2. importance Ω: MAS on D_f (mean |∂ mean‖f(x)‖₂ / ∂θ|), per tensor min-max normalised and flipped
   (Ω ← 1 − (Ω − min)/(max − min)) so weights that matter for D_f are free and the rest anchored;
3. engine preset: −CE on D_f and CE on the adversarial set in one mixed loader (the merged-batch
   mean weighs them n_f/(n_f+n_a) and n_a/(n_f+n_a) as in the reference), plus (λ/2)·Σ Ω(θ−θ_o)²,
   SGD momentum 0.9, weight decay 1e-4, train mode; stop as soon as forget accuracy is 0
   (``stop_at_zero``, a stop rule checked after every step as in the reference).

Tabular data: the same attack without clamping to [0, 1] (features are unbounded); ε then lives
in feature units, so set ``pgd_eps`` to the scale of the standardised features.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Split, as_float
from ..unlearn.context import UnlearnContext
from ..unlearn.engine import Parts, StopRule
from ..unlearn.grads import accumulate_grads
from ..unlearn.objectives import NegativeCE, RetainCE
from ..unlearn.regularisers import WeightedL2ToOriginal
from .base import METHODS, EngineMethod, split_accuracy


def l2_pgd_targeted(model: nn.Module, x: torch.Tensor, target: torch.Tensor, eps: float, step: float,
                    iters: int, clamp: bool, gen: torch.Generator) -> torch.Tensor:
    """Targeted L2-PGD: minimise CE(f(x+δ), target) over ‖δ‖₂ ≤ eps (random start inside the ball)."""
    def project(d):
        norms = d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (d.dim() - 1))
        return d * (eps / norms).clamp(max=1.0)

    noise = torch.randn(x.shape, generator=gen).to(x.device)
    radius = torch.rand(len(x), generator=gen).to(x.device).view(-1, *[1] * (x.dim() - 1))
    delta = noise / noise.flatten(1).norm(dim=1).clamp_min(1e-12).view_as(radius) * radius * eps
    if clamp:
        delta = (x + delta).clamp(0, 1) - x
    for _ in range(iters):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta).float(), target)
        (g,) = torch.autograd.grad(loss, delta)
        g = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
        delta = project(delta.detach() - step * g)
        if clamp:
            delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def adversarial_set(model: nn.Module, forget: Split, num_classes: int, rounds: int, eps: float, step: float,
                    iters: int, clamp: bool, batch_size: int, gen: torch.Generator) -> Split:
    """``rounds`` targeted adversarial copies of every forget sample, labelled with their target."""
    model.eval()
    xs, ys = [], []
    for _ in range(rounds):
        for start in range(0, len(forget), batch_size):
            x = as_float(forget.x[start:start + batch_size])
            y = forget.y[start:start + batch_size]
            target = (y.cpu() + torch.randint(1, num_classes, y.shape, generator=gen)) % num_classes
            target = target.to(y.device)
            xs.append(l2_pgd_targeted(model, x, target, eps, step, iters, clamp, gen))
            ys.append(target)
    return Split(torch.cat(xs), torch.cat(ys))


def mas_importance(model: nn.Module, forget: Split, batch_size: int) -> dict[str, torch.Tensor]:
    """Ω = 1 − minmax(mean |∇ mean_i ‖f(x_i)‖₂|) per tensor, on D_f in train mode (on a copy)."""
    model = copy.deepcopy(model)
    for p in model.parameters():
        p.requires_grad_(True)
    total, batches = accumulate_grads(model, forget, batch_size, lambda out, _y: out.float().norm(dim=1).mean(),
                                      train=True, combine=torch.abs)
    omega = {}
    for n, t in total.items():
        t = t / max(1, batches)
        span = t.max() - t.min()
        omega[n] = 1 - (t - t.min()) / span if span > 0 else torch.ones_like(t)
    return omega


class ForgetAccuracyZero(StopRule):
    """Stop once no forget sample is classified correctly (L2UL's criterion, checked every step)."""

    def __init__(self, forget: Split, batch_size: int):
        self.forget, self.batch_size = forget, batch_size

    def should_stop(self, model, ctx, step):
        return split_accuracy(model, self.forget.x, self.forget.y, self.batch_size) == 0.0


@METHODS.register("l2ul")
@dataclass
class L2UL(EngineMethod):
    description: ClassVar[str] = "adversarial examples + weight-importance anchor, forget set only"
    paper_name: ClassVar[str] = "L2UL"
    tune_space: ClassVar[dict] = {
        "lr": {"low": 0.0001, "high": 0.01, "log": True},
        "epochs": {"low": 1, "high": 20},
        "reg_lamb": {"low": 0.1, "high": 10.0, "log": True},
    }
    needs: ClassVar[frozenset] = frozenset({"forget"})
    streams: ClassVar[bool] = False  # its preparation holds the forget inputs as one float tensor on the device
    supports_weighting: ClassVar[bool] = True
    smoke_caps: ClassVar[dict[str, int | float]] = {"epochs": 1, "num_adv_images": 1, "pgd_iters": 10}
    """the attack is 2,000 passes per forget sample at the defaults: without these caps it dominates a smoke run"""

    num_adv_images: int = 20
    """adversarial copies per forget sample (CIFAR-10 script; 200 for CIFAR-100/ImageNet)"""
    pgd_eps: float = 4.0
    """L2 radius of the attack, in [0, 1]-pixel units for images (script; README: tune in [1, 5])"""
    pgd_step: float = 0.1
    """L2 step per PGD iteration (reference eps_iter)"""
    pgd_iters: int = 100
    """PGD iterations (reference nb_iter)"""
    reg_lamb: float = 1.0
    """λ of the importance-weighted L2 anchor (λ/2)·ΣΩ(θ−θ_o)²"""
    epochs: int = 20
    """maximum passes over D_f ∪ adversarial set (the reference stops at zero forget accuracy)"""
    lr: float = 1e-3
    """SGD learning rate (CIFAR-10 script)"""
    batch_size: int = 256
    """mini-batch size of the mixed loader (reference: 256 adversarial + 32 forget)"""
    weight_decay: float = 1e-4
    """SGD weight decay (reference)"""
    stop_at_zero: bool = True
    """stop as soon as forget accuracy is 0 (reference); False runs all epochs"""

    def __post_init__(self):
        super().__post_init__()
        if self.num_adv_images < 1 or self.pgd_iters < 0 or self.pgd_eps < 0:
            raise ValueError("num_adv_images must be >= 1, pgd_iters >= 0 and pgd_eps >= 0")

    def prepare(self, model, ctx, weighting):
        dev = ctx.device
        forget = Split(as_float(ctx.forget.x.to(dev)), ctx.forget.y.to(dev))
        adv = adversarial_set(ctx.original, forget, ctx.num_classes, self.num_adv_images, self.pgd_eps,
                              self.pgd_step, self.pgd_iters, ctx.kind == "image", self.batch_size,
                              ctx.generator(41))
        inner = UnlearnContext(original=ctx.original, forget=forget, retain=adv, num_classes=ctx.num_classes,
                               heldout=ctx.heldout, device=dev, seed=ctx.seed, kind=ctx.kind,
                               forget_classes=ctx.forget_classes)
        plan = super().prepare(model, inner, weighting)
        plan.extra["adversarial"] = len(adv)
        return plan

    def parts(self, model, ctx):
        """``ctx`` is the inner context of :meth:`prepare`: D_f as floats, the adversarial set as D_r."""
        stop = ForgetAccuracyZero(ctx.forget, self.batch_size) if self.stop_at_zero else None
        importance = mas_importance(model, ctx.forget, self.batch_size)
        return Parts(forget=NegativeCE(), retain=RetainCE(), stop=stop,
                     regulariser=WeightedL2ToOriginal(self.reg_lamb / 2, importance))

    def finish(self, model, ctx, plan, info):
        return super().finish(model, ctx, plan, {**info, "adversarial": plan.extra["adversarial"]})

