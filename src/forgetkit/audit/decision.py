"""The verdict: does the model treat its forget set like its own unseen data of the same classes?

Why this comparison: a model retrained without the forget set never saw the forget samples nor
the held-out ones, so to it the two are exchangeable draws of each class, whatever its seed,
epochs, optimiser, batch size, data order or augmentation. Comparing the model's confidence on
forget samples with *its own* confidence on held-out samples of the same class therefore accuses an
honest retrain no more often than the chosen false-alarm rate, by construction: a model that is
merely surer (or less sure) of everything moves both groups together. The original model's view
and the retrain-free gap estimate stay in the report as context; they do not decide.

Three tests look at the difference from three sides, because memorisation lives in different
places: the **rank** test (stratified Mann–Whitney on the log-odds of the true class) sees a shift
of the bulk; the **correctness** test (Cochran–Mantel–Haenszel over classes on "predicted wrong")
sees an accuracy gap; the **tail** test (the same on "below the class's pooled lower quantile")
sees the hard samples a model memorised, which barely move a rank statistic. Holm's method
controls the family-wise false-alarm rate over the three tests, overall and per class (half of α
each). The direction of a flag is the sign of the class-matched difference in mean true-class
probability (forget − held-out): probabilities, unlike ranks, cannot be outvoted by log-odds that
exploded in both directions after gradient ascent. "Faithful" needs that difference and the
accuracy difference to lie within margins with confidence (equivalence); otherwise the difference
is "inconclusive", with the held-out count that would decide it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy.special import expit
from scipy.stats import norm

from .. import stats

TESTS = ("rank", "correctness", "tail")
TAIL_QUANTILE = 0.2
"""the tail test counts the samples of each class below this quantile of its pooled (forget +
held-out) log-odds: the hard samples, where memorisation shows"""
PROB_MARGIN = 0.03
"""equivalence margin on the class-matched mean true-class probability difference (forget − held-out)"""
ACC_MARGIN = 3.0
"""equivalence margin on the class-matched accuracy difference (points)"""
DAMAGE_POINTS = 10.0
"""held-out accuracy (class-matched over the forget set's classes kept in part) that the model must
have lost against the original, with confidence, to be called over-forgotten although its forget
and held-out samples look alike: damage that hits both, which a retrained model (on all but the
forget set) does not do"""
FLAGS = ("under-forgotten", "over-forgotten")


@dataclass(frozen=True)
class Decision:
    """The verdict on one scope (a class, or all classes kept in part, class-matched)."""

    scope: str
    cls: int | None
    verdict: str
    decided_by: str | None
    """the test whose adjusted p decided a flag ("rank", "correctness", "tail"), "equivalence" for
    faithful, "removed-class rule" for a class removed whole; None when nothing decided"""
    n_forget: int
    n_heldout: int
    prob_diff: tuple[float, float, float]
    """mean true-class probability, forget − held-out (estimate, interval low, high); the direction"""
    acc_diff: tuple[float, float, float]
    """accuracy forget − held-out in points (estimate, interval low, high)"""
    p_adjusted: dict
    """test → Holm-adjusted p (None when the scope is outside the family)"""
    heldout_change: tuple[float, float, float] | None = None
    """with the original: held-out accuracy of the model − the original's, same samples, in points
    (estimate, interval low, high); the damage test reads it"""
    heldout_needed: int | None = None
    """inconclusive only: held-out samples that would make the intervals narrow enough to decide
    at the same difference (None: more held-out data alone cannot, the forget set is too small or
    the difference sits at the margin)"""

    def to_dict(self) -> dict:
        return asdict(self)

    def deciding_interval(self) -> str:
        """The interval behind the verdict, in words, for one-line summaries."""
        p, a = self.prob_diff, self.acc_diff
        text = (f"mean p(true class) forget − held-out {p[0]:+.3f} [{p[1]:+.3f}, {p[2]:+.3f}], "
                f"accuracy {a[0]:+.1f} [{a[1]:+.1f}, {a[2]:+.1f}] points")
        if self.decided_by == "damage" and self.heldout_change is not None:
            h = self.heldout_change
            text += f"; held-out accuracy vs the original {h[0]:+.1f} [{h[1]:+.1f}, {h[2]:+.1f}] points"
        if self.decided_by in TESTS:
            text += f"; decided by the {self.decided_by} test (adjusted p {self.p_adjusted[self.decided_by]:.2g})"
        return text


def cmh_p(events_f, events_h, strata_f, strata_h) -> tuple[float, float]:
    """(two-sided p, z) of the Cochran–Mantel–Haenszel test that a binary event is as frequent in
    forget as in held-out samples within every stratum (class); z > 0: more frequent in forget."""
    num, var = 0.0, 0.0
    for c in np.unique(strata_f):
        ef, eh = events_f[strata_f == c], events_h[strata_h == c]
        n1, n0 = len(ef), len(eh)
        n, m = n1 + n0, float(ef.sum() + eh.sum())
        if n < 2 or n1 == 0 or n0 == 0:
            continue
        num += float(ef.sum()) - n1 * m / n
        var += n1 * n0 * m * (n - m) / (n * n * (n - 1))
    if var <= 0:
        return 1.0, 0.0
    z = num / math.sqrt(var)
    return float(2 * norm.sf(abs(z))), z


def _lower_tail(phi_f, yf, phi_h, yh) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: below its class's pooled :data:`TAIL_QUANTILE` of the log-odds?"""
    tf, th = np.zeros(len(phi_f), bool), np.zeros(len(phi_h), bool)
    for c in np.unique(yf):
        f, h = yf == c, yh == c
        cut = np.quantile(np.concatenate([phi_f[f], phi_h[h]]), TAIL_QUANTILE)
        tf[f], th[h] = phi_f[f] <= cut, phi_h[h] <= cut
    return tf, th


def _matched_diff(vf, yf, vh, yh, classes, z: float) -> tuple[tuple[float, float, float], float, float]:
    """Class-matched mean difference (forget − held-out, weights = forget counts) with its normal
    interval, and the two variance terms (forget part, held-out part) of the estimate."""
    est, var_f, var_h = stats.matched_mean_difference(vf, yf, vh, yh, classes)
    half = z * math.sqrt(var_f + var_h)
    return (est, est - half, est + half), var_f, var_h


def _paired_matched(diff, yd, yf, classes, z: float) -> tuple[float, float, float]:
    """Class-matched mean of per-sample differences (weights = forget counts) with its interval."""
    w = np.array([np.sum(yf == c) for c in classes], float)
    w /= w.sum()
    est = sum(wc * diff[yd == c].mean() for wc, c in zip(w, classes))
    var = sum(wc ** 2 * diff[yd == c].var(ddof=1) / np.sum(yd == c) for wc, c in zip(w, classes))
    half = z * math.sqrt(var)
    return float(est), float(est - half), float(est + half)


def _needed(est: float, var_f: float, var_h: float, margin: float, z: float, n_h: int) -> float | None:
    """Held-out samples that would put the interval inside ±margin at this estimate (None: impossible)."""
    room = (margin - abs(est)) / z
    if room <= 0 or room ** 2 <= var_f:
        return None
    return n_h * var_h / (room ** 2 - var_f) if var_h > 0 else float(n_h)


def _raw_tests(phi_f, cor_f, yf, phi_h, cor_h, yh, classes) -> dict[str, tuple[float, int]]:
    """test → (two-sided p, direction: +1 forget looks more familiar, −1 less, 0 none)."""
    aucs = [stats.auc(phi_f[yf == c], phi_h[yh == c]) for c in classes]
    nulls = [stats.null_auc_variance(phi_f[yf == c], phi_h[yh == c]) for c in classes]
    w = [np.sum(yf == c) for c in classes]
    auc, p_rank = stats.stratified_auc_test(aucs, nulls, w)
    keep_f, keep_h = np.isin(yf, classes), np.isin(yh, classes)
    p_cor, z_cor = cmh_p(~cor_f[keep_f], ~cor_h[keep_h], yf[keep_f], yh[keep_h])
    tf, th = _lower_tail(phi_f[keep_f], yf[keep_f], phi_h[keep_h], yh[keep_h])
    p_tail, z_tail = cmh_p(tf, th, yf[keep_f], yh[keep_h])
    return {"rank": (p_rank, int(np.sign(auc - 0.5))), "correctness": (p_cor, -int(np.sign(z_cor))),
            "tail": (p_tail, -int(np.sign(z_tail)))}


def _decide(scope, cls, phi_f, cor_f, yf, phi_h, cor_h, yh, classes, adjusted: dict | None, *, alpha: float,
            prob_margin: float, acc_margin: float) -> Decision:
    z = float(norm.ppf(1 - alpha / 2))
    keep_f, keep_h = np.isin(yf, classes), np.isin(yh, classes)
    pf, ph = expit(phi_f[keep_f]), expit(phi_h[keep_h])
    prob, pvf, pvh = _matched_diff(pf, yf[keep_f], ph, yh[keep_h], classes, z)
    acc, avf, avh = _matched_diff(100.0 * cor_f[keep_f], yf[keep_f], 100.0 * cor_h[keep_h], yh[keep_h], classes, z)
    n_f, n_h = int(keep_f.sum()), int(keep_h.sum())
    if adjusted is None:
        return Decision(scope, cls, "too few samples", None, n_f, n_h, prob, acc, {t: None for t in TESTS})
    hits = {t: p for t, p in adjusted.items() if p < alpha}
    if hits:
        direction = np.sign(prob[0]) or np.sign(acc[0])
        verdict = "inconclusive" if direction == 0 else ("under-forgotten" if direction > 0 else "over-forgotten")
        return Decision(scope, cls, verdict, min(hits, key=hits.get), n_f, n_h, prob, acc, adjusted)
    if -prob_margin < prob[1] and prob[2] < prob_margin and -acc_margin < acc[1] and acc[2] < acc_margin:
        return Decision(scope, cls, "faithful", "equivalence", n_f, n_h, prob, acc, adjusted)
    needs = [_needed(prob[0], pvf, pvh, prob_margin, z, n_h), _needed(acc[0], avf, avh, acc_margin, z, n_h)]
    need = None if None in needs else int(math.ceil(max(needs)))
    return Decision(scope, cls, "inconclusive", None, n_f, n_h, prob, acc, adjusted, heldout_needed=need)


def combine_verdicts(verdicts: list[str], both: str = "moved both ways") -> str:
    """One verdict from parts: both flags → ``both``, one flag wins, all faithful is faithful."""
    flags = [f for f in FLAGS if f in verdicts]
    if len(flags) == 2:
        return both
    if flags:
        return flags[0]
    if verdicts and all(v == "faithful" for v in verdicts):
        return "faithful"
    return "too few samples" if verdicts and all(v == "too few samples" for v in verdicts) else "inconclusive"


def decide(phi_f, cor_f, yf, phi_h, cor_h, yh, *, removed: dict[int, str] | None = None, alpha: float = 0.05,
           min_samples: int = 20, prob_margin: float = PROB_MARGIN, acc_margin: float = ACC_MARGIN,
           original_heldout_correct=None, damage_points: float = DAMAGE_POINTS) -> tuple[Decision, list[Decision]]:
    """(overall decision, per-class decisions) from one model's scores on forget and held-out samples.

    ``removed``: class → verdict of its own rule, for classes removed whole (a retrained model never
    predicts them; the comparison with held-out data does not apply). Classes with fewer than
    ``min_samples`` forget or held-out samples are "too few samples" and stay out of the per-class
    Holm family (the other classes are still audited); the overall, class-matched comparison pools
    every class kept in part with at least two samples on each side.
    """
    removed = {int(c): v for c, v in (removed or {}).items()}
    classes = [int(c) for c in np.unique(yf)]
    kept = [c for c in classes if c not in removed]
    enough = [c for c in kept if np.sum(yf == c) >= min_samples and np.sum(yh == c) >= min_samples]
    # the class-matched comparison pools every class kept in part with a few samples on each side
    pooled = [c for c in kept if np.sum(yf == c) >= 2 and np.sum(yh == c) >= 2]
    if sum(np.sum(yf == c) for c in pooled) < min_samples or sum(np.sum(yh == c) for c in pooled) < min_samples:
        pooled = []
    raw_class = {c: _raw_tests(phi_f, cor_f, yf, phi_h, cor_h, yh, [c]) for c in enough}
    raw_all = _raw_tests(phi_f, cor_f, yf, phi_h, cor_h, yh, pooled) if pooled else None
    # α in halves: the overall family and the per-class family, Holm within each
    adjusted = {}
    for family in ([("overall", t, raw_all[t][0]) for t in TESTS] if raw_all else [],
                   [(c, t, raw_class[c][t][0]) for c in enough for t in TESTS]):
        if family:
            for (who, t, _), q in zip(family, stats.holm([p for _, _, p in family])):
                adjusted.setdefault(who, {})[t] = min(1.0, 2.0 * float(q))
    opts = dict(alpha=alpha, prob_margin=prob_margin, acc_margin=acc_margin)
    per_class = []
    for c in classes:
        if c in removed:
            f, h = yf == c, yh == c
            zero = (float("nan"),) * 3
            acc = 100.0 * (float(cor_f[f].mean()) - float(cor_h[h].mean()))
            per_class.append(Decision(f"class {c}", c, removed[c], "removed-class rule", int(f.sum()), int(h.sum()),
                                      zero, (acc, float("nan"), float("nan")), {t: None for t in TESTS}))
        else:
            per_class.append(_decide(f"class {c}", c, phi_f, cor_f, yf, phi_h, cor_h, yh, [c], adjusted.get(c), **opts))
    if pooled:
        overall = _decide("overall", None, phi_f, cor_f, yf, phi_h, cor_h, yh, pooled, adjusted["overall"], **opts)
    else:
        nan3 = (float("nan"),) * 3
        overall = Decision("overall", None, "too few samples" if kept else "inconclusive", None, 0, 0, nan3, nan3,
                           {t: None for t in TESTS})
    if original_heldout_correct is not None and pooled:
        z = float(norm.ppf(1 - alpha / 2))
        keep = np.isin(yh, pooled)
        diff = 100.0 * (cor_h[keep].astype(float) - np.asarray(original_heldout_correct, bool)[keep])
        change = _paired_matched(diff, yh[keep], yf, pooled, z)
        overall = replace(overall, heldout_change=change)
        if change[2] < -damage_points:
            flagged = "moved both ways" if overall.verdict == "under-forgotten" else "over-forgotten"
            overall = replace(overall, verdict=flagged, decided_by="damage")
    parts = ([overall.verdict] if kept else []) + [d.verdict for d in per_class if d.verdict in FLAGS or d.cls in removed]
    verdict = combine_verdicts(parts)
    if verdict != overall.verdict:
        deciding = [d for d in per_class if d.verdict == verdict] if verdict in FLAGS else []
        overall = replace(overall, verdict=verdict,
                          decided_by=(f"class {deciding[0].cls}: {deciding[0].decided_by}" if deciding
                                      else "classes" if verdict == "moved both ways" else overall.decided_by))
    return overall, per_class
