"""SCAR: push forget embeddings to the nearest wrong class (Mahalanobis) while distilling on surrogates.

Source: Bonato, Cotogni & Sabetta, "Is Retain Set All You Need in Machine Unlearning? Restoring
Performance of Unlearned Models with Out-Of-Distribution Images", ECCV'24 (arXiv 2404.12922);
reference ``jbonato1/SCAR`` ``src/Unlearning_methods.py::SCAR.run``, ``src/opts.py``,
``src/dsets.py::get_surrogate``; defaults from its README (CIFAR-10: batch 1024, Adam lr 5e-4,
30 epochs, T = 1, λ₁ = 1, λ₂ = 5, δ = 0.5, γ₁ = γ₂ = 3, 5 surrogate batches per forget batch).

- Embedding: the input of the model's last ``nn.Linear`` (the reference takes every child but the
  last; the hook also works for ResNets whose ReLUs are not children), Tukey-transformed
  (sign(z)·|z|^δ, equal to the reference's z^δ on non-negative post-ReLU features) and L2-normalised.
- Class statistics: per-class mean (then L2-normalised) and covariance of the original model's
  Tukey-transformed embeddings on the
  **retain set**, as the released code does (the paper calls SCAR retain-free, the code
  reads D_r for these statistics; we follow the code and declare ``retain``). Covariances are
  shrunk ``shrink_times`` times (Σ + γ₁·V₁·I + γ₂·V₂·(1−I)), turned into correlations and
  pseudo-inverted (negative eigenvalues, possible when V₂ < 0, clipped to 0 so that distances
  stay >= 0; the reference's plain ``pinv`` would let the forget loss run to −∞ there).
- Forget term: λ₁·mean d_M(e, c*) with c* the nearest class ≠ y (classes being forgotten excluded),
  fixed once with the original model before the loop (the reference fixes it per forget batch
  during the first epoch, its loader being unshuffled).
- Distillation: λ₂·KL(softmax(o/T) ‖ softmax(student)) on surrogate batches (student not divided
  by T, as coded); for class requests, surrogates the original assigns to a forgotten class are
  dropped and the forgotten classes' teacher logits set to the minimum logit.
- Surrogate set (no out-of-distribution images are available here): ``surrogate="heldout"``
  (default) uses the held-out split's images, unseen by the original model and in neither D_f nor
  D_r; it is in-distribution, so distillation is easier than with the paper's ImageNet OOD images
  (say so when comparing). ``surrogate="noise"`` uses Gaussian noise (clamped to [0, 1] for
  images), the reference's ``subset_gaussian_noise`` fallback, and does not read the held-out split.
- Loop: the engine's ``forget_led`` mixing with Adam: each forget batch ``surrogate_batches`` + 1
  times in a row, each time with the next surrogate batch (forget and surrogate rows pass through
  the model separately, as in the reference); a stop rule ends the run after an epoch > 2 once
  forget accuracy falls below the target (class requests: 0.01; others: held-out accuracy − 0.015
  when a held-out split is given). Forget batches are drawn in a shuffled order (the reference's
  loader is unshuffled; the targets are fixed, so only the order differs).
  Not included: the reference's HR-mode per-class gate on distances.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Split, as_float
from ..models import last_linear
from ..unlearn.engine import LoopConfig, Parts, StopRule
from ..unlearn.objectives import ForgetObjective, RetainObjective
from .base import METHODS, EngineMethod, EnginePlan, split_accuracy

SURROGATES = ("heldout", "noise")


def embed(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(input of the last nn.Linear, logits) of ``model`` on ``x``."""
    feats = []
    handle = last_linear(model).register_forward_hook(lambda _m, inp, _o: feats.append(inp[0]))
    try:
        logits = model(x)
    finally:
        handle.remove()
    return feats[0].flatten(1).float(), logits


def tukey(z: torch.Tensor, delta: float) -> torch.Tensor:
    """Tukey's ladder transform sign(z)·|z|^δ (the reference's z^δ on non-negative features)."""
    return z.sign() * z.abs().pow(delta)


def tukey_normalise(z: torch.Tensor, delta: float) -> torch.Tensor:
    return F.normalize(tukey(z, delta), dim=1)


