"""A uniformly random fraction of the training set."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import REQUEST_SHAPES, ForgetRequest, RequestShape, ShapeData


def random_request(y, fraction: float, seed: int) -> ForgetRequest:
    """A uniformly random fraction of the training set (the SalUn 'random forgetting')."""
    n = len(y)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"forget fraction must be in (0, 1), got {fraction}")
    k = int(round(fraction * n))
    if k == 0:
        raise ValueError(f"forget fraction {fraction} of {n} samples selects no sample")
    idx = np.random.RandomState(seed).choice(n, k, replace=False)
    return ForgetRequest(np.sort(idx), f"random{fraction:g}", "random")


@REQUEST_SHAPES.register("random")
@dataclass
class RandomFraction(RequestShape):
    """A uniformly random fraction of the training set (SalUn's random forgetting)."""

    example = {"fraction": 0.2}

    fraction: float
    """share of the training set to forget, in (0, 1)"""

    def __post_init__(self):
        if not 0.0 < self.fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {self.fraction}")

    def build(self, data: ShapeData) -> ForgetRequest:
        return random_request(data.y, self.fraction, data.seed)
