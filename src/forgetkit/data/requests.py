"""Forget requests: which training indices a user asks the model to forget.

Four kinds, all seeded with their own ``RandomState`` so a request is identical on every machine:
random fraction, whole classes, mixed (some classes whole, others in part) and long-tailed (``N_k ∝ k^-γ`` with water-filling, the FaLW
paper's long-tailed forget sets: "Forgetting-Aware Loss Reweighting for Long-Tailed Unlearning").
Infeasible requests raise ``ValueError`` saying why.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ForgetRequest:
    """Indices into the training split to forget, with a name for reports."""

    indices: np.ndarray
    name: str
    kind: str  # "random" | "class" | "longtail" | "mixed" | "indices"
    classes: tuple[int, ...] = ()  # forgotten classes for class requests


def validate_indices(indices, n_train: int) -> np.ndarray:
    """Check user-supplied forget indices: integers, in range, unique, non-empty, not everything."""
    idx = np.asarray(indices)
    if idx.ndim != 1:
        raise ValueError(f"forget indices must be a 1-D list, got shape {idx.shape}")
    if idx.size == 0:
        raise ValueError("forget indices are empty: there is nothing to forget")
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"forget indices must be integers, got dtype {idx.dtype}")
    if idx.min() < 0 or idx.max() >= n_train:
        bad = idx[(idx < 0) | (idx >= n_train)][:5].tolist()
        raise ValueError(f"forget indices out of range [0, {n_train}): {bad}")
    uniq, counts = np.unique(idx, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"forget indices contain duplicates: {uniq[counts > 1][:5].tolist()}")
    if idx.size >= n_train:
        raise ValueError("forget indices cover the whole training set: nothing would be retained")
    return np.sort(idx.astype(np.int64))


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


def class_request(y, classes, num_classes: int) -> ForgetRequest:
    """Every training sample of the given classes."""
    classes = tuple(int(c) for c in np.atleast_1d(classes))
    if not classes:
        raise ValueError("class request names no class")
    for c in classes:
        if not 0 <= c < num_classes:
            raise ValueError(f"class {c} does not exist (dataset has classes 0..{num_classes - 1})")
    if len(set(classes)) == num_classes:
        raise ValueError("class request names every class: nothing would be retained")
    y = np.asarray(y)
    idx = np.flatnonzero(np.isin(y, classes))
    if idx.size == 0:
        raise ValueError(f"classes {classes} have no training samples")
    return ForgetRequest(idx, "class" + "-".join(map(str, classes)), "class", classes)


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
