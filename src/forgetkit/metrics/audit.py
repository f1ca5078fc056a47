"""The retrain-free deletion audit: does the forget set look like unseen data of its class?

FaLW's idea as evidence (FaLW, ICLR 2026, §4.1: a faithfully forgotten sample's confidence should be
indistinguishable from that of same-class data the model never saw). For every class of the forget
set, and overall, the audit compares the unlearned model's confidence on forget samples with its
confidence on held-out samples of the same class, and (the headline, with the original model) with
the original's confidence on them — a range that reaches down to where a model retrained on fewer
samples of the class would put it (:func:`retrain_shift`, :func:`bracket_verdict`). No retrained
model is needed.

The per-sample score is the log-odds of the true class, log p_y − log(1 − p_y), computed from the
logits in float64 (it does not saturate at p_y = 1 the way float32 probabilities do). Every
statistic is rank-based, so the probability and the loss would give the same numbers.

Memory: each model is run batch by batch and only two numbers per sample are kept (the score and
whether the prediction is right), so the audit never holds a copy of any model's full outputs.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from .. import stats
from ..data.base import Split, as_float

SCORE_NAME = "log-odds of the true class"
DEPLETED = 0.5
"""a class kept in part whose forget set holds more than this share of its training samples is
"depleted": the target comparison does not call it over-forgotten (retrained models sat at AUC
0.21 on a class that lost 91 % of its samples; docs/audit.md)"""
PROB_TOLERANCE = 0.02
"""a class removed whole is faithful only if its mean probability on its own images is at most this
(retrained models give a class they never saw 0.000–0.01; docs/audit.md)"""
TARGET_MARGIN = 0.02
"""AUC distance above 0.5 that the target comparison (model on forget vs original on held-out)
flags as under-forgotten"""
TARGET_MARGIN_BELOW = 0.10
"""AUC distance below 0.5 it flags as over-forgotten: wider, because a model retrained on less data
is less sure of unseen data than the original even where nothing is wrong (retrained models sat at
0.46–0.51 on the Fashion-MNIST grid of docs/audit.md and 0.37–0.51 on the MNIST-5k one; 0.05 flagged
38 % of the MNIST-5k Retrain requests, 0.10 flags 6 %)"""

RETRAIN_SLOPE = 1.25
"""learning-curve slope κ of :func:`retrain_shift`: the bottom of the target comparison's reference
range is the original on held-out samples of class c moved by κ·log(retained share of class c) in
log-odds, where a model retrained on fewer samples of the class would put them on small data.
Chosen on the MNIST-5k leaderboard's seed 0 alone (4,050 training images: a steep learning curve),
as the κ that puts its Retrain requests at target AUC 0.50 on average (0 gave 0.42, 1.0 0.49, 1.25
0.50, 1.5 0.52); measured on its other seeds and on Fashion-MNIST in docs/audit.md"""


def retrain_shift(forget_counts: dict, retain_counts: dict, slope: float = RETRAIN_SLOPE) -> dict[int, float]:
    """Per class kept in part, the log-odds by which a model retrained without the forget set is
    expected to be less sure of unseen samples of the class than the original: κ·log(r_c), r_c =
    retain_c / (retain_c + forget_c) its retained share of the class's training samples.

    Why: if a class's held-out error falls as a power of its training count, err ∝ n^−κ, the held-out
    log-odds (≈ −log err) rises by κ·log n, so retraining on r_c·n samples lowers it by κ·log(1/r_c).
    κ (the learning-curve exponent) is not known without training; its default was measured
    (docs/audit.md). Classes with no retain sample left (removed whole) get no entry: their own rule
    judges them. ``slope`` 0 turns the correction off (every shift 0).
    """
    if not isinstance(slope, (int, float)) or not np.isfinite(slope) or slope < 0:
        raise ValueError(f"retrain_slope must be a finite number >= 0, got {slope!r}")
    out = {}
    for c, f in forget_counts.items():
        f, r = int(f), int(retain_counts.get(c, 0))
        if f < 0 or r < 0:
            raise ValueError(f"class {c}: forget and retain counts must be >= 0, got {f} and {r}")
        if r > 0:
            out[int(c)] = float(slope) * float(np.log(r / (r + f)))
    return out


def as_split(data, name: str) -> Split:
    """A :class:`Split` from a Split or an ``(x, y)`` pair of tensors/arrays."""
    if isinstance(data, Split):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return Split(torch.as_tensor(np.asarray(data[0]) if not torch.is_tensor(data[0]) else data[0]),
                     torch.as_tensor(np.asarray(data[1]) if not torch.is_tensor(data[1]) else data[1]))
    raise ValueError(f"{name} must be a forgetkit Split or an (x, y) pair, got {type(data).__name__}")


# --------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class Evidence:
    """One forget-vs-unseen comparison (one class, or all classes class-matched)."""

    scope: str
    """"class 3" or "overall\""""
    cls: int | None
    n_forget: int
    n_heldout: int
    auc: float
    """P(forget sample looks more familiar than an unseen one of its class); 0.5 = indistinguishable"""
    ci_low: float
    ci_high: float
    p_value: float
    """per class: Mann–Whitney U (a class removed whole: one-sided binomial test of still predicting
    it more often than the tolerance); overall: the stratified rank test over classes"""
    p_ks: float | None
    """per class: two-sample Kolmogorov–Smirnov; None overall (classes mix)"""
    p_adjusted: float | None
    """per class 2 × Holm over the decided classes, overall 2 × p (α split in halves; the family-wise
    false-alarm rate stays ≤ α); None when the class has too few samples"""
    mean_prob_forget: float
    mean_prob_heldout: float
    mean_loss_forget: float
    mean_loss_heldout: float
    acc_forget: float
    acc_heldout: float
    verdict: str
    removed: bool = False
    """the class is forgotten whole: judged by how often the model still predicts it (acc_forget, acc_heldout)"""

    @property
    def cliffs_delta(self) -> float:
        """2·AUC − 1: the effect size on a −1..1 scale (0 = no difference)."""
        return 2.0 * self.auc - 1.0

    def to_dict(self) -> dict:
        return asdict(self) | {"cliffs_delta": self.cliffs_delta}