def psd_pinv(m: torch.Tensor) -> torch.Tensor:
    """Pseudo-inverse of a symmetric matrix with negative eigenvalues clipped to 0, so distances stay >= 0."""
    w, v = torch.linalg.eigh(m)
    keep = w > w.abs().max() * len(w) * torch.finfo(w.dtype).eps
    return (v * torch.where(keep, 1 / w.clamp_min(1e-300), torch.zeros_like(w))) @ v.T


def shrink(cov: torch.Tensor, gamma1: float, gamma2: float) -> torch.Tensor:
    """Σ + γ₁·V₁·I + γ₂·V₂·(1−I), V₁ = mean diagonal, V₂ = mean non-zero off-diagonal entry."""
    eye = torch.eye(len(cov), dtype=cov.dtype, device=cov.device)
    off = cov[(1 - eye).bool()]
    nonzero = off[off != 0]
    v1 = cov.diagonal().mean()
    v2 = nonzero.mean() if len(nonzero) else cov.new_zeros(())
    return cov + gamma1 * v1 * eye + gamma2 * v2 * (1 - eye)


def removed_classes(ctx) -> list[int]:
    """Classes a request removes whole: those of a class request, and any forget class left with no
    retain sample (a long-tailed head class, a mixed request's whole classes). SCAR's class
    statistics come from the retain set, so only the others can be pushed towards."""
    present = set(ctx.forget.y.tolist())
    retained = set(ctx.retain.y.tolist()) if ctx.retain is not None else set()
    return sorted(set(ctx.forget_classes) | (present - retained))


