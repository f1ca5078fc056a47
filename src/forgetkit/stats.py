"""Two-sample statistics for "does the forget set look like unseen data?" (numpy/scipy only).

Everything here compares a *positive* sample (forget-set scores) with a *negative* sample
(held-out scores), where a higher score means "looks more familiar to the model". The AUC is the
probability that a random positive outscores a random negative (ties count one half): 0.5 means
indistinguishable, above 0.5 under-forgotten, below 0.5 over-forgotten. It is rank-based, so
true-class probability, loss and logit-scaled confidence give the same AUC.

This is the bottom layer: it imports neither torch nor any other forgetkit module, so the stop
rule (``forgetkit.unlearn``) and the audit (``forgetkit.metrics``) can both use it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _scipy_stats():
    """scipy.stats, imported on first use: it costs about a second, and ``import forgetkit`` needs none of it."""
    from scipy import stats

    return stats


def _sample(a, name: str) -> np.ndarray:
    """``a`` as a finite float64 1-D array with at least one entry."""
    x = np.asarray(a, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty: a two-sample statistic needs at least one value on each side")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return x


# --------------------------------------------------------------------------------------------
# AUC and its bootstrap


def _placements(pos: np.ndarray, neg_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each positive, the number of negatives strictly below it and below-or-equal to it."""
    return np.searchsorted(neg_sorted, pos, "left"), np.searchsorted(neg_sorted, pos, "right")


def auc(pos, neg) -> float:
    """P(pos > neg) + ½·P(pos = neg) over all pairs, in O((n+m) log m)."""
    p, n = _sample(pos, "pos"), _sample(neg, "neg")
    lo, hi = _placements(p, np.sort(n))
    return float((lo + hi).sum() / (2.0 * len(p) * len(n)))


BOOT_CHUNK = 64
"""bootstrap replicates drawn and evaluated together (bounds memory at BOOT_CHUNK × sample size)"""


def bootstrap_auc(pos, neg, *, n_boot: int = 500, seed: int = 0) -> np.ndarray:
    """AUC of ``n_boot`` bootstrap resamples (positives and negatives resampled separately).

    Replicates come in chunks of ``m = min(BOOT_CHUNK, left)``: each chunk draws
    ``rng.integers(0, n_pos, (m, n_pos))`` then ``rng.integers(0, n_neg, (m, n_neg))`` from
    ``numpy.random.default_rng(seed)``, row r being replicate r's resample. Instead of re-sorting
    each resample, the draws become counts: positives' counts weight each positive's placement among
    the negatives' counts accumulated along the sorted negatives, so a replicate costs
    O(n_pos + n_neg), vectorised over the chunk.
    """
    p, n = _sample(pos, "pos"), _sample(neg, "neg")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    n_p, n_n = len(p), len(n)
    order = np.argsort(n, kind="stable")
    lo, hi = _placements(p, n[order])
    rank_of = np.empty(n_n, dtype=np.int64)
    rank_of[order] = np.arange(n_n)
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for start in range(0, n_boot, BOOT_CHUNK):
        m = min(BOOT_CHUNK, n_boot - start)
        rows = np.arange(m)[:, None]
        w_pos = np.bincount((rng.integers(0, n_p, (m, n_p)) + rows * n_p).ravel(), minlength=m * n_p)
        drawn = rank_of[rng.integers(0, n_n, (m, n_n))] + rows * n_n
        cum = np.zeros((m, n_n + 1))  # cum[r, k]: resampled negatives among the k smallest
        np.cumsum(np.bincount(drawn.ravel(), minlength=m * n_n).reshape(m, n_n), axis=1, out=cum[:, 1:])
        out[start:start + m] = ((cum[:, lo] + cum[:, hi]) * w_pos.reshape(m, n_p)).sum(1) / (2.0 * n_p * n_n)
    return out