@dataclass(frozen=True)
class Membership:
    """The retrain-free membership attack: can a threshold on a likelihood ratio pick out forget samples?"""

    reference: str
    """"held-out" (non-members only) or "held-out + original" (original's outputs as members)"""
    n_members: int
    n_nonmembers: int
    n_excluded: int
    """forget samples of classes too small to fit the reference distributions"""
    auc: float | None
    tpr_at_1pct_fpr: float | None
    tpr_at_0_1pct_fpr: float | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Side:
    """Evidence about one model (the unlearned one, or the original for "before")."""

    per_class: list[Evidence]
    overall: Evidence
    membership: Membership
    kept_verdict: str | None = None
    """the verdict of the class-matched AUC over the classes kept in part alone (None when every
    class is removed whole); ``overall.verdict`` also folds in the classes removed whole"""

    def to_dict(self) -> dict:
        return {"overall": self.overall.to_dict(), "per_class": [e.to_dict() for e in self.per_class],
                "membership": self.membership.to_dict(), "kept_verdict": self.kept_verdict}


@dataclass
class AuditResult:
    """The audit of one deletion: after (the model under test) and, with ``original``, before."""

    num_classes: int
    after: Side
    before: Side | None
    accuracy: dict[str, dict[str, float]]
    """split → {"after": %, "before": %}; forget and held-out always, retain/test when given"""
    settings: dict
    seconds: float
    scores: dict[str, dict[str, np.ndarray]] = field(repr=False)
    """"after"/"before" → the per-sample arrays of :data:`SCORE_KEYS` (histograms, a run's store)"""
    target: Side | None = None
    """with ``original``: the forget samples under the model against held-out samples under the
    *original*, moved by :func:`retrain_shift` — is the model's confidence on them where a model
    that never saw them would put it? Its verdicts bracket the reference (:func:`bracket_verdict`)"""
    target_unmoved: Side | None = None
    """the same comparison against the original's held-out scores as they are (the top of the
    bracket); None when the reference was not moved"""

    @property
    def estimated_gap(self) -> float | None:
        """Retrain-free estimate of Avg. Gap without its MIA term (points): the mean of |FA − FA*|,
        |RA − RA before| and |TA − TA*|, where a retrained model is taken to have the original's
        held-out accuracy on forget samples of classes kept in part and 0 on classes removed whole
        (FA*), the original's retain accuracy, and the original's test accuracy with the removed
        classes counted wrong (TA*, ``accuracy["test"]["retrained estimate"]``; without it, TA before
        when no class is removed whole, else the TA term is left out). None without ``original``
        or retain accuracies."""
        a = self.accuracy
        if self.before is None or "before" not in a.get("retain", {}):
            return None
        n = np.array([e.n_forget for e in self.before.per_class], float)
        fa_star = float(n @ [0.0 if e.removed else e.acc_heldout for e in self.before.per_class] / n.sum())
        terms = [abs(a["forget"]["after"] - fa_star), abs(a["retain"]["after"] - a["retain"]["before"])]
        test = a.get("test", {})
        removed = any(e.removed for e in self.before.per_class)
        if "retrained estimate" in test:
            terms.append(abs(test["after"] - test["retrained estimate"]))
        elif "before" in test and not removed:
            terms.append(abs(test["after"] - test["before"]))
        return float(np.mean(terms))

    @property
    def verdict(self) -> str:
        """The headline: the target comparison's verdict when ``original`` was given (it agrees
        with Retrain-based directions, docs/audit.md), else the same-model comparison's."""
        return (self.target or self.after).overall.verdict

    @property
    def per_class(self) -> list[Evidence]:
        return self.after.per_class

    @property
    def overall(self) -> Evidence:
        return self.after.overall

    def counts(self) -> dict[int, int]:
        """Forget samples per class: what was asked."""
        return {e.cls: e.n_forget for e in self.after.per_class}

    def to_dict(self) -> dict:
        """JSON-ready: NaN as None, per-sample scores left out (for a run's store or audit.json)."""
        return jsonable({"verdict": self.verdict, "same_model_verdict": self.after.overall.verdict,
                "num_classes": self.num_classes, "after": self.after.to_dict(),
                "before": None if self.before is None else self.before.to_dict(),
                "target": None if self.target is None else self.target.to_dict(),
                "target_unmoved": None if self.target_unmoved is None else self.target_unmoved.to_dict(),
                "estimated_gap": self.estimated_gap, "accuracy": self.accuracy,
                "settings": self.settings, "seconds": self.seconds,
                "forget_counts": {str(k): v for k, v in self.counts().items()}})


