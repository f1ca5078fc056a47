"""SCRUB: alternate max steps (move away from the teacher on D_f) and min steps (stay close on D_r).

Source: Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS'23; reference
``meghdadk/SCRUB`` ``thirdparty/repdistiller/helper/loops.py::train_distill`` with
``distiller_zoo/KD.py::DistillKL`` (T²-scaled KL, mean over the batch) and
``helper/util.py::adjust_learning_rate``. Each epoch: if epoch < ``msteps`` a full pass over D_f
minimising −KL(teacher ‖ student), then a full pass over D_r minimising γ·CE + α·KL. Defaults are
the large-scale notebook's (``large_scale_unlearning.ipynb``): SGD lr 5e-4, momentum 0.9, wd 5e-4,
3 epochs, msteps 2, T = 4, γ = 0.99, α = 0.001, lr ×0.1 at epochs 3, 5, 9.

Deviation: the engine uses one batch size for both passes (the notebook's loaders use 512 for D_f
and 256 for D_r); the default 256 is the retain one, which drives most steps.
"""
from dataclasses import dataclass
from typing import ClassVar

from ..unlearn.engine import LoopConfig, Parts
from ..unlearn.objectives import NegativeKLToTeacher, RetainCE, RetainKLToTeacher
from ..unlearn.optim import Optimisation
from .base import METHODS, EngineMethod


@METHODS.register("scrub")
@dataclass
class SCRUB(EngineMethod):
    """SCRUB's γ is the weight of its CE term (the paper's name), so the step schedule's decay
    factor, :attr:`Optimisation.gamma` elsewhere, is ``lr_decay_rate`` here."""

    description: ClassVar[str] = "teacher-student: max KL on the forget set, min KL + CE on the retain set"
    paper_name: ClassVar[str] = "SCRUB"
    tune_space: ClassVar[dict] = {
        "lr": {"low": 0.0001, "high": 0.01, "log": True},
        "epochs": {"low": 1, "high": 10},
        "alpha": {"low": 0.0001, "high": 1.0, "log": True},
    }
    needs: ClassVar[frozenset] = frozenset({"forget", "retain"})
    supports_weighting: ClassVar[bool] = True
    mixing: ClassVar[str] = "sequential"

    epochs: int = 3
    """epochs, each ending with a min pass over D_r (``sgda_epochs``)"""
    lr: float = 5e-4
    """SGD learning rate (``sgda_learning_rate``)"""
    schedule: str = "step"
    """learning-rate schedule; step decays at ``milestones`` (``adjust_learning_rate``)"""
    milestones: tuple[int, ...] = (3, 5, 9)
    """epochs at which the step schedule multiplies the rate by ``lr_decay_rate`` (``lr_decay_epochs``)"""
    msteps: int = 2
    """epochs that start with a max pass over D_f"""
    temperature: float = 4.0
    """distillation temperature T (``kd_T``)"""
    alpha: float = 0.001
    """weight α of the KL-to-teacher term on D_r"""
    gamma: float = 0.99
    """weight γ of the cross-entropy term on D_r"""
    lr_decay_rate: float = 0.1
    """decay factor of the step schedule"""

    def check_optimisation(self):
        if not isinstance(self.gamma, (int, float)) or self.gamma < 0:
            raise ValueError(f"gamma (SCRUB's CE weight) must be a number >= 0, got {self.gamma!r}")
        if not isinstance(self.lr_decay_rate, (int, float)) or self.lr_decay_rate <= 0:
            raise ValueError(f"lr_decay_rate must be a number > 0, got {self.lr_decay_rate!r}")
        Optimisation(**self.optimisation())

    def optimisation(self):
        return {**super().optimisation(), "gamma": self.lr_decay_rate}

    def parts(self, model, ctx):
        if self.alpha == 0:
            retain = RetainCE()
        else:  # α·KL + γ·CE = α·(KL + (γ/α)·CE)
            retain = RetainKLToTeacher(self.temperature, ce_weight=self.gamma / self.alpha)
        return Parts(forget=NegativeKLToTeacher(self.temperature), retain=retain)

    def loop(self) -> LoopConfig:
        cfg = super().loop()
        cfg.forget_epochs = self.msteps
        cfg.retain_weight = self.alpha if self.alpha else self.gamma
        return cfg
