"""NegGrad+: descend on retain and ascend on forget in the same step.

Source: Kurmanji et al., NeurIPS'23 (SCRUB paper); reference ``meghdadk/SCRUB`` ``loops.py``
``train_negrad``: loss = α·CE(retain) − (1−α)·CE(forget) on paired batches; defaults from its
small-scale notebook (α = 0.95, 10 epochs, lr 0.01, wd 0).
"""
from dataclasses import dataclass
from typing import ClassVar

from ..unlearn.engine import LoopConfig, Parts
from ..unlearn.objectives import NegativeCE, RetainCE
from .base import METHODS, EngineMethod


@METHODS.register("neggrad_plus")
@dataclass
class NegGradPlus(EngineMethod):
    description: ClassVar[str] = "retain descent and forget ascent in one step (α-weighted)"
    paper_name: ClassVar[str] = "NegGrad+"
    tune_space: ClassVar[dict] = {
        "lr": {"low": 0.001, "high": 0.1, "log": True},
        "epochs": {"low": 1, "high": 10},
        "alpha": {"low": 0.5, "high": 0.999},
    }
    needs: ClassVar[frozenset] = frozenset({"forget", "retain"})
    supports_weighting: ClassVar[bool] = True
    mixing: ClassVar[str] = "paired"

    epochs: int = 10
    """epochs over the retain set (SCRUB notebook)"""
    lr: float = 0.01
    """SGD learning rate (SCRUB notebook)"""
    weight_decay: float = 0.0
    """SGD weight decay (SCRUB notebook uses 0)"""
    alpha: float = 0.95
    """weight of the retain term; the forget term gets 1 − α (``ng_alpha``)"""

    def parts(self, model, ctx):
        return Parts(forget=NegativeCE(), retain=RetainCE())

    def loop(self) -> LoopConfig:
        cfg = super().loop()
        cfg.retain_weight, cfg.forget_weight = self.alpha, 1.0 - self.alpha
        return cfg