def jsonable(o):
    """``o`` with NaN/inf as None and numpy scalars as Python numbers, so strict JSON accepts it."""
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


# --------------------------------------------------------------------------------------------
# model outputs → per-sample scores


@torch.no_grad()
def model_scores(model: nn.Module, split: Split, device: torch.device, num_classes: int | None,
                 batch_size: int = 1024, name: str = "model") -> tuple[np.ndarray, np.ndarray, int]:
    """(log-odds of the true class, correct?, output width) per sample, one batch of logits at a time.

    Float32 forward pass (no autocast): bf16 logits would tie many scores.
    """
    was_training = model.training
    model.eval()
    phi, correct = [], []
    width = num_classes
    try:
        for xb, yb in zip(split.x.split(batch_size), split.y.split(batch_size)):
            z = model(as_float(xb.to(device))).detach()
            if z.dim() != 2:
                raise ValueError(f"{name} must return a 2-D batch of logits, got shape {tuple(z.shape)}")
            if width is None:
                width = z.shape[1]
            if z.shape[1] != width:
                raise ValueError(f"{name} returns {z.shape[1]} outputs per sample but num_classes is {width}; "
                                 "pass the num_classes the model was built with")
            if int(yb.max()) >= width:
                raise ValueError(f"labels go up to {int(yb.max())} but {name} has only {width} outputs")
            z = z.double().cpu()
            yb = yb.cpu().view(-1, 1)
            own = z.gather(1, yb).squeeze(1)
            others = torch.logsumexp(z.scatter(1, yb, float("-inf")), 1)
            phi.append((own - others).numpy())
            correct.append((z.argmax(1) == yb.squeeze(1)).numpy())
    finally:
        model.train(was_training)
    return np.concatenate(phi), np.concatenate(correct), int(width)


def _prob(phi: np.ndarray) -> np.ndarray:
    return expit(phi)  # p_y = sigmoid(log-odds), without overflow for very negative scores


def _loss(phi: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, -phi)  # −log p_y = softplus(−φ)


# --------------------------------------------------------------------------------------------
# input checks (all before anything is computed)


def _row_hashes(x: torch.Tensor) -> list[bytes]:
    flat = x.detach().cpu().contiguous().reshape(len(x), -1).numpy()
    return [hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in flat]


def identical_rows(a: torch.Tensor, b: torch.Tensor) -> list[tuple[int, int]]:
    """(row in a, row in b) pairs whose features are byte-identical (same dtype and shape)."""
    if a.dtype != b.dtype or a.shape[1:] != b.shape[1:]:
        return []
    seen = {h: i for i, h in enumerate(_row_hashes(a))}
    return [(seen[h], j) for j, h in enumerate(_row_hashes(b)) if h in seen]


