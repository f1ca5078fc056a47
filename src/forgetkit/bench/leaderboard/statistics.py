"""The leaderboard's statistics: small pure functions, tested against slow references in
``tests/bench/test_leaderboard.py``. The interval and the paired test every report shares live in
:mod:`forgetkit.bench.intervals`."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from ..intervals import ALPHA, LEVEL, paired_p, t_interval

__all__ = ["ALPHA", "LEVEL", "average_ranks", "mean_ranks", "paired_p", "pareto_front", "t_interval"]


def average_ranks(scores: dict[str, float]) -> dict[str, float]:
    """Rank 1 = lowest score; tied scores share the mean of the ranks they span."""
    if any(not math.isfinite(s) for s in scores.values()):
        raise ValueError(f"average_ranks needs finite scores, got {scores!r}")
    labels = list(scores)
    ranks = stats.rankdata([scores[k] for k in labels], method="average") if labels else []
    return {k: float(r) for k, r in zip(labels, ranks)}


def pareto_front(points: dict[str, tuple[float, float]]) -> set[str]:
    """Labels whose (time, gap) no other point dominates (no worse in both, better in one).

    Sorted by time, a point is on the front when its gap is the lowest among points of its time and
    below every gap of a faster point."""
    front: set[str] = set()
    best = math.inf
    times = sorted({t for t, _ in points.values()})
    for t in times:
        group = {k: g for k, (tt, g) in points.items() if tt == t}
        low = min(group.values())
        if low < best:
            front |= {k for k, g in group.items() if g == low}
            best = low
    return front


def mean_ranks(per_shape: list[dict[str, float]]) -> dict[str, tuple[float, int]]:
    """label → (mean rank over the shapes it was ranked on, how many shapes)."""
    got: dict[str, list[float]] = {}
    for ranks in per_shape:
        for k, r in ranks.items():
            got.setdefault(k, []).append(r)
    return {k: (float(np.mean(v)), len(v)) for k, v in got.items()}
