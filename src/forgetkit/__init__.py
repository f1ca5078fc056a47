"""forgetkit: machine unlearning that decides how much to forget.

Quick use::

    from forgetkit import unlearn
    result = unlearn(model, (x, y), forget_indices, method="rl", weighting="falw", heldout=(xh, yh))
"""
from .api import UnlearnResult, unlearn

__all__ = ["unlearn", "UnlearnResult"]
__version__ = "0.1.0"
