"""Long-tailed requests: class k (in a seeded order) gives ``N_k ∝ k^-γ`` of the forget set, with
water-filling (the FaLW paper's long-tailed forget sets: "Forgetting-Aware Loss Reweighting for
Long-Tailed Unlearning"), and the head/mid/tail grouping its metrics report."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import REQUEST_SHAPES, ForgetRequest, RequestShape, ShapeData


def longtail_counts(class_sizes, ratio: float, gamma: float, order, keep_one: bool = False) -> np.ndarray:
    """Per-class forget counts ``∝ k^-γ`` (k = rank in ``order``), capped by class size.

    Water-filling: excess above a class's cap is redistributed over unsaturated classes in
    proportion to ``k^-γ`` until nothing exceeds a cap; then floors are topped up by the largest
    fractional parts. ``keep_one`` caps at size-1 so no class is removed entirely.
    """
    sizes = np.asarray(class_sizes, dtype=np.int64)
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"forget ratio must be in (0, 1], got {ratio}")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    caps = (sizes - 1 if keep_one else sizes).astype(float)
    total = int(round(ratio * sizes.sum()))
    if total > caps.sum():
        raise ValueError(f"forget ratio {ratio} asks for {total} samples but only {int(caps.sum())} can be taken")
    if total == 0:
        raise ValueError(f"forget ratio {ratio} selects no sample")
    rank = np.empty(len(sizes))
    rank[np.asarray(order)] = np.arange(1, len(sizes) + 1)
    prio = rank ** (-float(gamma))
    alloc = np.zeros(len(sizes))
    free = np.ones(len(sizes), bool)
    remaining = float(total)
    while remaining > 1e-9 and free.any():
        share = remaining * prio * free / (prio * free).sum()
        over = free & (alloc + share >= caps)
        if not over.any():
            alloc += share
            break
        remaining -= (caps[over] - alloc[over]).sum()
        alloc[over] = caps[over]
        free &= ~over
    counts = np.floor(alloc + 1e-9).astype(np.int64)
    short = total - counts.sum()
    frac = np.where(counts < caps, alloc - counts, -1.0)
    for c in np.argsort(-frac, kind="stable")[:short]:
        counts[c] += 1
    return counts


def longtail_request(y, num_classes: int, ratio: float, gamma: float, seed: int,
                     natural_order: bool = False, keep_one: bool = False) -> ForgetRequest:
    """Long-tailed request: class k (in a seeded random order) gives ``∝ k^-γ`` of the forget set."""
    y = np.asarray(y)
    rng = np.random.RandomState(seed)
    sizes = np.bincount(y, minlength=num_classes)
    order = np.arange(num_classes) if natural_order else rng.permutation(num_classes)
    counts = longtail_counts(sizes, ratio, gamma, order, keep_one)
    picked = [rng.choice(np.flatnonzero(y == c), counts[c], replace=False) for c in range(num_classes) if counts[c]]
    idx = np.sort(np.concatenate(picked))
    return ForgetRequest(idx, f"longtail-r{ratio:g}-g{gamma:g}", "longtail")


@REQUEST_SHAPES.register("longtail")
@dataclass
class LongTail(RequestShape):
    """Class k (in a seeded random order) gives a share ∝ k^-γ of the forget set (FaLW's long tail)."""

    example = {"ratio": 0.3, "gamma": 1.0}

    ratio: float
    """forget ratio of the training set, in (0, 1]"""
    gamma: float
    """power-law exponent (0 = balanced), >= 0"""
    natural_order: bool = False
    """rank classes by index instead of a seeded permutation"""
    keep_one: bool = False
    """never remove a class entirely"""

    def __post_init__(self):
        if not 0.0 < self.ratio <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")

    def build(self, data: ShapeData) -> ForgetRequest:
        return longtail_request(data.y, data.num_classes, self.ratio, self.gamma, data.seed,
                                self.natural_order, self.keep_one)


def class_groups(forget_labels, num_classes: int, scheme: str = "thirds") -> dict[str, list[int]]:
    """Split classes present in the forget set into head / mid / tail by forget count.

    ``thirds``: sort by count and cut the cumulative sample mass at 1/3 and 2/3.
    ``oltr``: fixed thresholds >100 / 20–100 / <20 (Liu et al. 2019).
    """
    counts = np.bincount(np.asarray(forget_labels), minlength=num_classes)
    present = [c for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    groups: dict[str, list[int]] = {"head": [], "mid": [], "tail": []}
    if scheme == "oltr":
        for c in present:
            g = "head" if counts[c] > 100 else "mid" if counts[c] >= 20 else "tail"
            groups[g].append(int(c))
        return groups
    if scheme != "thirds":
        raise ValueError(f"unknown grouping scheme {scheme!r}; use 'thirds' or 'oltr'")
    total, cum = counts.sum(), 0
    for c in present:
        share_before = cum / total
        groups["head" if share_before < 1 / 3 else "mid" if share_before < 2 / 3 else "tail"].append(int(c))
        cum += counts[c]
    return groups