def percentile_ci(replicates, level: float = 0.95) -> tuple[float, float]:
    """Two-sided percentile interval of bootstrap replicates."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    r = _sample(replicates, "replicates")
    a = (1.0 - level) / 2.0
    return float(np.quantile(r, a)), float(np.quantile(r, 1.0 - a))


# --------------------------------------------------------------------------------------------
# rank tests


def mann_whitney_p(pos, neg) -> float:
    """Two-sided Mann–Whitney U p-value (scipy; exact for small untied samples; 1 when all tie)."""
    return float(_scipy_stats().mannwhitneyu(_sample(pos, "pos"), _sample(neg, "neg"), alternative="two-sided").pvalue)


def ks_p(pos, neg) -> float:
    """Two-sided two-sample Kolmogorov–Smirnov p-value (scipy): sensitive to shape, not only shift."""
    return float(_scipy_stats().ks_2samp(_sample(pos, "pos"), _sample(neg, "neg")).pvalue)


def null_auc_variance(pos, neg) -> float:
    """Variance of the AUC when both samples come from one distribution, with the tie correction.

    Var(U) = n·m/12 · ((N+1) − Σ(t³−t)/(N(N−1))), N = n+m, t = sizes of tied groups; AUC = U/(n·m).
    """
    p, n = _sample(pos, "pos"), _sample(neg, "neg")
    big_n = len(p) + len(n)
    _, t = np.unique(np.concatenate([p, n]), return_counts=True)
    t = t.astype(np.float64)
    var_u = len(p) * len(n) / 12.0 * ((big_n + 1) - (t ** 3 - t).sum() / (big_n * (big_n - 1)))
    return float(var_u / (len(p) * len(n)) ** 2)


def stratified_auc_test(aucs, null_variances, weights) -> tuple[float, float]:
    """(weighted AUC, two-sided p) for Σ w_c·AUC_c over independent strata (classes).

    A van Elteren-style stratified rank test: under "forget looks unseen in every class" the
    weighted AUC has mean 0.5 and variance Σ w_c²·Var0(AUC_c); normal approximation. Weights are
    normalised to sum to 1 (the audit uses forget-set class counts: a class-matched AUC).
    """
    a = _sample(aucs, "aucs")
    v = _sample(null_variances, "null_variances")
    w = _sample(weights, "weights")
    if not (len(a) == len(v) == len(w)):
        raise ValueError(f"aucs, null_variances and weights differ in length: {len(a)}, {len(v)}, {len(w)}")
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be non-negative with a positive sum")
    w = w / w.sum()
    est = float(w @ a)
    sd = float(np.sqrt(w ** 2 @ v))
    if sd == 0.0:
        return est, 1.0 if est == 0.5 else 0.0
    return est, float(2.0 * _scipy_stats().norm.sf(abs(est - 0.5) / sd))


def holm(pvalues) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values: reject where adjusted p < α keeps the family-wise rate ≤ α."""
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be 1-D, got shape {p.shape}")
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


# --------------------------------------------------------------------------------------------
# the verdict


@dataclass(frozen=True)
class Comparison:
    """One forget-vs-unseen comparison: AUC, its interval, tests and effect sizes."""

    n_pos: int
    n_neg: int
    auc: float
    ci_low: float
    ci_high: float
    p_mann_whitney: float
    p_ks: float
    null_variance: float
    replicates: np.ndarray = field(default=None, repr=False, compare=False)
    """the bootstrap AUCs behind the interval"""

    @property
    def cliffs_delta(self) -> float:
        """P(pos > neg) − P(pos < neg) = 2·AUC − 1: the effect size on a −1..1 scale."""
        return 2.0 * self.auc - 1.0


def compare(pos, neg, *, n_boot: int = 500, level: float = 0.95, seed: int = 0) -> Comparison:
    """AUC with a bootstrap percentile interval, Mann–Whitney and KS p-values."""
    p, n = _sample(pos, "pos"), _sample(neg, "neg")
    reps = bootstrap_auc(p, n, n_boot=n_boot, seed=seed)
    lo, hi = percentile_ci(reps, level)
    return Comparison(len(p), len(n), auc(p, n), lo, hi, mann_whitney_p(p, n), ks_p(p, n),
                      null_auc_variance(p, n), reps)


VERDICTS = ("under-forgotten", "faithful", "over-forgotten", "inconclusive", "too few samples", "mixed")
"""a comparison's verdicts; "mixed" only for an overall verdict (some classes under-, others over-forgotten)"""


def verdict(auc_value: float, ci: tuple[float, float], p_adjusted: float, *, alpha: float = 0.05,
            margin: float = 0.02, margin_below: float | None = None) -> str:
    """Direction of one comparison, never stronger than the data allow.

    under-/over-forgotten: the rank test rejects "looks unseen" at family-wise level ``alpha``
    AND the AUC is more than ``margin`` above (``margin_below``, default ``margin``, below) 0.5 (a
    difference too small to matter is not flagged). faithful: the interval lies inside
    [0.5 − margin_below, 0.5 + margin] (positive evidence of equivalence). Anything else: inconclusive.
    """
    below = margin if margin_below is None else margin_below
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    for name, m in (("margin", margin), ("margin_below", below)):
        if not 0.0 <= m < 0.5:
            raise ValueError(f"{name} must be in [0, 0.5), got {m}")
    if p_adjusted < alpha and auc_value > 0.5 + margin:
        return "under-forgotten"
    if p_adjusted < alpha and auc_value < 0.5 - below:
        return "over-forgotten"
    if 0.5 - below <= ci[0] and ci[1] <= 0.5 + margin:
        return "faithful"
    return "inconclusive"


def binomial_p_greater(k: int, n: int, rate: float) -> float:
    """One-sided P(X ≥ k) for X ~ Binomial(n, rate): is the observed share k/n above ``rate``?"""
    if n < 1 or not 0 <= k <= n or not 0.0 <= rate <= 1.0:
        raise ValueError(f"need 0 <= k <= n, n >= 1 and rate in [0, 1]; got k={k}, n={n}, rate={rate}")
    return float(_scipy_stats().binom.sf(k - 1, n, rate))