def check_inputs(forget: Split, heldout: Split, *, retain: Split | None = None, test: Split | None = None,
                 forget_indices=None, heldout_indices=None, check_duplicates: bool = True) -> None:
    """Every bad input the audit refuses, each a ValueError naming the problem."""
    if len(forget) == 0:
        raise ValueError("the forget set is empty: there is nothing to audit")
    if len(heldout) == 0:
        raise ValueError("the held-out set is empty: the audit needs unseen samples to compare against")
    for name, s in (("forget", forget), ("heldout", heldout), ("retain", retain), ("test", test)):
        if s is None:
            continue
        if s.y.dim() != 1:
            raise ValueError(f"{name} labels must be 1-D, got shape {tuple(s.y.shape)}")
        if len(s) and int(s.y.min()) < 0:
            raise ValueError(f"{name} has negative labels")
        if s.x.shape[1:] != forget.x.shape[1:]:
            raise ValueError(f"{name} samples have shape {tuple(s.x.shape[1:])} but forget samples have "
                             f"{tuple(forget.x.shape[1:])}: every split must have the model's input shape")
    missing = sorted(set(forget.y.tolist()) - set(heldout.y.tolist()))
    if missing:
        raise ValueError(f"the held-out set has no samples of forget class(es) {missing}: the audit compares "
                         "each forget class with unseen samples of the same class; add held-out samples of them")
    if (forget_indices is None) != (heldout_indices is None):
        raise ValueError("give both forget_indices and heldout_indices (indices into one training pool) or neither")
    if forget_indices is not None:
        fi, hi = np.asarray(forget_indices).ravel(), np.asarray(heldout_indices).ravel()
        if len(fi) != len(forget) or len(hi) != len(heldout):
            raise ValueError(f"forget_indices has {len(fi)} entries for {len(forget)} forget samples and "
                             f"heldout_indices {len(hi)} for {len(heldout)} held-out samples; they must match")
        both = np.intersect1d(fi, hi)
        if both.size:
            raise ValueError(f"forget and held-out indices overlap at {both.size} index(es), e.g. {both[:5].tolist()}: "
                             "a held-out sample must never have been trained on")
    if check_duplicates:
        same = identical_rows(forget.x, heldout.x)
        if same:
            raise ValueError(f"{len(same)} held-out sample(s) are identical to forget samples (e.g. forget row "
                             f"{same[0][0]} = held-out row {same[0][1]}): a held-out sample must never have been "
                             "trained on; pass check_duplicates=False only if these are truly distinct samples")


# --------------------------------------------------------------------------------------------
# the statistics of one model


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
    return Evidence(scope, cls, len(pf), len(ph), cmp.auc, cmp.ci_low, cmp.ci_high, p_value, p_ks, p_adj, float(_prob(pf).mean()), float(_prob(ph).mean()),
                    float(_loss(pf).mean()), float(_loss(ph).mean()),
                    100.0 * float(cf.mean()), 100.0 * float(ch.mean()), verdict, removed)


