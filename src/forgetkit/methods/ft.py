"""FT: fine-tune on the retain set only (catastrophic forgetting of D_f).

Source: SalUn, Fan et al., ICLR'24; reference ``OPTML-Group/Unlearn-Saliency``
``Classification/unlearn/FT.py`` (``FT_iter`` without L1); defaults from the Unlearn-Sparse README
(lr 0.01, 10 epochs, SGD 0.9, wd 5e-4, batch 256).
"""
from dataclasses import dataclass
from typing import ClassVar

from ..unlearn.engine import Parts
from ..unlearn.objectives import RetainCE
from .base import METHODS, EngineMethod


@METHODS.register("ft")
@dataclass
class FT(EngineMethod):
    description: ClassVar[str] = "fine-tune on the retain set (forgetting by catastrophic interference)"
    paper_name: ClassVar[str] = "FT"
    tune_space: ClassVar[dict] = {"lr": {"low": 0.001, "high": 0.1, "log": True}, "epochs": {"low": 1, "high": 10}}
    needs: ClassVar[frozenset] = frozenset({"forget", "retain"})
    mixing: ClassVar[str] = "retain_only"

    epochs: int = 10
    """fine-tuning epochs (Unlearn-Sparse README)"""
    lr: float = 0.01
    """SGD learning rate (Unlearn-Sparse README)"""

    def parts(self, model, ctx):
        return Parts(retain=RetainCE())
