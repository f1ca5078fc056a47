"""Bad Teacher: distil from the original model on D_r and from a random ("incompetent") one on D_f.

Source: Chundawat, Tarun, Mandal & Kankanhalli, "Can Bad Teaching Induce Forgetting? Unlearning in
Deep Networks using an Incompetent Teacher", AAAI 2023; reference
``vikram2000b/bad-teaching-unlearning`` ``unlearn.py`` (``UnlearnerLoss``, ``blindspot_unlearner``)
with defaults from ``CIFARSuper20_Rocket_Unlearn.ipynb``: Adam lr 1e-4, 1 epoch, batch 256,
KL temperature 1, a random 30% of the retain set, the incompetent teacher a freshly initialised
model of the same architecture in eval mode.

Each sample's loss is KL(teacher(x)/T ‖ student(x)/T): the teacher is the original model for
retain samples and the incompetent one for forget samples; forget and retain samples are
shuffled together (the engine's ``mixed`` loader, like the reference's ``UnLearningData``).
Deviation: the reference's ``F.kl_div`` uses the default ``reduction="mean"``, which also divides
by the number of classes; here each sample's KL is summed over classes (batch mean), a constant
factor Adam is insensitive to. No T² factor, as in the reference.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics.output_eval import incompetent_model
from ..unlearn.engine import Parts
from ..unlearn.objectives import ForgetObjective, RetainObjective
from .base import METHODS, EngineMethod


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-sample KL(softmax(teacher/T) ‖ softmax(student/T)), summed over classes."""
    log_p = F.log_softmax(student_logits.float() / temperature, 1)
    log_q = F.log_softmax(teacher_logits.float() / temperature, 1)
    return (log_q.exp() * (log_q - log_p)).sum(1)


class IncompetentTeacherKL(ForgetObjective):
    """Forget samples: KL to the incompetent teacher's outputs."""

    def __init__(self, temperature: float):
        self.temperature = temperature
        self.teacher: nn.Module | None = None

    def setup(self, ctx):
        self.teacher = incompetent_model(ctx.original, ctx.seed * 1000003 + 41, ctx.device)

    def __call__(self, logits, batch, ctx):
        with torch.no_grad():
            teacher = self.teacher(batch.x)
        return distill_kl(logits, teacher, self.temperature)


class CompetentTeacherKL(RetainObjective):
    """Retain samples: KL to the original model's outputs (no T², unlike SCRUB's distillation)."""

    def __init__(self, temperature: float):
        self.temperature = temperature

    def __call__(self, logits, batch, ctx):
        with torch.no_grad():
            teacher = ctx.original(batch.x)
        return distill_kl(logits, teacher, self.temperature)


@METHODS.register("bad_teacher")
@dataclass
class BadTeacher(EngineMethod):
    description: ClassVar[str] = "distil from the original on the retain set and a random model on the forget set"
    paper_name: ClassVar[str] = "Bad Teacher"
    tune_space: ClassVar[dict] = {
        "lr": {"low": 1e-05, "high": 0.001, "log": True},
        "epochs": {"low": 1, "high": 5},
        "temperature": {"low": 1.0, "high": 8.0},
        "retain_fraction": {"low": 0.1, "high": 1.0},
    }
    needs: ClassVar[frozenset] = frozenset({"forget", "retain"})
    supports_weighting: ClassVar[bool] = True

    epochs: int = 1
    """unlearning epochs over forget ∪ retain subset (notebook: 1)"""
    lr: float = 1e-4
    """Adam learning rate (notebook: 1e-4)"""
    batch_size: int = 256
    """mini-batch size of the shuffled forget ∪ retain-subset loader (notebook: 256)"""
    optimizer: str = "adam"
    """torch optimiser: adam as in the reference, or sgd / adamw"""
    weight_decay: float = 0.0
    """Adam weight decay (the reference's Adam has none)"""
    temperature: float = 1.0
    """KL temperature T of both teachers (notebook: 1)"""
    retain_fraction: float = 0.3
    """fraction of the retain set, drawn at random once, that is distilled (notebook: 0.3)"""

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.retain_fraction, bool) or not isinstance(self.retain_fraction, (int, float)) \
                or not 0 < self.retain_fraction <= 1:
            raise ValueError(f"bad_teacher: retain_fraction must be in (0, 1], got {self.retain_fraction!r}")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) \
                or not self.temperature > 0:
            raise ValueError(f"bad_teacher: temperature must be a number > 0, got {self.temperature!r}")

    def parts(self, model, ctx):
        return Parts(forget=IncompetentTeacherKL(self.temperature), retain=CompetentTeacherKL(self.temperature))

    def prepare(self, model, ctx, weighting):
        n = len(ctx.retain)
        keep = torch.randperm(n, generator=ctx.generator(43))[:max(1, round(self.retain_fraction * n))]
        sub = dataclasses.replace(ctx, retain=ctx.retain.subset(keep.sort().values))
        return self.plan(self.parts(model, sub), sub, weighting)

    def finish(self, model, ctx, prepared, info):
        return model.eval(), {**info, "retain_used": len(prepared.ctx.retain)}
