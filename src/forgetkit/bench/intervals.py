"""What "±" means in every report: the half-width of the two-sided 95 % Student-t interval of the
mean over seeds, and when a result is within seed noise of the best.

One definition, so the run report, the leaderboard and the influence report cannot drift apart
(a standard deviation and an interval half-width differ by a factor that depends on the number of
seeds, and a reader cannot tell which one a bare "±" is).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

LEVEL = 0.95
"""coverage of the intervals over seeds"""
ALPHA = 0.05
"""significance level of the paired tests against the best row"""
PLUS_MINUS = ("mean ± half-width of the 95 % Student-t interval of the mean over seeds; `(n<2)` where one "
              "seed gave no spread (no interval was measured)")
"""the sentence each report's header uses to say what "±" means"""
ONE_SEED = ("With one seed no spread was measured: the differences between methods below may be "
            "seed noise.")
"""the warning each report gives when every row has a single seed"""


def t_interval(values, level: float = LEVEL) -> tuple[float, float | None]:
    """(mean, half-width of the two-sided Student-t interval of the mean); no half-width (None)
    below two values, where the spread over seeds is unknown."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size == 0 or not np.isfinite(v).all():
        raise ValueError(f"t_interval needs a non-empty 1-D list of finite numbers, got {values!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if v.size < 2:
        return float(v[0]), None
    return float(v.mean()), float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))


def paired_p(a, b) -> float | None:
    """Two-sided paired t-test p of ``a`` against ``b`` (same seeds, same order); None below two
    pairs (no spread to test against); 1.0 when every pair is equal (the same numbers)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_p needs two 1-D samples of one length, got shapes {a.shape} and {b.shape}")
    if a.size < 2:
        return None
    if np.array_equal(a, b):
        return 1.0
    with warnings.catch_warnings():  # nearly equal differences: scipy warns, the p is still its answer
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_rel(a, b).pvalue)


def fmt_ci(values, digits: int = 2) -> str:
    """``mean ± half-width`` of the 95 % interval, ``mean (n<2)`` for one value, ``–`` for none;
    missing and non-finite values are skipped."""
    v = [float(x) for x in values if x is not None and np.isfinite(x)]
    if not v:
        return "–"
    mean, half = t_interval(v)
    return f"{mean:.{digits}f} (n<2)" if half is None else f"{mean:.{digits}f} ± {half:.{digits}f}"


def within_noise(best: dict[int, float], other: dict[int, float]) -> bool | None:
    """Whether ``other`` is within seed noise of ``best`` (seed → score, lower is better): on the
    seeds both share, the paired t-test does not tell them apart at :data:`ALPHA`, or — without
    shared seeds — their 95 % intervals overlap. None where no spread was measured (one seed each)."""
    shared = sorted(best.keys() & other.keys())
    if len(shared) >= 2:
        p = paired_p([other[s] for s in shared], [best[s] for s in shared])
        return p is None or p >= ALPHA
    if len(best) < 2 or len(other) < 2:
        return None
    (mb, hb), (mo, ho) = t_interval(list(best.values())), t_interval(list(other.values()))
    return mo - ho <= mb + hb