def class_statistics(model: nn.Module, data: Split, classes: list[int], delta: float, gamma1: float,
                     gamma2: float, times: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised class means (C×d) and pseudo-inverted shrunk correlation matrices (C×d×d)."""
    with torch.no_grad():
        z = torch.cat([tukey(embed(model, as_float(data.x[i:i + batch_size]))[0], delta)
                       for i in range(0, len(data), batch_size)]).double()
    means, precisions = [], []
    for c in classes:
        zc = z[data.y == c]
        if len(zc) < 2:
            raise ValueError(f"scar needs at least 2 samples of class {c} for its statistics, found {len(zc)}")
        cov = torch.cov(zc.T)
        for _ in range(times):
            cov = shrink(cov, gamma1, gamma2)
        d = cov.diagonal().clamp_min(1e-12).sqrt()
        precisions.append(psd_pinv(cov / d[:, None] / d[None, :]))
        means.append(F.normalize(zc.mean(0), dim=0))
    return torch.stack(means).float(), torch.stack(precisions).float()


def mahalanobis(e: torch.Tensor, means: torch.Tensor, precisions: torch.Tensor) -> torch.Tensor:
    """N×C squared Mahalanobis distances of embeddings to every class."""
    diff = e[:, None, :] - means[None]
    return torch.einsum("ncd,cde,nce->nc", diff, precisions, diff)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-sample KL(softmax(teacher/T) ‖ softmax(student)) (the reference does not scale the student;
    its batch mean is the reference's ``batchmean``)."""
    return F.kl_div(F.log_softmax(student.float(), 1), F.log_softmax(teacher.float() / temperature, 1),
                    reduction="none", log_target=True).sum(1)


class MahalanobisPush(ForgetObjective):
    """d_M(e_i, c*_i) per forget sample: its embedding's distance to its fixed nearest wrong class.

    The embedding is read by a forward hook on the last ``nn.Linear`` during the engine's (grad-enabled)
    forward pass, so the forget rows cost no second forward; :meth:`close` removes the hook.
    """

    def __init__(self, model: nn.Module, delta: float, means, precisions, target: torch.Tensor):
        self.delta, self.means, self.precisions, self.target = delta, means, precisions, target
        self.feats: list[torch.Tensor] = []
        self.handle = last_linear(model).register_forward_hook(self._keep)

    def _keep(self, _m, inputs, _out):
        if torch.is_grad_enabled():
            self.feats.append(inputs[0])

    def __call__(self, logits, batch, ctx):
        e = self.feats[0][:len(batch.y)].flatten(1).float()  # forget rows come first
        self.feats.clear()
        d = mahalanobis(tukey_normalise(e, self.delta), self.means, self.precisions)
        return d.gather(1, self.target[batch.pos][:, None]).squeeze(1)

    def close(self) -> None:
        self.handle.remove()


class SurrogateDistill(RetainObjective):
    """Distil the original's outputs on surrogate images; forgotten classes' logits set to the minimum."""

    def __init__(self, temperature: float, removed: list[int]):
        self.temperature, self.removed = temperature, removed

    def __call__(self, logits, batch, ctx):
        with torch.no_grad():
            o = ctx.original(batch.x).float()
            if self.removed:
                o[:, self.removed] = o.min(1, keepdim=True).values
        return distill_loss(logits, o, self.temperature)


class ForgetAccuracyBelow(StopRule):
    """Checked at every epoch end: record forget accuracy; stop after epoch index 2 once below the target."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, target: float | None, batch_size: int, steps_per_epoch: int):
        self.x, self.y, self.target, self.batch_size = x, y, target, batch_size
        self.every = steps_per_epoch
        self.accuracies: list[float] = []

    def should_stop(self, model, ctx, step):
        acc = split_accuracy(model, self.x, self.y, self.batch_size)
        self.accuracies.append(acc)
        return self.target is not None and len(self.accuracies) > 2 and acc < self.target


@METHODS.register("scar")
@dataclass
class SCAR(EngineMethod):
    description: ClassVar[str] = "Mahalanobis push to the nearest wrong class + distillation on surrogate data"
    paper_name: ClassVar[str] = "SCAR"
    tune_space: ClassVar[dict] = {
        "lr": {"low": 0.0001, "high": 0.01, "log": True},
        "epochs": {"low": 1, "high": 30},
        "lambda_distill": {"low": 0.5, "high": 10.0, "log": True},
    }
    needs: ClassVar[frozenset] = frozenset({"forget", "retain", "heldout"})
    streams: ClassVar[bool] = False  # its preparation holds the forget inputs as one float tensor on the device
    """retain: class statistics (as coded); heldout: the default surrogate set"""
    mixing: ClassVar[str] = "forget_led"

    epochs: int = 30
    """maximum epochs over D_f (README CIFAR-10)"""
    optimizer: str = "adam"
    """Adam (reference)"""
    lr: float = 5e-4
    """Adam learning rate (README CIFAR-10)"""
    weight_decay: float = 0.0
    """Adam weight decay (``opts.py`` default)"""
    batch_size: int = 1024
    """forget and surrogate batch size (README)"""
    temperature: float = 1.0
    """distillation temperature T on the teacher logits (README)"""
    lambda_forget: float = 1.0
    """λ₁, weight of the Mahalanobis forget term (README)"""
    lambda_distill: float = 5.0
    """λ₂, weight of the distillation term (README)"""
    tukey_delta: float = 0.5
    """δ of the Tukey transform (README)"""
    gamma1: float = 3.0
    """diagonal shrinkage γ₁ (README)"""
    gamma2: float = 3.0
    """off-diagonal shrinkage γ₂ (README)"""
    shrink_times: int = 2
    """how many times the shrinkage is applied (twice in the reference)"""
    surrogate_batches: int = 5
    """surrogate batches per forget batch beyond the first (CIFAR: 5, Tiny-ImageNet: 90)"""
    surrogate: str = "heldout"
    """surrogate images: heldout (in-distribution unseen split) or noise (Gaussian)"""
    noise_samples: int = 10000
    """surrogate size when surrogate="noise" (the reference uses 10k ImageNet images)"""
    target_accuracy: float | None = None
    """early-stop forget accuracy; None: 0.01 for class requests, held-out accuracy − 0.015 otherwise"""
    train_mode: bool = True
    """BatchNorm/Dropout in train mode during the steps"""

    def __post_init__(self):
        super().__post_init__()
        if self.surrogate not in SURROGATES:
            raise ValueError(f"surrogate must be one of {SURROGATES}, got {self.surrogate!r}")
        if self.temperature <= 0 or self.surrogate_batches < 0:
            raise ValueError("temperature must be > 0 and surrogate_batches >= 0")
        if self.surrogate == "noise":
            self.needs = frozenset({"forget", "retain"})

    def surrogate_split(self, ctx) -> torch.Tensor:
        """Surrogate inputs (float) on the device."""
        if self.surrogate == "heldout":
            return as_float(ctx.heldout.x.to(ctx.device))
        shape = (self.noise_samples, *ctx.forget.x.shape[1:])
        x = torch.randn(shape, generator=ctx.generator(53))
        if ctx.kind == "image":
            x = (0.5 + 0.25 * x).clamp(0, 1)
        return x.to(ctx.device)

    def loop(self) -> LoopConfig:
        cfg = super().loop()
        cfg.forget_repeats, cfg.separate_forward, cfg.train_mode = self.surrogate_batches + 1, True, self.train_mode
        cfg.forget_weight, cfg.retain_weight = self.lambda_forget, self.lambda_distill
        return cfg

    def prepare(self, model, ctx, weighting):
        dev, teacher = ctx.device, ctx.original
        removed = removed_classes(ctx)
        kept = [c for c in range(ctx.num_classes) if c not in removed]
        means, precisions = class_statistics(teacher, ctx.retain.to(dev), kept, self.tukey_delta, self.gamma1,
                                             self.gamma2, self.shrink_times, self.batch_size)
        forget_x, forget_y = as_float(ctx.forget.x.to(dev)), ctx.forget.y.to(dev)
        target = self.nearest_wrong_class(teacher, forget_x, forget_y, kept, means, precisions)
        surrogate = self.teacher_filtered(teacher, self.surrogate_split(ctx), removed)
        inner = dataclasses.replace(ctx, retain=Split(surrogate, torch.zeros(len(surrogate), dtype=torch.long,
                                                                             device=surrogate.device)))
        steps_per_epoch = -(-len(forget_x) // self.batch_size) * (self.surrogate_batches + 1)
        rule = ForgetAccuracyBelow(forget_x, forget_y, self.stop_accuracy(teacher, ctx), self.batch_size,
                                   max(1, steps_per_epoch))
        push = MahalanobisPush(model, self.tukey_delta, means, precisions, target)
        plan = self.plan(Parts(forget=push, retain=SurrogateDistill(self.temperature, removed), stop=rule),
                         inner, weighting)
        plan.extra.update(push=push, rule=rule, surrogate_size=len(surrogate))
        return plan

    def finish(self, model, ctx, plan: EnginePlan, info):
        plan.extra["push"].close()
        history = [{**h, "forget_acc": a} for h, a in zip(info["history"], plan.extra["rule"].accuracies)]
        info = {**info, "history": history, "surrogate": self.surrogate, "surrogate_size": plan.extra["surrogate_size"]}
        return super().finish(model, ctx, plan, info)

    def nearest_wrong_class(self, teacher, x, y, kept, means, precisions) -> torch.Tensor:
        """Index (into ``kept``) of the nearest class by Mahalanobis distance that is not the true label."""
        kept_t = torch.tensor(kept, device=x.device)
        out = []
        with torch.no_grad():
            for i in range(0, len(x), self.batch_size):
                e = tukey_normalise(embed(teacher, x[i:i + self.batch_size])[0], self.tukey_delta)
                d = mahalanobis(e, means, precisions)
                d[kept_t[None, :] == y[i:i + self.batch_size, None]] = float("inf")
                out.append(d.argmin(1))
        return torch.cat(out)

    def teacher_filtered(self, teacher, xs: torch.Tensor, removed: list[int]) -> torch.Tensor:
        """Drop surrogates the original assigns to a class removed whole."""
        if not removed:
            return xs
        with torch.no_grad():
            pred = torch.cat([teacher(xs[i:i + self.batch_size]).argmax(1) for i in range(0, len(xs), self.batch_size)])
        keep = ~torch.isin(pred, torch.tensor(removed, device=pred.device))
        return xs[keep]

    def stop_accuracy(self, teacher, ctx) -> float | None:
        if self.target_accuracy is not None:
            return self.target_accuracy
        if ctx.forget_classes:
            return 0.01
        if ctx.heldout is None or len(ctx.heldout) == 0:
            return None
        held = ctx.heldout.to(ctx.device)
        return split_accuracy(teacher, as_float(held.x), held.y, self.batch_size) - 0.015

