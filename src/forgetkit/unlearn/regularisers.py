"""Parameter regularisers R(θ, θ_o) of Formulation 1."""
from __future__ import annotations

import torch
from torch import nn

from .context import UnlearnContext


class Regulariser:
    def setup(self, model: nn.Module, ctx: UnlearnContext) -> None:
        """Prepare per-run state (e.g. a copy of θ_o)."""

    def __call__(self, model: nn.Module, progress: float) -> torch.Tensor:
        """Penalty at training progress ``progress`` ∈ [0, 1)."""
        raise NotImplementedError


class DecayingL1(Regulariser):
    """γ_t·‖θ‖₁ with γ_t decaying linearly from ``strength`` to 0 (ℓ1-sparse, Jia et al. 2023;
    Unlearn-Sparse ``unlearn/FT.py`` ``l1_regularization`` with ``alpha * (1 - epoch/epochs)``)."""

    def __init__(self, strength: float):
        self.strength = strength

    def __call__(self, model, progress):
        params = [p for p in model.parameters() if p.requires_grad]
        return self.strength * (1.0 - progress) * sum(p.abs().sum() for p in params)


class WeightedL2ToOriginal(Regulariser):
    """Σ_j ω_j (θ_j − θ_o,j)²: keep important weights near the original (L2UL; EWC-like).

    ``importance`` maps parameter names to tensors ω; missing names weigh 1.
    """

    def __init__(self, strength: float, importance: dict[str, torch.Tensor] | None = None):
        self.strength, self.importance = strength, importance or {}

    def setup(self, model, ctx):
        self._anchor = {n: p.detach().clone() for n, p in model.named_parameters()}

    def __call__(self, model, progress):
        total = 0.0
        for n, p in model.named_parameters():
            w = self.importance.get(n)
            d = (p - self._anchor[n]) ** 2
            total = total + (d * w).sum() if w is not None else total + d.sum()
        return self.strength * total
