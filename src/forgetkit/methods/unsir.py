"""UNSIR: learn error-maximising noise for each forgotten class, impair on it, repair on D_r.

Source: Tarun, Chundawat, Mandal & Kankanhalli, "Fast Yet Effective Machine Unlearning", IEEE
TNNLS 2023; reference ``vikram2000b/Fast-Machine-Unlearning`` ``Machine Unlearning.ipynb``
(CIFAR-10, ResNet-18), whose cells give the defaults:

1. noise: per forgotten class c, a batch of 256 inputs N ~ 𝒩(0, 1) trained by Adam (lr 0.1,
   5 epochs × 8 steps) to minimise −CE(f(N), c) + 0.1·mean_i ‖N_i‖², the model fixed;
2. impair: one epoch of Adam (lr 0.02, batch 256) on CE over 20 copies of each noise batch,
   labelled c, shuffled with the first 1000 retain samples of every kept class;
3. repair: one epoch of Adam (lr 0.01, batch 256) on CE over those retain samples alone.

Deviations: the noise is optimised against the frozen original in eval mode (the notebook's
freshly loaded model is in train mode, so its BatchNorm statistics drift during step 1), and each
noise batch is labelled with its own class (the notebook labels every class's noise 0, which
only matters with several forgotten classes). Both training steps run on the engine.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Split, as_float
from ..unlearn.engine import LoopConfig, Parts, run_engine
from ..unlearn.objectives import ForgetObjective, RetainCE
from .base import METHODS, Method
from .svd import retain_sample


def noise_loss(logits: torch.Tensor, noise: torch.Tensor, label: int, l2: float) -> torch.Tensor:
    """−CE(f(N), c) + l2·mean_i ‖N_i‖²: low when the noise maximises the error on class c."""
    target = torch.full((len(noise),), label, dtype=torch.long, device=noise.device)
    return -F.cross_entropy(logits.float(), target) + l2 * noise.flatten(1).square().sum(1).mean()


def learn_noise(model: nn.Module, label: int, shape: tuple[int, ...], steps: int, lr: float, l2: float,
                gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """Error-maximising noise for class ``label`` against the (frozen, eval-mode) ``model``."""
    noise = torch.randn(shape, generator=gen).to(device).requires_grad_(True)
    opt = torch.optim.Adam([noise], lr=lr)
    for _ in range(steps):
        loss = noise_loss(model(noise), noise, label, l2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return noise.detach()


class NoiseCE(ForgetObjective):
    """Impair step: plain CE of the noise samples to the class they were made against."""

    def __call__(self, logits, batch, ctx):
        return F.cross_entropy(logits.float(), batch.y, reduction="none")


@METHODS.register("unsir")
@dataclass
class UNSIR(Method):
    description: ClassVar[str] = "error-maximising noise for the forgotten classes, impair then repair"
    paper_name: ClassVar[str] = "UNSIR"
    tune_space: ClassVar[dict] = {
        "impair_lr": {"low": 0.001, "high": 0.1, "log": True},
        "repair_lr": {"low": 0.001, "high": 0.1, "log": True},
        "repair_epochs": {"low": 1, "high": 3},
    }
    needs: ClassVar[frozenset] = frozenset({"forget", "retain"})
    streams: ClassVar[bool] = False  # holds its retain sample as one float tensor beside the learnt noise
    class_only: ClassVar[bool] = True
    smoke_caps: ClassVar[dict[str, int | float]] = {"noise_steps": 8, "noise_copies": 2, "retain_per_class": 200}

    noise_size: int = 256
    """noise samples learnt per forgotten class (the notebook's batch size)"""
    noise_steps: int = 40
    """Adam steps on the noise (5 epochs × 8 steps)"""
    noise_lr: float = 0.1
    """Adam learning rate of the noise"""
    noise_l2: float = 0.1
    """weight of the mean squared-norm penalty on the noise"""
    noise_copies: int = 20
    """times each noise batch is repeated in the impair data (``num_batches``)"""
    retain_per_class: int = 1000
    """first samples of each kept class used in both steps (``num_samples_per_class``)"""
    impair_lr: float = 0.02
    """Adam learning rate of the impair step"""
    repair_lr: float = 0.01
    """Adam learning rate of the repair step"""
    impair_epochs: int = 1
    """impair epochs"""
    repair_epochs: int = 1
    """repair epochs"""
    batch_size: int = 256
    """mini-batch size of both steps"""

    def __post_init__(self):
        at_least = {"noise_size": 1, "noise_copies": 1, "retain_per_class": 1, "batch_size": 1,
                    "noise_steps": 0, "impair_epochs": 0, "repair_epochs": 0}
        for name, low in at_least.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"unsir: {name} must be an integer >= {low}, got {v!r}")
        for name, strict in (("noise_lr", True), ("impair_lr", True), ("repair_lr", True), ("noise_l2", False)):
            v = getattr(self, name)
            ok = not isinstance(v, bool) and isinstance(v, (int, float)) and (v > 0 if strict else v >= 0)
            if not ok:
                raise ValueError(f"unsir: {name} must be a number {'> 0' if strict else '>= 0'}, got {v!r}")

    def _stage(self, model, ctx, parts, epochs, lr, mixing, progress):
        cfg = LoopConfig(epochs=epochs, lr=lr, batch_size=self.batch_size, optimizer="adam", weight_decay=0.0,
                         mixing=mixing)
        return run_engine(model, ctx, parts, cfg, progress)

    def run(self, model, ctx, prepared, progress):
        dev = ctx.device
        gen = ctx.generator(47)
        shape = (self.noise_size, *ctx.forget.x.shape[1:])
        noises = [learn_noise(ctx.original, c, shape, self.noise_steps, self.noise_lr, self.noise_l2, gen, dev)
                  for c in ctx.forget_classes]
        noise = Split(torch.cat(noises).repeat(self.noise_copies, *[1] * (len(shape) - 1)),
                      torch.tensor(ctx.forget_classes, device=dev).repeat_interleave(self.noise_size)
                      .repeat(self.noise_copies))
        kept = ctx.num_classes - len(ctx.forget_classes)
        r = ctx.retain.subset(retain_sample(ctx.retain, ctx.forget_classes, ctx.num_classes,
                                            self.retain_per_class * kept))
        retain = Split(as_float(r.x), r.y)  # float like the noise: the engine concatenates the two
        impair = self._stage(model, dataclasses.replace(ctx, forget=noise, retain=retain),
                             Parts(forget=NoiseCE(), retain=RetainCE()), self.impair_epochs, self.impair_lr,
                             "mixed", progress)
        repair = self._stage(model, dataclasses.replace(ctx, retain=retain), Parts(retain=RetainCE()),
                             self.repair_epochs, self.repair_lr, "retain_only", progress)
        return {"noise_samples": len(noise), "retain_used": len(retain),
                       "impair_history": impair.epochs, "repair_history": repair.epochs}
