"""ℓ1-sparse: fine-tune on the retain set with an ℓ1 penalty whose strength decays per epoch.

Source: Jia et al., "Model sparsity can simplify machine unlearning", NeurIPS'23; reference
``OPTML-Group/Unlearn-Sparse`` ``unlearn/FT.py`` (``FT_l1`` → ``FT_iter(with_l1=True)``, same as
``Unlearn-Saliency/Classification/unlearn/FT_prune.py``): γ_e = α·(1 − e/(E − E₀)) for epochs
e < E − E₀, else 0, over all parameters (biases and BatchNorm included). Defaults: lr 0.01, 10
epochs (Unlearn-Sparse README); α = 1e-4 (the README leaves it to ``${alpha}``; 1e-4 is the value
of third-party reproductions and inside the paper's [5e-5, 1e-4] range).
"""
import math
from dataclasses import dataclass
from typing import ClassVar

from ..unlearn.engine import Parts
from ..unlearn.objectives import RetainCE
from ..unlearn.regularisers import DecayingL1
from .base import METHODS, EngineMethod


def l1_strength(alpha: float, epoch: int, epochs: int, no_l1_epochs: int) -> float:
    """γ_e of the reference: linear per-epoch decay over the first E − E₀ epochs, then 0."""
    active = epochs - no_l1_epochs
    if active <= 0:
        return alpha  # Unlearn-Sparse: no decay window means a constant penalty
    return alpha * (1.0 - epoch / active) if epoch < active else 0.0


class EpochDecayingL1(DecayingL1):
    """:class:`DecayingL1` stepped per epoch (as the reference) instead of per optimiser step."""

    def __init__(self, strength: float, epochs: int, no_l1_epochs: int = 0):
        super().__init__(strength)
        self.epochs, self.no_l1_epochs = epochs, no_l1_epochs

    def __call__(self, model, progress):
        # progress = step / total_steps, so the epoch is ⌊progress·E⌋ (epsilon guards rounding)
        epoch = math.floor(progress * self.epochs + 1e-9)
        gamma = l1_strength(self.strength, epoch, self.epochs, self.no_l1_epochs)
        return gamma * sum(p.abs().sum() for p in model.parameters() if p.requires_grad)


@METHODS.register("l1_sparse")
@dataclass
class L1Sparse(EngineMethod):
    description: ClassVar[str] = "fine-tune on the retain set with a decaying L1 penalty (sparsity-aided unlearning)"
    paper_name: ClassVar[str] = "ℓ1-sparse"
    tune_space: ClassVar[dict] = {
        "lr": {"low": 0.001, "high": 0.1, "log": True},
        "epochs": {"low": 1, "high": 10},
        "alpha": {"low": 1e-06, "high": 0.001, "log": True},
    }
    needs: ClassVar[frozenset] = frozenset({"forget", "retain"})
    mixing: ClassVar[str] = "retain_only"

    epochs: int = 10
    """fine-tuning epochs (Unlearn-Sparse README)"""
    lr: float = 0.01
    """SGD learning rate (Unlearn-Sparse README)"""
    alpha: float = 1e-4
    """initial L1 strength γ_0 (``--alpha``; 1e-4 from third-party reproduction scripts)"""
    no_l1_epochs: int = 0
    """E₀: final epochs without the penalty (``--no-l1-epochs``)"""

    def parts(self, model, ctx):
        return Parts(retain=RetainCE(), regulariser=EpochDecayingL1(self.alpha, self.epochs, self.no_l1_epochs))
