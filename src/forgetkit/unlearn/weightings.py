"""Per-sample forget weights w_i of Formulation 1.

A weighting is a plug-in: any method with a per-sample forget loss accepts any weighting
("FaLW + SalUn" is configuration, not code). Weights are constants to the optimiser (detached).
"""
from __future__ import annotations

import torch

from ..registry import Registry
from .context import UnlearnContext
from .objectives import Batch

WEIGHTINGS: Registry = Registry("weighting")


class Weighting:
    """Base: ``setup`` once, ``before_step`` each optimiser step, ``__call__`` per forget batch."""

    description = ""
    paper_name = ""
    """the name reports show (FaLW); default: the registry key"""

    def setup(self, ctx: UnlearnContext, model: torch.nn.Module) -> None:
        """Prepare per-run state (class counts, held-out statistics)."""

    def before_step(self, model: torch.nn.Module, ctx: UnlearnContext, step: int) -> None:
        """Refresh anything that depends on the current model (e.g. held-out statistics)."""

    def __call__(self, logits: torch.Tensor, batch: Batch, ctx: UnlearnContext) -> torch.Tensor:
        raise NotImplementedError

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Statistics of the weights used this epoch, for logs and plots (default: none)."""
        return {}

    needs: frozenset[str] = frozenset()


@WEIGHTINGS.register("uniform")
class Uniform(Weighting):
    """w_i = 1: the unweighted base method."""

    description = "every forget sample weighs 1 (the base method)"
    paper_name = "uniform"

    def __call__(self, logits, batch, ctx):
        return torch.ones(len(batch.y), device=logits.device)


def is_uniform(weighting: Weighting | None) -> bool:
    """True when ``weighting`` leaves the base method unweighted (None or :class:`Uniform`)."""
    return weighting is None or isinstance(weighting, Uniform)


def build_weighting(name: str, **options) -> Weighting:
    """Instantiate a registered weighting with keyword options (errors name unknown options)."""
    cls = WEIGHTINGS.get(name)
    try:
        return cls(**options)
    except TypeError as e:
        raise ValueError(f"bad options for weighting {name!r}: {e}") from None
