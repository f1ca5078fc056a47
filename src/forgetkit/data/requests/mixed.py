"""Mixed requests: some classes whole, part of others."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import REQUEST_SHAPES, ForgetRequest, RequestShape, ShapeData


def mixed_request(y, num_classes: int, whole: int, partial: int, fraction: float, seed: int) -> ForgetRequest:
    """``whole`` classes forgotten entirely and ``fraction`` of each of ``partial`` other classes.

    The shape long-tailed requests at γ ≥ 1 already are (their head classes vanish, their tail
    classes stay), named and controlled on its own; classes are a seeded choice.
    """
    y = np.asarray(y)
    if whole + partial > num_classes - 1:
        raise ValueError(f"mixed request: whole ({whole}) + partial ({partial}) classes must leave at least one "
                         f"class untouched of {num_classes}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"mixed request: fraction must be in (0, 1), got {fraction}")
    rng = np.random.RandomState(seed)
    order = rng.permutation(num_classes)
    picked = [np.flatnonzero(y == c) for c in order[:whole]]
    for c in order[whole:whole + partial]:
        members = np.flatnonzero(y == c)
        k = int(round(fraction * len(members)))
        if k == 0 or k == len(members):
            raise ValueError(f"mixed request: fraction {fraction} of class {int(c)}'s {len(members)} samples "
                             "must take some but not all of them")
        picked.append(rng.choice(members, k, replace=False))
    idx = np.sort(np.concatenate(picked))
    return ForgetRequest(idx, f"mixed-w{whole}-p{partial}-f{fraction:g}", "mixed")


@REQUEST_SHAPES.register("mixed")
@dataclass
class Mixed(RequestShape):
    """Some classes forgotten whole and a fraction of some others (seeded choice of classes)."""

    example = {"whole": 1, "partial": 1, "fraction": 0.5}

    whole: int
    """how many classes are removed whole"""
    partial: int
    """how many other classes are forgotten in part"""
    fraction: float
    """share of each partly forgotten class, in (0, 1)"""

    def __post_init__(self):
        for name in ("whole", "partial"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {self.fraction}")

    def build(self, data: ShapeData) -> ForgetRequest:
        return mixed_request(data.y, data.num_classes, self.whole, self.partial, self.fraction, data.seed)
