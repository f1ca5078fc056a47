"""Evaluation attacks as small pure functions of model outputs.

Every function takes logits / probabilities / statistics (numpy arrays or torch tensors) and
labels, never a model, so that the code that runs models stays separate and every attack can be
tested on constructed outputs. Constants of the reference implementations are keyword arguments
with the reference value as default.

Sources, by the tags used below:
[SalUn] MIA-Efficacy — Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight
  Saliency", ICLR 2024; `OPTML-Group/Unlearn-Saliency` `Classification/evaluation/SVC_MIA.py`.
[Kodge] SVM-MIA — Kodge, Saha & Roy, "Deep Unlearning: Fast and Efficient Gradient-free Class
  Forgetting", TMLR 2024; `sangamesh-kodge/class_forgetting` `main.py`.
[MIA-NN] "On the Necessity of Output Distribution Reweighting for Effective Class Unlearning", §3.3.
[LiRA] Carlini et al., "Membership Inference Attacks From First Principles", IEEE S&P 2022.
[U-LiRA] Hayes et al., "Inexact Unlearning Needs More Careful Evaluations to Avoid a False Sense
  of Privacy", as run by the TRW paper (§5.2) and Kodge's `main.py`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.special import log_softmax, logsumexp, softmax

# --------------------------------------------------------------------------------------------
# input handling


def _array(x, name: str, ndim: int | tuple[int, ...], *, allow_nan: bool = False) -> np.ndarray:
    """``x`` as a float64 numpy array of the given rank, non-empty and finite (or NaN if allowed)."""
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    ranks = (ndim,) if isinstance(ndim, int) else ndim
    if a.ndim not in ranks:
        raise ValueError(f"{name} must have {' or '.join(map(str, ranks))} dimension(s), got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    bad = np.isinf(a) if allow_nan else ~np.isfinite(a)
    if bad.any():
        raise ValueError(f"{name} contains {'inf' if allow_nan else 'non-finite'} values")
    return a


def _labels(y, name: str, n: int, n_classes: int) -> np.ndarray:
    """``y`` as an int array of length ``n`` with values in [0, n_classes)."""
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    a = np.asarray(y)
    if a.ndim != 1 or len(a) != n:
        raise ValueError(f"{name} must be 1-D with {n} entries (one per row of the outputs), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class labels, got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() >= n_classes):
        raise ValueError(f"{name} has labels outside [0, {n_classes})")
    return a.astype(np.int64)


def _outputs(logits, y, name: str) -> tuple[np.ndarray, np.ndarray]:
    z = _array(logits, name, 2)
    if z.shape[1] < 2:
        raise ValueError(f"{name} needs at least 2 classes, got {z.shape[1]}")
    return z, _labels(y, "y", len(z), z.shape[1])


# --------------------------------------------------------------------------------------------
# per-example statistics


def true_class_prob(logits, y) -> np.ndarray:
    """p_y = softmax(logits)[y], float64, shape (N,): the "confidence" feature of [SalUn, Kodge].

    Log-probabilities work as input too (softmax is shift-invariant), which covers models that
    return log-softmax as in Kodge's code ([Kodge]).
    """
    z, y = _outputs(logits, y, "logits")
    return softmax(z, axis=1)[np.arange(len(y)), y]


def logit_confidence(probs_or_logits, y, *, from_probs: bool = False, tiny: float = 1e-45) -> np.ndarray:
    """LiRA's logit-scaled confidence phi = log(p_y / (1 - p_y)), shape (N,) ([LiRA]).

    Computed as log p_y - logsumexp_{j != y} log p_j in float64, which stays exact where p_y
    rounds to 1 (Carlini et al. instead add 1e-45 inside both logs). With ``from_probs`` the
    input is probabilities; they are floored at ``tiny`` before the log, which only matters for
    exact zeros. For U-LiRA as TRW ran it ([U-LiRA]: probability of the forget class) pass the
    forget class as ``y``.
    """
    a, y = _outputs(probs_or_logits, y, "probs_or_logits")
    logp = log_softmax(np.log(np.maximum(a, tiny)) if from_probs else a, axis=1)
    rows = np.arange(len(y))
    own = logp[rows, y]
    logp[rows, y] = -np.inf
    return own - logsumexp(logp, axis=1)


# --------------------------------------------------------------------------------------------
# SVM confidence attacks ([SalUn], [Kodge])


def _svc_nonmember_rate(members, nonmembers, target, *, C, gamma, kernel, names) -> float:
    """Fit SVC on 1-D features (members -> 1, non-members -> 0); fraction of target predicted 0."""
    from sklearn.svm import SVC

    pos = _array(members, names[0], 1)
    neg = _array(nonmembers, names[1], 1)
    tgt = _array(target, names[2], 1)
    x = np.concatenate([pos, neg])[:, None]
    labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    clf = SVC(C=C, gamma=gamma, kernel=kernel).fit(x, labels)
    return float(1.0 - clf.predict(tgt[:, None]).mean())


def mia_efficacy_sets(n_retain: int, n_test: int) -> np.ndarray:
    """Indices into D_r of SalUn's shadow_train set: the FIRST |D_test| retain samples ([SalUn] step 2).

    Deterministic, in dataset order (not a random sample). For class-wise forgetting ``n_test``
    is the size of the test set without the forget class.
    """
    if n_test <= 0:
        raise ValueError(f"n_test must be positive, got {n_test}")
    if n_test > n_retain:
        raise ValueError(f"shadow_train needs n_test={n_test} retain samples but n_retain={n_retain}")
    return np.arange(n_test)


def mia_efficacy(conf_shadow_train, conf_shadow_test, conf_target, *, C: float = 3.0,
                 gamma: str | float = "auto", kernel: str = "rbf") -> float:
    """SalUn / Unlearn-Sparse MIA-Efficacy in [0, 1] ([SalUn]; report x100).

    All inputs are true-class probabilities (``true_class_prob``) under the unlearned model:
    shadow_train = first |D_test| retain samples (``mia_efficacy_sets``) -> label 1 (member),
    shadow_test = D_test (class-wise: without the forget class) -> label 0, target = D_f.
    Returns the fraction of D_f the SVC calls non-member; higher means more forgetting.
    """
    return _svc_nonmember_rate(conf_shadow_train, conf_shadow_test, conf_target, C=C, gamma=gamma,
                               kernel=kernel, names=("conf_shadow_train", "conf_shadow_test", "conf_target"))


def kodge_svm_mia(conf_retain_train, conf_forget_train, conf_forget_test, *, C: float = 3.0,
                  gamma: str | float = "auto", kernel: str = "rbf") -> float:
    """Kodge et al.'s class-forgetting SVM MIA in [0, 1], TRW's "MIA" column ([Kodge]; x100).

    Inputs are true-class probabilities under the unlearned model. The SVC separates training
    retain samples (label 1; Kodge: all retained-class train images, ImageNet a 50k subset) from
    training forget-class samples (label 0) and is applied to the forget-class TEST samples.
    Returns the fraction of those put on the forgotten side: Retrain ~ 1, Original ~ 0.
    SVC fitting is quadratic in the training size; for 45k retain samples expect minutes.
    """
    return _svc_nonmember_rate(conf_retain_train, conf_forget_train, conf_forget_test, C=C, gamma=gamma,
                               kernel=kernel, names=("conf_retain_train", "conf_forget_train", "conf_forget_test"))


# --------------------------------------------------------------------------------------------
# MIA-NN ([MIA-NN])


@dataclass(frozen=True)
class MIANNResult:
    """Outcome of ``mia_nn``; all scores are fractions of forget-class test samples in [0, 1].

    ``classes``: candidate classes, the column order of ``reference_scores`` (M, len(classes)).
    ``class_scores``: Acc_c, mean over references. ``retrain_score`` = Acc_{c*} as in the paper;
    it is biased upwards because c* is chosen on the same references, so ``retrain_score_loo``
    (c* picked on the other M-1 references, scored on the held-out one; None when M < 2) is the
    fair Retrain value to compare with ``unlearned_score``. ``gap`` = |retrain_score - unlearned_score|.
    """

    forget_class: int
    nearest_class: int
    classes: np.ndarray
    reference_scores: np.ndarray
    class_scores: dict[int, float]
    retrain_score: float
    retrain_score_loo: float | None
    unlearned_score: float | None
    gap: float | None


def mia_nn_class_score(logits, y, forget_class: int, cls: int, *, feature: str = "logit", C: float = 3.0,
                       gamma: str | float = "auto", kernel: str = "rbf", class_weight=None) -> float:
    """Acc_c for one model: fraction of forget-class test samples an SVM calls "class ``cls``" ([MIA-NN]).

    The SVM is fit on the 1-D feature of class ``cls`` over the TEST set: samples labelled ``cls``
    -> 1, all other samples except the forget class -> 0; it is then applied to the forget-class
    test samples. No training data is used (the attack's premise).
    ``feature``: "logit" (z_cls, the paper's §3.3 definition; our default) or "prob"
    (softmax prob of ``cls``, the abstract's wording); which one TRW's code uses is UNKNOWN.
    SVC(C=3, gamma="auto", rbf) and ``class_weight=None`` are our choice (UNKNOWN in the paper),
    copied from the SVM-MIA of [Kodge].
    """
    from sklearn.svm import SVC

    z, y = _outputs(logits, y, "logits")
    n_classes = z.shape[1]
    for name, c in (("forget_class", forget_class), ("cls", cls)):
        if not 0 <= c < n_classes:
            raise ValueError(f"{name}={c} is outside [0, {n_classes})")
    if cls == forget_class:
        raise ValueError("cls must be a remaining class, not the forget class")
    if feature == "logit":
        f = z[:, cls]
    elif feature == "prob":
        f = softmax(z, axis=1)[:, cls]
    else:
        raise ValueError(f"feature must be 'logit' or 'prob', got {feature!r}")
    is_c, is_f = y == cls, y == forget_class
    is_rest = ~(is_c | is_f)
    for name, mask in (("class cls", is_c), ("forget class", is_f), ("other classes", is_rest)):
        if not mask.any():
            raise ValueError(f"test set has no samples of the {name} (cls={cls}, forget_class={forget_class})")
    x = np.concatenate([f[is_c], f[is_rest]])[:, None]
    labels = np.concatenate([np.ones(is_c.sum()), np.zeros(is_rest.sum())])
    clf = SVC(C=C, gamma=gamma, kernel=kernel, class_weight=class_weight).fit(x, labels)
    return float(clf.predict(f[is_f][:, None]).mean())


def mia_nn(reference_logits: Sequence, y, forget_class: int, unlearned_logits=None, *,
           classes: Sequence[int] | None = None, feature: str = "logit", C: float = 3.0,
           gamma: str | float = "auto", kernel: str = "rbf", class_weight=None) -> MIANNResult:
    """MIA via the nearest-neighbour class (TRW paper §3.3; CMIA in the ICML version; [MIA-NN]).

    ``reference_logits``: test-set logits of M independently retrained models, shape (M, N, K) or
    a sequence of (N, K) ([MIA-NN] leaves M UNKNOWN; TRW's U-LiRA used 3). ``y``: test labels (N,).
    For every candidate class c (default: all except ``forget_class``) and reference m,
    Acc_c^m = ``mia_nn_class_score``; c* = argmax_c mean_m Acc_c^m (ties -> lowest class).
    ``unlearned_logits`` (N, K), if given, is scored with its own SVM for c* the same way.
    Smaller |Acc_{c*} - Acc^MU_{c*}| is better; this is a distribution-level test on test data,
    not a per-example membership decision.
    """
    refs = [_array(r, f"reference_logits[{i}]", 2) for i, r in enumerate(reference_logits)]
    if not refs:
        raise ValueError("reference_logits is empty: need at least one retrained model")
    if any(r.shape != refs[0].shape for r in refs):
        raise ValueError(f"reference_logits have different shapes: {[r.shape for r in refs]}")
    n_classes = refs[0].shape[1]
    cand = np.array([c for c in range(n_classes) if c != forget_class] if classes is None else list(classes))
    if cand.size == 0:
        raise ValueError("no candidate classes")
    kw = dict(feature=feature, C=C, gamma=gamma, kernel=kernel, class_weight=class_weight)
    acc = np.array([[mia_nn_class_score(r, y, forget_class, int(c), **kw) for c in cand] for r in refs])
    mean = acc.mean(axis=0)
    best = int(np.argmax(mean))
    nearest = int(cand[best])
    loo = None
    if len(refs) > 1:
        others = (acc.sum(axis=0)[None, :] - acc) / (len(refs) - 1)
        loo = float(np.mean(acc[np.arange(len(refs)), np.argmax(others, axis=1)]))
    unl = None
    if unlearned_logits is not None:
        u = _array(unlearned_logits, "unlearned_logits", 2)
        if u.shape != refs[0].shape:
            raise ValueError(f"unlearned_logits shape {u.shape} differs from the references' {refs[0].shape}")
        unl = mia_nn_class_score(u, y, forget_class, nearest, **kw)
    return MIANNResult(
        forget_class=int(forget_class), nearest_class=nearest, classes=cand, reference_scores=acc,
        class_scores={int(c): float(m) for c, m in zip(cand, mean)}, retrain_score=float(mean[best]),
        retrain_score_loo=loo, unlearned_score=unl, gap=None if unl is None else abs(float(mean[best]) - unl))


# --------------------------------------------------------------------------------------------
# LiRA ([LiRA]) and U-LiRA ([U-LiRA])


def _gaussian(stats: np.ndarray, name: str, *, center: str, ddof: int, fix_variance: bool,
              global_std: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-example (mu, sigma) of a (K, N) population; NaN entries are not in the population."""
    counts = np.sum(~np.isnan(stats), axis=0)
    need = 1 if fix_variance else ddof + 1
    if counts.min() < need:
        raise ValueError(f"{name}: every example needs at least {need} model statistic(s) "
                         f"(ddof={ddof}), example {int(np.argmin(counts))} has {int(counts.min())}")
    if center == "median":
        mu = np.nanmedian(stats, axis=0)
    elif center == "mean":
        mu = np.nanmean(stats, axis=0)
    else:
        raise ValueError(f"center must be 'median' or 'mean', got {center!r}")
    sigma = np.full(stats.shape[1], global_std) if fix_variance else np.nanstd(stats, axis=0, ddof=ddof)
    return mu, sigma


def lira_scores(target_stat, in_stats, out_stats, *, fix_variance: bool = False, center: str = "median",
                ddof: int = 0, eps: float = 1e-30) -> np.ndarray:
    """Online LiRA per-example log-likelihood ratio log N(t; mu_in, s_in) - log N(t; mu_out, s_out).

    Carlini et al., S&P'22 ([LiRA]). ``target_stat`` (N,) and ``in_stats`` / ``out_stats`` (K, N)
    are ``logit_confidence`` values; a NaN in the shadow arrays means "this model is not in that
    population for this example", so the usual keep mask is ``np.where(keep, stats, np.nan)``.
    Higher = more member-like (the reference returns the negation; lower = member there).
    Defaults follow the reference: median centre, population std (ddof=0), ``eps`` added to
    sigma. ``fix_variance`` uses the std of ALL in-statistics (across models and examples) for
    both populations, as the reference code does. For augmentations, call per view and average.
    """
    from scipy.stats import norm

    t = _array(target_stat, "target_stat", 1)
    s_in = _array(in_stats, "in_stats", 2, allow_nan=True)
    s_out = _array(out_stats, "out_stats", 2, allow_nan=True)
    for name, s in (("in_stats", s_in), ("out_stats", s_out)):
        if s.shape[1] != len(t):
            raise ValueError(f"{name} has {s.shape[1]} examples (columns) but target_stat has {len(t)}")
    global_std = None
    if fix_variance:
        if np.sum(~np.isnan(s_in)) < 2:
            raise ValueError("fix_variance needs at least 2 in-statistics in total")
        global_std = float(np.nanstd(s_in, ddof=ddof))
    kw = dict(center=center, ddof=ddof, fix_variance=fix_variance, global_std=global_std)
    mu_in, sd_in = _gaussian(s_in, "in_stats", **kw)
    mu_out, sd_out = _gaussian(s_out, "out_stats", **kw)
    return norm.logpdf(t, mu_in, sd_in + eps) - norm.logpdf(t, mu_out, sd_out + eps)


def ulira_scores(target_stats, unlearned_stats, retrained_stats, *, center: str = "mean", ddof: int = 1,
                 fix_variance: bool = False, eps: float = 1e-30) -> np.ndarray:
    """U-LiRA per-example log LR of "unlearned" vs "retrained" for any model's statistics ([U-LiRA]).

    ``target_stats`` (N,): ``logit_confidence`` of the model under test on the forget examples;
    ``unlearned_stats`` (K_U, N): shadows trained on all data, then unlearned with the method;
    ``retrained_stats`` (K_R, N): shadows trained without the forget data. Higher = looks
    unlearned. Defaults follow TRW/Kodge ([U-LiRA]): mean and unbiased std; LiRA uses median/ddof=0.
    Uses log-densities (Kodge's exp-ratio underflows).
    """
    return lira_scores(target_stats, unlearned_stats, retrained_stats, fix_variance=fix_variance,
                       center=center, ddof=ddof, eps=eps)


def eer_balanced_accuracy(labels, scores) -> tuple[float, float]:
    """(balanced accuracy, threshold) at the ROC point minimising |FPR + TPR - 1| ([U-LiRA] step 6).

    Positive = ``scores >= threshold``. The threshold is chosen on the same data it is evaluated
    on, as in Kodge's code. A threshold above every score (sklearn's inf) is returned as the next
    float above the maximum so it can be averaged and reused.
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(labels, scores)
    i = int(np.argmin(np.abs(fpr + tpr - 1.0)))
    t = thr[i] if np.isfinite(thr[i]) else np.nextafter(np.max(scores), np.inf)
    return float((tpr[i] + 1.0 - fpr[i]) / 2.0), float(t)


def tpr_at_fpr(labels, scores, *, max_fpr: float = 1e-3) -> float:
    """Largest TPR with FPR <= ``max_fpr`` (LiRA's low-FPR figure of merit, [LiRA])."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= max_fpr].max())


@dataclass(frozen=True)
class ULiRAResult:
    """Outcome of ``ulira``: fold means plus per-fold values (0.5 accuracy / AUC is ideal).

    ``threshold`` is the mean of the fold EER thresholds on the log-LR scale.
    ``target_unlearned_rate`` is the fraction of the model-under-test's forget examples classified
    "unlearned", averaged over folds (each fold's Gaussians and threshold); None without a target.
    """

    balanced_accuracy: float
    auc: float
    tpr_at_low_fpr: float
    threshold: float
    fold_balanced_accuracy: np.ndarray
    fold_auc: np.ndarray
    target_unlearned_rate: float | None


def ulira(unlearned_stats, retrained_stats, target_stats=None, *, folds: str = "rotate", center: str = "mean",
          ddof: int = 1, fix_variance: bool = False, eps: float = 1e-30, max_fpr: float = 1e-3) -> ULiRAResult:
    """U-LiRA leave-one-model-out game: can per-example Gaussians tell unlearned from retrained shadows?

    Hayes et al. (SaTML'25) as TRW ran it ([U-LiRA], [U-LiRA]). Inputs are ``logit_confidence`` arrays
    over the forget examples: ``unlearned_stats`` (K_U, N), ``retrained_stats`` (K_R, N), K >= 2
    each (K >= ddof + 2 unless ``fix_variance``). In fold k the shadows U[k % K_U] (label 1) and
    R[k % K_R] (label 0) are held out; Gaussians are fit on the rest, both held-out models are
    scored per example (2N scores), and AUC and balanced accuracy at the EER threshold follow.
    ``folds``: "rotate" (max(K_U, K_R) folds, averaged; our choice, as the paper does not say)
    or "last" (Kodge's single fold holding out the last model of each kind).
    ``target_stats`` (N,), from the model under test, is scored with each fold's Gaussians and
    threshold; it is never replaced by a shadow (a bug of the reference code, which reused a shadow as the target).
    With TRW's 3 + 3 shadows each fold fits on 2 models per kind, so per-example sigma is mostly
    noise and even well-separated populations score ~0.9; ``fix_variance=True`` avoids that.
    """
    from sklearn.metrics import roc_auc_score

    u = _array(unlearned_stats, "unlearned_stats", 2)
    r = _array(retrained_stats, "retrained_stats", 2)
    if u.shape[1] != r.shape[1]:
        raise ValueError(f"unlearned_stats has {u.shape[1]} examples but retrained_stats has {r.shape[1]}")
    t = None if target_stats is None else _array(target_stats, "target_stats", 1)
    if t is not None and len(t) != u.shape[1]:
        raise ValueError(f"target_stats has {len(t)} examples but the shadows have {u.shape[1]}")
    need = 2 if fix_variance else ddof + 2
    for name, s in (("unlearned_stats", u), ("retrained_stats", r)):
        if len(s) < need:
            raise ValueError(f"{name} has {len(s)} shadow model(s); leave-one-out with ddof={ddof} needs >= {need}")
    if folds == "rotate":
        pairs = [(k % len(u), k % len(r)) for k in range(max(len(u), len(r)))]
    elif folds == "last":
        pairs = [(len(u) - 1, len(r) - 1)]
    else:
        raise ValueError(f"folds must be 'rotate' or 'last', got {folds!r}")
    kw = dict(center=center, ddof=ddof, fix_variance=fix_variance, eps=eps)
    labels = np.concatenate([np.ones(u.shape[1]), np.zeros(u.shape[1])])
    bal, aucs, tprs, thrs, rates = [], [], [], [], []
    for iu, ir in pairs:
        fit_u, fit_r = np.delete(u, iu, axis=0), np.delete(r, ir, axis=0)
        scores = np.concatenate([ulira_scores(u[iu], fit_u, fit_r, **kw), ulira_scores(r[ir], fit_u, fit_r, **kw)])
        b, thr = eer_balanced_accuracy(labels, scores)
        bal.append(b)
        thrs.append(thr)
        aucs.append(roc_auc_score(labels, scores))
        tprs.append(tpr_at_fpr(labels, scores, max_fpr=max_fpr))
        if t is not None:
            rates.append(np.mean(ulira_scores(t, fit_u, fit_r, **kw) >= thr))
    return ULiRAResult(
        balanced_accuracy=float(np.mean(bal)), auc=float(np.mean(aucs)), tpr_at_low_fpr=float(np.mean(tprs)),
        threshold=float(np.mean(thrs)), fold_balanced_accuracy=np.array(bal), fold_auc=np.array(aucs),
        target_unlearned_rate=float(np.mean(rates)) if rates else None)
