"""The statistics of one model's scores: per-class and class-matched evidence, and the
retrain-free membership score."""
from __future__ import annotations

import numpy as np

from .. import stats
from .rules import PROB_TOLERANCE, combine
from .scores import loss, prob
from .types import Evidence, Membership, Side

def membership(phi_f, yf, phi_h, yh, classes, *, member_ref=None, seed: int = 0) -> Membership:
    """Retrain-free LiRA: per class, held-out scores give the non-member Gaussian and (optional)
    the original model's forget scores the member Gaussian; every sample is scored with Gaussians
    fitted on the other half of the data (2-fold cross-fitting), so held-out samples are not
    scored by a fit that saw them.
    """
    rng = np.random.default_rng(seed)
    pos, neg, excluded = [], [], 0
    for c in classes:
        f, h = np.flatnonzero(yf == c), np.flatnonzero(yh == c)
        if len(h) < 4 or (member_ref is not None and len(f) < 4):
            excluded += len(f)
            continue
        fold_f, fold_h = rng.permutation(len(f)) % 2, rng.permutation(len(h)) % 2
        for k in (0, 1):
            out_mean, out_std = stats.gaussian_fit(phi_h[h[fold_h != k]])
            ref = {}
            if member_ref is not None:
                ref = dict(zip(("in_mean", "in_std"), stats.gaussian_fit(member_ref[f[fold_f != k]])))
            neg.append(stats.likelihood_ratio(phi_h[h[fold_h == k]], out_mean, out_std, **ref))
            if (fold_f == k).any():
                pos.append(stats.likelihood_ratio(phi_f[f[fold_f == k]], out_mean, out_std, **ref))
    reference = "held-out" if member_ref is None else "held-out + original"
    if not pos:
        return Membership(reference, 0, int(sum(map(len, neg))), excluded, None, None, None)
    p, n = np.concatenate(pos), np.concatenate(neg)
    return Membership(reference, len(p), len(n), excluded, stats.auc(p, n),
                      stats.tpr_at_fpr(p, n, 0.01), stats.tpr_at_fpr(p, n, 0.001))


def _evidence(scope, cls, pf, cf, ph, ch, cmp: stats.Comparison, p_value, p_ks, p_adj, verdict, removed) -> Evidence:
    return Evidence(scope, cls, len(pf), len(ph), cmp.auc, cmp.ci_low, cmp.ci_high, p_value, p_ks, p_adj, float(prob(pf).mean()), float(prob(ph).mean()),
                    float(loss(pf).mean()), float(loss(ph).mean()),
                    100.0 * float(cf.mean()), 100.0 * float(ch.mean()), verdict, removed)



