"""Per-sample forget objectives ℓ_forget and retain objectives of Formulation 1.

A forget objective maps (model outputs, batch) to one loss per sample so any weighting can scale
it. ``setup`` runs once before the loop (e.g. random labels drawn once, targets computed once).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .context import UnlearnContext


class Batch:
    """A mini-batch with the positions of its samples inside their split (for per-sample state)."""

    __slots__ = ("x", "y", "pos")

    def __init__(self, x, y, pos):
        self.x, self.y, self.pos = x, y, pos


class ForgetObjective:
    def setup(self, ctx: UnlearnContext) -> None:
        """Prepare per-run state; default: none."""

    def __call__(self, logits: torch.Tensor, batch: Batch, ctx: UnlearnContext) -> torch.Tensor:
        raise NotImplementedError


class NegativeCE(ForgetObjective):
    """Gradient ascent: −CE(f(x), y) per sample."""

    def __call__(self, logits, batch, ctx):
        return -F.cross_entropy(logits.float(), batch.y, reduction="none")


class RandomLabelCE(ForgetObjective):
    """CE to a random label (RL).

    ``sampling``: ``"exclude_true"`` draws y' ≠ y (SFRon code, SalUn paper's equation, FaLW
    Algorithm 1); ``"uniform_incl_true"`` may draw y itself (SalUn code, CIFAR-10 branch).
    ``redraw``: ``"once"`` fixes labels before training (FaLW supplementary code, SFRon);
    ``"per_batch"`` redraws every batch (SalUn code).
    """

    def __init__(self, sampling: str = "exclude_true", redraw: str = "once"):
        if sampling not in ("exclude_true", "uniform_incl_true"):
            raise ValueError(f"label sampling must be 'exclude_true' or 'uniform_incl_true', got {sampling!r}")
        if redraw not in ("once", "per_batch"):
            raise ValueError(f"redraw must be 'once' or 'per_batch', got {redraw!r}")
        self.sampling, self.redraw = sampling, redraw
        self.labels: torch.Tensor | None = None

    def _draw(self, y: torch.Tensor, num_classes: int, gen: torch.Generator) -> torch.Tensor:
        y = y.cpu()
        if self.sampling == "uniform_incl_true":
            return torch.randint(0, num_classes, y.shape, generator=gen)
        shift = torch.randint(1, num_classes, y.shape, generator=gen)
        return (y + shift) % num_classes

    def setup(self, ctx):
        self._gen = ctx.generator(17)
        self.labels = self._draw(ctx.forget.y, ctx.num_classes, self._gen).to(ctx.device)

    def __call__(self, logits, batch, ctx):
        if self.redraw == "once":
            target = self.labels[batch.pos]
        else:
            target = self._draw(batch.y, ctx.num_classes, self._gen).to(logits.device)
        return F.cross_entropy(logits.float(), target, reduction="none")


class SoftTargetCE(ForgetObjective):
    """Soft cross-entropy to fixed per-sample target distributions (TRW, or any distillation target).

    ``targets`` is an ``N_f × C`` tensor aligned with the forget split, or a callable
    ``(ctx) -> targets`` evaluated once in ``setup``.
    """

    def __init__(self, targets):
        self.targets = targets

    def setup(self, ctx):
        t = self.targets(ctx) if callable(self.targets) else self.targets
        self._t = t.to(ctx.device).float()

    def __call__(self, logits, batch, ctx):
        return soft_cross_entropy(logits, self._t[batch.pos])


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample −Σ_k t_k log softmax(z)_k, in fp32."""
    return -(targets * F.log_softmax(logits.float(), 1)).sum(1)


class NegativeKLToTeacher(ForgetObjective):
    """SCRUB's max step: −KL(teacher ‖ student) at temperature T on forget samples."""

    def __init__(self, temperature: float = 4.0):
        self.temperature = temperature

    def __call__(self, logits, batch, ctx):
        return -kl_to_teacher(logits, batch.x, ctx, self.temperature)


class RetainObjective:
    def __call__(self, logits: torch.Tensor, batch: Batch, ctx: UnlearnContext) -> torch.Tensor:
        raise NotImplementedError


class RetainCE(RetainObjective):
    """Plain cross-entropy on retain samples (fine-tuning)."""

    def __call__(self, logits, batch, ctx):
        return F.cross_entropy(logits.float(), batch.y, reduction="none")


class RetainSoftCE(RetainObjective):
    """Soft cross-entropy to fixed per-sample targets aligned with the retain split (``N_r × C``, on
    the device the model trains on)."""

    def __init__(self, targets: torch.Tensor):
        self.targets = targets

    def __call__(self, logits, batch, ctx):
        return soft_cross_entropy(logits, self.targets[batch.pos])


def kl_to_teacher(logits, x, ctx: UnlearnContext, temperature: float) -> torch.Tensor:
    """Per-sample KL(p_teacher ‖ p_student) at temperature T, scaled by T² (Hinton et al.)."""
    with torch.no_grad():
        teacher = ctx.original(x).float()
    t = temperature
    log_p = F.log_softmax(logits.float() / t, 1)
    log_q = F.log_softmax(teacher / t, 1)
    return (log_q.exp() * (log_q - log_p)).sum(1) * t * t


class RetainKLToTeacher(RetainObjective):
    """Distil from the original model on retain samples (SCRUB min step), plus ``ce_weight``·CE."""

    def __init__(self, temperature: float = 4.0, ce_weight: float = 0.0):
        self.temperature, self.ce_weight = temperature, ce_weight

    def __call__(self, logits, batch, ctx):
        loss = kl_to_teacher(logits, batch.x, ctx, self.temperature)
        if self.ce_weight:
            loss = loss + self.ce_weight * F.cross_entropy(logits.float(), batch.y, reduction="none")
        return loss
