"""GA: gradient ascent on the forget set.

Source: Thudi et al. 2022 as run in SalUn; reference ``OPTML-Group/Unlearn-Saliency``
``Classification/unlearn/GA.py`` (train mode, wd 5e-4); defaults lr 1e-4, 5 epochs (Unlearn-Sparse
README). Fidelity switch ``sfron_mode``: eval mode and gradient clipping at 0.1 as in SFRon's
``unlearn/gradient_ascent.py``.
"""
from dataclasses import dataclass
from typing import ClassVar

from ..unlearn.engine import LoopConfig, Parts
from ..unlearn.objectives import NegativeCE
from .base import METHODS, EngineMethod


@METHODS.register("ga")
@dataclass
class GA(EngineMethod):
    description: ClassVar[str] = "gradient ascent on the forget set"
    paper_name: ClassVar[str] = "GA"
    tune_space: ClassVar[dict] = {"lr": {"low": 1e-05, "high": 0.01, "log": True}, "epochs": {"low": 1, "high": 10}}
    supports_weighting: ClassVar[bool] = True
    mixing: ClassVar[str] = "forget_only"

    epochs: int = 5
    """ascent epochs (Unlearn-Sparse README)"""
    lr: float = 1e-4
    """SGD learning rate (Unlearn-Sparse README)"""
    sfron_mode: bool = False
    """eval-mode BatchNorm and grad-norm clip 0.1 (SFRon variant) instead of train mode (SalUn)"""

    def parts(self, model, ctx):
        return Parts(forget=NegativeCE())

    def loop(self) -> LoopConfig:
        cfg = super().loop()
        if self.sfron_mode:
            cfg.train_mode, cfg.grad_clip = False, 0.1
        return cfg
