"""RL: fine-tune with random labels on the forget set and true labels on the retain set.

Source: Golatkar et al. 2020 as run in SalUn; reference ``OPTML-Group/Unlearn-Saliency``
``Classification/unlearn/RL.py`` (lr 0.01, 10 epochs). Fidelity switches: ``label_sampling``
(SalUn code may draw the true label; SFRon/FaLW draw y' ≠ y), ``redraw`` (per batch in SalUn,
once in SFRon/FaLW), ``sequential`` (SalUn's CIFAR-10 branch: all forget batches then all retain
batches; default is the mixed loader of its CIFAR-100 branch and FaLW's Algorithm 1).
"""
from dataclasses import dataclass
from typing import ClassVar

from ..unlearn.engine import LoopConfig, Parts
from ..unlearn.objectives import RandomLabelCE, RetainCE
from .base import METHODS, EngineMethod


@METHODS.register("rl")
@dataclass
class RL(EngineMethod):
    description: ClassVar[str] = "random labels on the forget set, true labels on the retain set"
    paper_name: ClassVar[str] = "RL"
    tune_space: ClassVar[dict] = {"lr": {"low": 0.001, "high": 0.1, "log": True}, "epochs": {"low": 1, "high": 10}}
    needs: ClassVar[frozenset] = frozenset({"forget", "retain"})
    supports_weighting: ClassVar[bool] = True

    epochs: int = 10
    """epochs (SalUn ``main_forget.py`` default)"""
    lr: float = 0.01
    """SGD learning rate (SalUn ``main_forget.py`` default)"""
    label_sampling: str = "exclude_true"
    """exclude_true (y' ≠ y) or uniform_incl_true (SalUn code)"""
    redraw: str = "once"
    """once (labels fixed before training) or per_batch (SalUn code)"""
    sequential: bool = False
    """forget pass then retain pass each epoch (SalUn CIFAR-10 branch) instead of one mixed loader"""

    def parts(self, model, ctx):
        return Parts(forget=RandomLabelCE(self.label_sampling, self.redraw), retain=RetainCE())

    def loop(self) -> LoopConfig:
        cfg = super().loop()
        cfg.mixing = "sequential" if self.sequential else "mixed"
        return cfg