def compare_side(phi_f, cor_f, yf, phi_h, cor_h, yh, *, removed=(), member_ref=None, alpha: float = 0.05,
                 margin: float = 0.02, tolerance: float = 0.01, min_samples: int = 20, n_boot: int = 300,
                 seed: int = 0, removed_own=None, margin_below: float | None = None,
                 prob_tolerance: float = PROB_TOLERANCE, no_over=()) -> Side:
    """Per-class and overall evidence for one model's scores.

    A class kept in part is judged by its AUC; a class in ``removed`` (forgotten whole) by the
    share of its forget and held-out samples still predicted as it and by their mean probability
    of it (a retrained model never predicts a class it never saw and gives it hardly any
    probability: at most ``tolerance`` and ``prob_tolerance``; its AUC is still shown, as
    sample-level evidence). The overall
    AUC is class-matched over the partly kept classes (over all classes when every class is
    removed whole); the overall verdict combines it with the removed classes' verdicts.
    Classes with fewer than ``min_samples`` samples get "too few samples" and stay out of the Holm
    family; they still count in the overall AUC, weighted by forget count. Adjusted p-values:
    2 × Holm per class, 2 × p overall (α split in halves between the two). ``removed_own``: the
    model's own held-out (scores, correct?) for the removed-class rule (default ``phi_h, cor_h``;
    the target comparison passes them, since its held-out arrays are the original's). ``no_over``:
    classes where "over-forgotten" is not supported by the data (the target comparison's depleted
    classes): such a verdict becomes inconclusive, and so does an overall one unless the other
    classes kept in part are over-forgotten on their own (class-matched, same test).
    """
    own_phi_h, own_cor_h = (phi_h, cor_h) if removed_own is None else removed_own
    no_over = {int(c) for c in no_over}
    classes = np.unique(yf)
    removed = {int(c) for c in removed}
    level = 1.0 - alpha
    rows = []
    for c in classes:
        f, h = yf == c, yh == c
        cmp = stats.compare(phi_f[f], phi_h[h], n_boot=n_boot, level=level, seed=seed + int(c))
        whole = int(c) in removed
        if whole:
            k, n = int(cor_f[f].sum() + own_cor_h[h].sum()), int(f.sum() + h.sum())
            p_prob, prob_upper = stats.mean_above_test(prob(np.concatenate([phi_f[f], own_phi_h[h]])),
                                                       prob_tolerance, level)
            p = min(1.0, 2.0 * min(stats.binomial_p_greater(k, n, tolerance), p_prob))  # two tests, Bonferroni
            enough = n >= min_samples
        else:
            k = n = prob_upper = None
            p = cmp.p_mann_whitney
            enough = f.sum() >= min_samples and h.sum() >= min_samples
        rows.append({"c": int(c), "f": f, "h": h, "cmp": cmp, "whole": whole, "k": k, "n": n, "p": p, "enough": enough,
                     "prob_upper": prob_upper})
    kept = [r for r in rows if not r["whole"]] or rows
    weights = np.array([r["f"].sum() for r in kept], float)
    overall_auc, overall_p = stats.stratified_auc_test([r["cmp"].auc for r in kept],
                                                      [r["cmp"].null_variance for r in kept], weights)
    lo, hi = stats.percentile_ci((weights / weights.sum()) @ np.vstack([r["cmp"].replicates for r in kept]), level)
    f_all = np.isin(yf, [r["c"] for r in kept])
    h_all = np.isin(yh, [r["c"] for r in kept])
    has_kept = any(not r["whole"] for r in rows)
    overall_enough = has_kept and f_all.sum() >= min_samples and h_all.sum() >= min_samples
    # α is split: half for the overall test, half for the per-class family (Holm), so the overall
    # verdict is not diluted by ten class tests and the family-wise false-alarm rate stays ≤ α
    family = [r["p"] for r in rows if r["enough"]]
    adj = [min(1.0, 2.0 * float(q)) for q in stats.holm(family)] if family else []
    if overall_enough:
        adj.append(min(1.0, 2.0 * overall_p))
    evidence = []
    for r in rows:
        cmp = r["cmp"]
        if not r["enough"]:
            pa, v = None, "too few samples"
        elif r["whole"]:
            pa = float(adj.pop(0))
            v = stats.removed_class_verdict(stats.share_upper_bound(r["k"], r["n"], level), pa, alpha=alpha,
                                            tolerance=tolerance, prob_upper=r["prob_upper"],
                                            prob_tolerance=prob_tolerance)
        else:
            pa = float(adj.pop(0))
            v = stats.verdict(cmp.auc, (cmp.ci_low, cmp.ci_high), pa, alpha=alpha, margin=margin,
                              margin_below=margin_below)
            if v == "over-forgotten" and r["c"] in no_over:
                v = "inconclusive"
        own = r["whole"] and removed_own is not None
        evidence.append(_evidence(f"class {r['c']}", r["c"], phi_f[r["f"]], cor_f[r["f"]],
                                  (own_phi_h if own else phi_h)[r["h"]], (own_cor_h if own else cor_h)[r["h"]], cmp,
                                  r["p"], cmp.p_ks, pa, v, r["whole"]))
    if overall_enough:
        pa = float(adj.pop(0))
        v_auc = [stats.verdict(overall_auc, (lo, hi), pa, alpha=alpha, margin=margin, margin_below=margin_below)]
        if v_auc[0] == "over-forgotten" and any(r["c"] in no_over for r in kept):
            # "over" only if the classes where it can be supported say so on their own
            rest = [r for r in kept if r["c"] not in no_over and not r["whole"]]
            if not rest:
                v_auc = ["inconclusive"]
            else:
                w_rest = np.array([r["f"].sum() for r in rest], float)
                a_rest, p_rest = stats.stratified_auc_test([r["cmp"].auc for r in rest],
                                                           [r["cmp"].null_variance for r in rest], w_rest)
                ci_rest = stats.percentile_ci((w_rest / w_rest.sum()) @ np.vstack([r["cmp"].replicates for r in rest]),
                                              level)
                v_rest = stats.verdict(a_rest, ci_rest, min(1.0, 2.0 * p_rest), alpha=alpha, margin=margin,
                                       margin_below=margin_below)
                if v_rest != "over-forgotten":
                    v_auc = ["inconclusive"]
    else:
        pa, v_auc = None, (["too few samples"] if has_kept else [])
    v = combine(v_auc + [e.verdict for e in evidence if e.removed])
    ov = stats.Comparison(int(f_all.sum()), int(h_all.sum()), overall_auc, lo, hi, overall_p, float("nan"), float("nan"))
    overall = _evidence("overall", None, phi_f[f_all], cor_f[f_all], phi_h[h_all], cor_h[h_all], ov, overall_p,
                        None, pa, v, False)
    mem = membership(phi_f, yf, phi_h, yh, classes, member_ref=member_ref, seed=seed)
    return Side(evidence, overall, mem, v_auc[0] if v_auc else None)