def _combine(verdicts: list[str]) -> str:
    """One verdict from several: any flag wins ("mixed" when some parts are under- and others
    over-forgotten), all faithful is faithful."""
    flags = [f for f in ("under-forgotten", "over-forgotten") if f in verdicts]
    if len(flags) == 2:
        return "mixed"
    if flags:
        return flags[0]
    if verdicts and all(v == "faithful" for v in verdicts):
        return "faithful"
    return "too few samples" if verdicts and all(v == "too few samples" for v in verdicts) else "inconclusive"


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
            p_prob, prob_upper = stats.mean_above_test(_prob(np.concatenate([phi_f[f], own_phi_h[h]])),
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
    v = _combine(v_auc + [e.verdict for e in evidence if e.removed])
    ov = stats.Comparison(int(f_all.sum()), int(h_all.sum()), overall_auc, lo, hi, overall_p, float("nan"), float("nan"))
    overall = _evidence("overall", None, phi_f[f_all], cor_f[f_all], phi_h[h_all], cor_h[h_all], ov, overall_p,
                        None, pa, v, False)
    mem = membership(phi_f, yf, phi_h, yh, classes, member_ref=member_ref, seed=seed)
    return Side(evidence, overall, mem, v_auc[0] if v_auc else None)


VERDICTS = ("under-forgotten", "faithful", "over-forgotten", "inconclusive", "too few samples")
"""the verdicts of one comparison of classes kept in part (overall ones may also be "mixed")"""


def bracket_verdict(unmoved: str, moved: str) -> str:
    """One verdict from the target comparison against both ends of the reference's range.

    A retrained model is at most as sure of unseen data as the original (the unmoved reference) and
    at least as sure as the moved one (:func:`retrain_shift`), so: under-forgotten only if so
    against the unmoved reference (more sure than even the original is of unseen data),
    over-forgotten only if so against the moved one (less sure than even a model retrained on a
    small pool), faithful only if faithful against both; else inconclusive.
    """
    known = set(VERDICTS)
    if unmoved not in known or moved not in known:
        raise ValueError(f"verdicts must be among {sorted(known)}, got {unmoved!r} and {moved!r}")
    if "too few samples" in (unmoved, moved):
        return "too few samples"
    if unmoved == "under-forgotten":
        return "under-forgotten"
    if moved == "over-forgotten":
        return "over-forgotten"
    return "faithful" if unmoved == moved == "faithful" else "inconclusive"


def bracket_side(moved: Side, unmoved: Side) -> Side:
    """``moved``'s evidence with each verdict of a class kept in part, and the class-matched one,
    replaced by :func:`bracket_verdict` of the two; classes removed whole keep theirs (the
    reference does not enter their rule)."""
    per_class = [e if e.removed else replace(e, verdict=bracket_verdict(u.verdict, e.verdict))
                 for e, u in zip(moved.per_class, unmoved.per_class, strict=True)]
    if moved.kept_verdict is None:
        return replace(moved, per_class=per_class)
    kept = bracket_verdict(unmoved.kept_verdict, moved.kept_verdict)
    overall = replace(moved.overall, verdict=_combine([kept] + [e.verdict for e in per_class if e.removed]))
    return Side(per_class, overall, moved.membership, kept)


# --------------------------------------------------------------------------------------------
# the meter


def audit(model: nn.Module, forget, heldout, *, original: nn.Module | None = None, retain=None, test=None,
          num_classes: int | None = None, device: str | torch.device = "cpu", forget_indices=None,
          heldout_indices=None, forget_classes=(), check_duplicates: bool = True, alpha: float = 0.05,
          margin: float = 0.02, target_margin: float = TARGET_MARGIN, target_margin_below: float = TARGET_MARGIN_BELOW,
          retrain_slope: float = RETRAIN_SLOPE, tolerance: float = 0.01, min_samples: int = 20, n_boot: int = 300,
          seed: int = 0, batch_size: int = 1024, retain_accuracy: dict | None = None) -> AuditResult:
    """Audit a deletion without retraining: does ``forget`` look like ``heldout`` to ``model``?

    ``forget``/``heldout``/``retain``/``test``: :class:`Split` or ``(x, y)`` pairs; ``heldout`` must
    never have been trained on (give ``forget_indices``/``heldout_indices`` into one training pool
    to have that checked; identical samples are always refused unless ``check_duplicates=False``).
    ``original``: the model before unlearning, for the "before" column and as the member reference
    of the membership score. ``alpha``: family-wise false-alarm rate over the overall test and all
    classes (half each; Holm within the classes) and the interval level (1 − alpha). ``margin``: AUC
    distance from 0.5 below which a difference is not worth flagging, and within which the interval must lie for "faithful". ``forget_classes``:
    classes removed whole (every training sample of them is in ``forget``); a retrained model never
    predicts them, so they are judged by how often the model still does, against ``tolerance``.
    With ``retain``, every forget class absent from it is removed whole too (the head classes of a
    steep long-tailed request, the whole part of a mixed one).
    ``min_samples``: forget and held-out samples a class needs for a verdict. ``n_boot``: bootstrap
    resamples per class. ``retrain_slope``: κ of :func:`retrain_shift`, the correction of the
    target comparison's reference for a retrained model's lower confidence (needs ``retain``).
    ``retain_accuracy``: {"after"/"before": accuracy in %} on ``retain`` already measured (a
    benchmark row has them): the report shows these and that model is not run over the retain set
    again (the largest split; the audit's budget is 10 % of the run it checks).
    """
    start = time.perf_counter()
    known = dict(retain_accuracy or {})
    if set(known) - {"after", "before"}:
        raise ValueError(f"retain_accuracy: unknown sides {sorted(set(known) - {'after', 'before'})}; "
                         "give {'after': %, 'before': %}")
    forget, heldout = as_split(forget, "forget"), as_split(heldout, "heldout")
    retain = None if retain is None else as_split(retain, "retain")
    test = None if test is None else as_split(test, "test")
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch nn.Module, got {type(model).__name__}")
    if original is not None and not isinstance(original, nn.Module):
        raise ValueError(f"original must be a torch nn.Module or None, got {type(original).__name__}")
    if min_samples < 2 or n_boot < 1:
        raise ValueError(f"min_samples must be >= 2 and n_boot >= 1, got {min_samples} and {n_boot}")
    stats.verdict(0.5, (0.5, 0.5), 1.0, alpha=alpha, margin=margin)  # validates the margins
    stats.verdict(0.5, (0.5, 0.5), 1.0, alpha=alpha, margin=target_margin, margin_below=target_margin_below)
    check_inputs(forget, heldout, retain=retain, test=test, forget_indices=forget_indices,
                 heldout_indices=heldout_indices, check_duplicates=check_duplicates)
    removed = {int(c) for c in np.atleast_1d(np.asarray(forget_classes, dtype=np.int64))}
    absent = sorted(removed - set(forget.y.tolist()))
    if absent:
        raise ValueError(f"forget_classes {absent} have no samples in the forget set; a class removed whole "
                         "must have all its training samples there")
    if retain is not None:  # a class with no sample left to train on is removed whole, whatever the request's kind
        removed |= set(forget.y.tolist()) - set(retain.y.tolist())
    removed = sorted(removed)
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
    dev = torch.device(device)
    heldout = heldout.subset(np.flatnonzero(np.isin(heldout.y.numpy(), np.unique(forget.y.numpy()))))

    models = {"after": model} | ({"before": original} if original is not None else {})
    names = {"after": "model", "before": "original"}
    raw, extra_accuracy = {}, {}
    yf, yh = forget.y.numpy(), heldout.y.numpy()
    for side, m in models.items():
        m.to(dev)
        phi_f, cor_f, num_classes = model_scores(m, forget, dev, num_classes, batch_size, names[side])
        phi_h, cor_h, _ = model_scores(m, heldout, dev, num_classes, batch_size, names[side])
        raw[side] = {"forget": phi_f, "forget_correct": cor_f, "heldout": phi_h, "heldout_correct": cor_h,
                     "forget_y": yf, "heldout_y": yh}
        for split_name, s in (("retain", retain), ("test", test)):
            if split_name == "retain" and side in known:
                extra_accuracy.setdefault("retain", {})[side] = float(known[side])
            elif s is not None and len(s):
                ok = model_scores(m, s, dev, num_classes, batch_size, names[side])[1]
                extra_accuracy.setdefault(split_name, {})[side] = 100.0 * float(ok.mean())
                if split_name == "test" and side == "before":  # right where the original is, never on a removed class
                    kept = ~np.isin(s.y.numpy(), sorted(removed))
                    extra_accuracy["test"]["retrained estimate"] = 100.0 * float((ok & kept).mean())
    result = audit_scores(raw["after"], raw.get("before"), num_classes=num_classes, forget_classes=removed,
                          accuracy=extra_accuracy, alpha=alpha, margin=margin, target_margin=target_margin,
                          target_margin_below=target_margin_below, retrain_slope=retrain_slope,
                          retain_counts=None if retain is None else
                          {int(c): int(n) for c, n in zip(*np.unique(retain.y.numpy(), return_counts=True))},
                          tolerance=tolerance, min_samples=min_samples, n_boot=n_boot, seed=seed)
    result.settings["device"] = str(dev)
    result.seconds = time.perf_counter() - start
    return result


SCORE_KEYS = ("forget", "forget_correct", "forget_y", "heldout", "heldout_correct", "heldout_y")
"""the per-sample arrays of one model that the audit's statistics need"""


def audit_scores(after: dict, before: dict | None = None, *, num_classes: int, forget_classes=(),
                 accuracy: dict | None = None, alpha: float = 0.05, margin: float = 0.02,
                 target_margin: float = TARGET_MARGIN, target_margin_below: float = TARGET_MARGIN_BELOW,
                 retrain_slope: float = RETRAIN_SLOPE, tolerance: float = 0.01, min_samples: int = 20,
                 n_boot: int = 300, seed: int = 0, retain_counts: dict | None = None) -> AuditResult:
    """The audit from per-sample arrays instead of models (``forgetkit audit RUN_DIR`` re-audits a
    finished run's rows this way, from the scores its store keeps).

    ``after``/``before``: dicts with :data:`SCORE_KEYS` — the log-odds of the true class, whether
    the prediction is right, and the labels, for forget and held-out samples under the model (after)
    and the original (before, optional; same samples in the same order). ``accuracy``: further
    split → {"after"/"before": %} rows for the report (retain, test). ``retain_counts``: class →
    retain samples; a class whose forget share of its training samples is above
    :data:`DEPLETED` cannot be called over-forgotten by the target comparison (a model retrained
    on what is left of it is less sure of it too), and the target comparison's reference of each
    class kept in part is moved by :func:`retrain_shift` (``retrain_slope``; without
    ``retain_counts`` it is not moved). Other options as :func:`audit`.
    """
    start = time.perf_counter()
    stats.verdict(0.5, (0.5, 0.5), 1.0, alpha=alpha, margin=margin)  # validates alpha and margin
    stats.verdict(0.5, (0.5, 0.5), 1.0, alpha=alpha, margin=target_margin, margin_below=target_margin_below)
    if min_samples < 2 or n_boot < 1:
        raise ValueError(f"min_samples must be >= 2 and n_boot >= 1, got {min_samples} and {n_boot}")
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
    retrain_shift({}, {}, retrain_slope)  # validates the slope
    raw = {"after": _score_arrays(after, "after")}
    if before is not None:
        raw["before"] = _score_arrays(before, "before")
        for k in ("forget_y", "heldout_y"):
            if not np.array_equal(raw["before"][k], raw["after"][k]):
                raise ValueError(f"before and after scores are not of the same samples ({k} differ)")
    yf, yh = raw["after"]["forget_y"], raw["after"]["heldout_y"]
    if len(yf) == 0 or len(yh) == 0:
        raise ValueError("the forget or held-out scores are empty: there is nothing to audit")
    missing = sorted(set(yf.tolist()) - set(yh.tolist()))
    if missing:
        raise ValueError(f"the held-out scores have no samples of forget class(es) {missing}")
    if max(int(yf.max()), int(yh.max())) >= num_classes:
        raise ValueError(f"labels go up to {max(int(yf.max()), int(yh.max()))} but num_classes is {num_classes}")
    removed = {int(c) for c in np.atleast_1d(np.asarray(forget_classes, dtype=np.int64))}
    absent = sorted(removed - set(yf.tolist()))
    if absent:
        raise ValueError(f"forget_classes {absent} have no samples in the forget set; a class removed whole "
                         "must have all its training samples there")
    if retain_counts is not None:  # nothing left to train on: removed whole
        removed |= {int(c) for c in np.unique(yf) if not int(retain_counts.get(int(c), 0))}
    removed = sorted(removed)
    accuracy = {"forget": {}, "heldout": {}} | {k: dict(v) for k, v in (accuracy or {}).items()}
    for side, r in raw.items():
        accuracy["forget"][side] = 100.0 * float(r["forget_correct"].mean())
        accuracy["heldout"][side] = 100.0 * float(r["heldout_correct"].mean())
    member_ref = raw["before"]["forget"] if before is not None else None
    kw = dict(alpha=alpha, margin=margin, tolerance=tolerance, min_samples=min_samples, n_boot=n_boot, seed=seed)
    sides = {s: compare_side(r["forget"], r["forget_correct"], yf, r["heldout"], r["heldout_correct"], yh,
                             removed=removed, member_ref=member_ref, **kw) for s, r in raw.items()}
    target, unmoved, depleted, shift = None, None, [], None
    if before is not None:
        a, b = raw["after"], raw["before"]
        rc = {int(k): int(v) for k, v in (retain_counts or {}).items()}
        depleted = [int(c) for c in np.unique(yf) if int(c) not in removed
                    and np.sum(yf == c) > DEPLETED * (np.sum(yf == c) + rc.get(int(c), 0))] if retain_counts else []
        offset = np.zeros(len(yh))
        if retain_counts is not None:
            shift = retrain_shift({int(c): int(np.sum(yf == c)) for c in np.unique(yf) if int(c) not in removed},
                                  rc, retrain_slope)
            for c, d in shift.items():
                offset[yh == c] = d
        kw_t = dict(no_over=depleted, removed=removed, removed_own=(a["heldout"], a["heldout_correct"]),
                    margin_below=target_margin_below, **(kw | {"margin": target_margin}))
        target = compare_side(a["forget"], a["forget_correct"], yf, b["heldout"] + offset, b["heldout_correct"], yh,
                              **kw_t)
        if offset.any():  # the reference is known within [moved, unmoved]: verdicts must hold at both ends
            unmoved = compare_side(a["forget"], a["forget_correct"], yf, b["heldout"], b["heldout_correct"], yh, **kw_t)
            target = bracket_side(target, unmoved)
    settings = kw | {"interval_level": 1.0 - alpha, "score": SCORE_NAME, "forget_classes": removed,
                     "target_margin": target_margin, "target_margin_below": target_margin_below,
                     "retrain_slope": retrain_slope,
                     "reference_shift": None if shift is None else {str(c): d for c, d in shift.items()},
                     "prob_tolerance": PROB_TOLERANCE,
                     "retain_counts": None if retain_counts is None else {str(k): int(v) for k, v in retain_counts.items()},
                     "depleted_classes": depleted if before is not None else []}
    return AuditResult(num_classes, sides["after"], sides.get("before"), accuracy, settings,
                       time.perf_counter() - start, raw, target, unmoved)


def _score_arrays(d: dict, name: str) -> dict:
    missing = [k for k in SCORE_KEYS if k not in d]
    if missing:
        raise ValueError(f"{name} scores lack {missing}; they need {list(SCORE_KEYS)}")
    out = {k: np.asarray(d[k]).ravel() for k in SCORE_KEYS}
    out["forget"], out["heldout"] = out["forget"].astype(np.float64), out["heldout"].astype(np.float64)
    for k in ("forget_correct", "heldout_correct"):
        out[k] = out[k].astype(bool)
    for k in ("forget_y", "heldout_y"):
        out[k] = out[k].astype(np.int64)
    for part in ("forget", "heldout"):
        n = {len(out[k]) for k in SCORE_KEYS if k.startswith(part)}
        if len(n) != 1:
            raise ValueError(f"{name} {part} arrays differ in length: {sorted(n)}")
        if not np.isfinite(out[part]).all():
            raise ValueError(f"{name} {part} scores contain NaN or inf")
    return out


# --------------------------------------------------------------------------------------------
# per-sample scores in a run's store (compact: float32 scores, int16 labels, packed bits, base64)

ENCODING = "base64 little-endian: forget/heldout float32, *_y int16, *_correct numpy.packbits"


def encode_scores(scores: dict) -> dict:
    """JSON-ready compact form of one model's :data:`SCORE_KEYS` arrays (about 5.5 bytes a sample)."""
    d = _score_arrays(scores, "scores")
    if max(int(d["forget_y"].max(initial=0)), int(d["heldout_y"].max(initial=0))) > np.iinfo(np.int16).max:
        raise ValueError("labels above 32767 cannot be stored as int16")
    b64 = lambda a: base64.b64encode(a.tobytes()).decode("ascii")  # noqa: E731
    out = {"encoding": ENCODING, "n_forget": len(d["forget_y"]), "n_heldout": len(d["heldout_y"])}
    for part in ("forget", "heldout"):
        out[part] = b64(d[part].astype("<f4"))
        out[f"{part}_y"] = b64(d[f"{part}_y"].astype("<i2"))
        out[f"{part}_correct"] = b64(np.packbits(d[f"{part}_correct"]))
    return out


def decode_scores(stored: dict) -> dict:
    """The arrays :func:`encode_scores` stored; a foreign or damaged entry is a ValueError."""
    if not isinstance(stored, dict) or stored.get("encoding") != ENCODING:
        raise ValueError("stored audit scores are not in the expected encoding "
                         f"({ENCODING!r}); re-run the rows with this version of forgetkit")
    try:
        out = {}
        for part in ("forget", "heldout"):
            n = int(stored[f"n_{part}"])
            raw = lambda k: base64.b64decode(stored[k], validate=True)  # noqa: E731
            out[part] = np.frombuffer(raw(part), "<f4").astype(np.float64)
            out[f"{part}_y"] = np.frombuffer(raw(f"{part}_y"), "<i2").astype(np.int64)
            out[f"{part}_correct"] = np.unpackbits(np.frombuffer(raw(f"{part}_correct"), np.uint8), count=n).astype(bool)
    except (KeyError, ValueError, TypeError, binascii.Error) as e:
        raise ValueError(f"stored audit scores are damaged ({type(e).__name__}: {e})") from None
    return _score_arrays(out, "stored")