def share_upper_bound(k: int, n: int, level: float = 0.95) -> float:
    """One-sided Clopper–Pearson upper bound of a share k/n at confidence ``level``."""
    if n < 1 or not 0 <= k <= n or not 0.0 < level < 1.0:
        raise ValueError(f"need 0 <= k <= n, n >= 1 and level in (0, 1); got k={k}, n={n}, level={level}")
    return 1.0 if k == n else float(_scipy_stats().beta.ppf(level, k + 1, n - k))


def removed_class_verdict(upper: float, p_adjusted: float, *, alpha: float = 0.05, tolerance: float = 0.01,
                          prob_upper: float | None = None, prob_tolerance: float = 0.02) -> str:
    """Verdict for a class removed whole: a retrained model never predicts a class it never saw,
    and gives it hardly any probability.

    under-forgotten: the test(s) behind ``p_adjusted`` reject "forgotten" at family-wise level
    ``alpha`` (the share still predicted above ``tolerance``, or the mean probability of the class
    above ``prob_tolerance``); faithful: the share's upper bound is at most ``tolerance`` and, when
    given, the mean probability's upper bound ``prob_upper`` at most ``prob_tolerance``; otherwise
    inconclusive. (Predicting a removed class less than never is impossible, so there is no
    over-forgotten here.)
    """
    if p_adjusted < alpha:
        return "under-forgotten"
    ok = upper <= tolerance and (prob_upper is None or prob_upper <= prob_tolerance)
    return "faithful" if ok else "inconclusive"


def mean_above_test(x, value: float, level: float = 0.95) -> tuple[float, float]:
    """(one-sided p of "mean > value", one-sided upper ``level`` bound of the mean): Student t."""
    a = _sample(x, "x")
    if len(a) < 2:
        raise ValueError("mean_above_test needs at least two values")
    se = float(a.std(ddof=1) / np.sqrt(len(a)))
    m = float(a.mean())
    if se == 0.0:
        return (0.0 if m > value else 1.0), m
    t = _scipy_stats().t(len(a) - 1)
    return float(t.sf((m - value) / se)), float(m + t.ppf(level) * se)


# --------------------------------------------------------------------------------------------
# retrain-free membership score (LiRA-style, per-class Gaussians)


def gaussian_fit(x, *, min_std: float = 1e-6) -> tuple[float, float]:
    """(mean, std) of a sample, std floored so a constant sample stays usable."""
    a = _sample(x, "x")
    return float(a.mean()), float(max(a.std(ddof=1) if len(a) > 1 else 0.0, min_std))


def likelihood_ratio(stat, out_mean: float, out_std: float, in_mean: float | None = None,
                     in_std: float | None = None) -> np.ndarray:
    """Membership score of each statistic; higher = more member-like.

    With a member reference (``in_mean``/``in_std``): log N(s; μ_in, σ_in) − log N(s; μ_out, σ_out),
    LiRA's likelihood ratio with one Gaussian per class instead of per-example shadow models.
    Without it: −log P_out(S ≥ s), the one-sided test of offline LiRA against the non-members only.
    """
    s = _sample(stat, "stat")
    if in_mean is None:
        return -_scipy_stats().norm.logsf(s, out_mean, out_std)
    if in_std is None:
        raise ValueError("in_std is required when in_mean is given")
    return _scipy_stats().norm.logpdf(s, in_mean, in_std) - _scipy_stats().norm.logpdf(s, out_mean, out_std)


def tpr_at_fpr(pos_scores, neg_scores, fpr: float) -> float | None:
    """Largest fraction of positives caught by a threshold that flags at most ``fpr`` of negatives.

    Positive = score > threshold. None when there are fewer than 1/fpr negatives: such a low
    false-positive rate cannot be measured on that many.
    """
    p, n = _sample(pos_scores, "pos_scores"), _sample(neg_scores, "neg_scores")
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"fpr must be in (0, 1), got {fpr}")
    if len(n) * fpr < 1.0:
        return None
    k = int(np.floor(fpr * len(n)))  # negatives allowed above the threshold
    thr = np.sort(n)[::-1][k] if k < len(n) else -np.inf  # the (k+1)-th largest negative
    return float((p > thr).mean())


def matched_mean_difference(vf, yf, vh, yh, classes) -> tuple[float, float, float]:
    """(Σ_c w_c·(mean vf_c − mean vh_c), its variance's forget part, its held-out part), w_c the
    forget share of class c: a class-matched difference of means, e.g. of the true-class probability."""
    vf, yf, vh, yh = np.asarray(vf, float), np.asarray(yf), np.asarray(vh, float), np.asarray(yh)
    w = np.array([np.sum(yf == c) for c in classes], float)
    w /= w.sum()
    est, var_f, var_h = 0.0, 0.0, 0.0
    for wc, c in zip(w, classes):
        a, b = vf[yf == c], vh[yh == c]
        est += wc * (a.mean() - b.mean())
        var_f += wc ** 2 * (a.var(ddof=1) if len(a) > 1 else 0.0) / len(a)
        var_h += wc ** 2 * (b.var(ddof=1) if len(b) > 1 else 0.0) / len(b)
    return float(est), float(var_f), float(var_h)
