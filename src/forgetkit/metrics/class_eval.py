"""Class-unlearning evaluators (``metrics.extra``): Acc_r/Acc_f, Kodge SVM-MIA, MIA-NN, U-LiRA, confusion.

Each is ``fn(cell, **options) -> {key: value}`` on a :class:`~forgetkit.metrics.evaluators.CellView`;
they see models and splits, never the method, so they score any method's output. The attacks
themselves are the pure functions of :mod:`forgetkit.metrics.attacks`; this module only runs the
models and picks the sets ("On the Necessity of Output Distribution Reweighting for Effective
Class Unlearning", §3.3 and §5.2).
All scores are percentages.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from .evaluators import CellView, register_evaluator
from ..data.base import Split
from ..cache import ModelCache
from ..train import TrainRecipe
from .attacks import kodge_svm_mia, logit_confidence, mia_nn, mia_nn_class_score, true_class_prob, ulira
from .core import accuracy, predict_logits
from .shadows import pool_of, train_shadows

_REFERENCE_CACHE: dict = {}
"""per-process memo of work that depends only on the request (reference attacks, shadows)"""


def forget_classes_of(cell: CellView) -> tuple[int, ...]:
    classes = tuple(cell.request.classes)
    if not classes:
        raise ValueError(f"class-unlearning metrics need a class forget request, got {cell.request.kind!r}")
    return classes


def class_name(cell: CellView, c: int) -> str:
    names = cell.bundle.class_names
    return names[c] if c < len(names) else str(c)


def _slug(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


def split_by_class(split: Split, classes) -> tuple[Split, Split]:
    """(samples of ``classes``, the others)."""
    inside = torch.isin(split.y, torch.as_tensor(list(classes)))
    return split.subset(torch.nonzero(inside).flatten()), split.subset(torch.nonzero(~inside).flatten())


@register_evaluator("class_acc", class_requests_only=True)
def class_acc(cell: CellView) -> dict:
    """Acc_r / Acc_f: test accuracy on the retained / forgotten classes (TRW Table 2)."""
    forgot, kept = split_by_class(cell.test, forget_classes_of(cell))
    return {"Acc_r": accuracy(predict_logits(cell.model, kept.x, cell.device), kept.y),
            "Acc_f": accuracy(predict_logits(cell.model, forgot.x, cell.device), forgot.y)}


@register_evaluator("kodge_mia", class_requests_only=True)
def kodge_mia(cell: CellView, max_retain: int = 5000, C: float = 3.0) -> dict:
    """Kodge SVM-MIA (TRW's "MIA"): share of forget-class test samples put on the forgotten side.

    The SVC is fit on true-class confidence: retain-train (member) vs forget-train; SVC cost is
    quadratic, so at most ``max_retain`` retain samples (a seeded subset) are used.
    """
    forgot_test, _ = split_by_class(cell.test, forget_classes_of(cell))
    retain = cell.retain
    if len(retain) > max_retain:
        retain = retain.subset(torch.randperm(len(retain), generator=torch.Generator().manual_seed(cell.seed))[:max_retain])

    def conf(s: Split) -> np.ndarray:
        return true_class_prob(predict_logits(cell.model, s.x, cell.device), s.y)

    return {"MIA_kodge": 100.0 * kodge_svm_mia(conf(retain), conf(cell.forget), conf(forgot_test), C=C)}


def _without_other_forgotten(test: Split, forget: tuple[int, ...], f: int) -> Split:
    others = [c for c in forget if c != f]
    return split_by_class(test, others)[1] if others else test


def _mia_nn_smoke(options: dict) -> dict:
    return {**options, "references": min(options.get("references", 3), 3)}


@register_evaluator("mia_nn", references=lambda o: o.get("references", 3), smoke=_mia_nn_smoke,
                    class_requests_only=True)
def mia_nn_eval(cell: CellView, references: int = 3, feature: str = "logit") -> dict:
    """MIA-NN: SVM on the nearest class's logit, c* chosen on ``references`` retrained models.

    Keys: MIA_NN (model under test), MIA_NN_retrain (paper's Retrain value, c* picked on the same
    references), MIA_NN_retrain_loo (fair leave-one-reference-out value), MIA_NN_gap
    (|MIA_NN_retrain − MIA_NN|), MIA_NN_class ("forgotten→nearest" by name). Several forgotten
    classes: each is attacked with the others removed from the test set; scores are averaged.
    """
    forget = forget_classes_of(cell)
    refs = None
    scores, retrain, loo, names = [], [], [], []
    for f in forget:
        test = _without_other_forgotten(cell.test, forget, f)
        key = ("mia_nn", cell.request.name, cell.seed, references, feature, f, len(test), float(test.x.float().sum()))
        if key not in _REFERENCE_CACHE:
            refs = refs if refs is not None else cell.references(references)
            logits = [predict_logits(r, test.x, cell.device).numpy() for r in refs]
            classes = [c for c in range(logits[0].shape[1]) if c not in forget]
            _REFERENCE_CACHE[key] = mia_nn(logits, test.y.numpy(), f, classes=classes, feature=feature)
        res = _REFERENCE_CACHE[key]
        z = predict_logits(cell.model, test.x, cell.device).numpy()
        scores.append(mia_nn_class_score(z, test.y.numpy(), f, res.nearest_class, feature=feature))
        retrain.append(res.retrain_score)
        loo.append(np.nan if res.retrain_score_loo is None else res.retrain_score_loo)
        names.append(f"{class_name(cell, f)}→{class_name(cell, res.nearest_class)}")
    out = {"MIA_NN": 100.0 * float(np.mean(scores)), "MIA_NN_retrain": 100.0 * float(np.mean(retrain)),
           "MIA_NN_class": ", ".join(names)}
    out["MIA_NN_gap"] = abs(out["MIA_NN_retrain"] - out["MIA_NN"])
    if not np.isnan(loo).any():
        out["MIA_NN_retrain_loo"] = 100.0 * float(np.mean(loo))
    return out


def forget_stats(models, forget: Split, device) -> np.ndarray:
    """(K, N) logit-scaled confidence of the forget samples' (forgotten) label under each model."""
    return np.stack([logit_confidence(predict_logits(m, forget.x, device).numpy(), forget.y.numpy())
                     for m in models])


def _in_shadows(cell: CellView, shadows: int, recipe: TrainRecipe, cache: ModelCache | None):
    """Shadows trained on the full pool (forget ∪ retain), once per seed and pool."""
    pool = pool_of(cell.forget, cell.retain, cell.request.indices)
    key = ("in-shadows", cell.seed, shadows, recipe, len(pool), float(pool.x.float().sum()))
    if key not in _REFERENCE_CACHE:
        seeds = [2000 + 100 * cell.seed + i for i in range(shadows)]
        _REFERENCE_CACHE[key] = train_shadows(cell.original, pool, recipe, seeds, cell.device,
                                              cell.bundle.num_classes, cache=cache, tag="ulira-in")
    return _REFERENCE_CACHE[key]


def _ulira_references(options: dict) -> int:
    """The Retrain row compares two disjoint sets of ``shadows`` retrained references."""
    return 2 * options.get("shadows", 3)


ULIRA_MIN_SHADOWS = 3
"""leave-one-model-out fits per-example variances on K − 1 shadows of each kind: 3 is the least that works"""


def _ulira_smoke(options: dict) -> dict:
    out = {**options, "shadows": min(options.get("shadows", 3), ULIRA_MIN_SHADOWS)}
    if isinstance(options.get("train"), dict):
        out["train"] = {**options["train"], "epochs": min(options["train"].get("epochs", 20), 1)}
    return out


def _ulira_check(options: dict) -> None:
    if options.get("shadows", 3) < ULIRA_MIN_SHADOWS and not options.get("fix_variance", False):
        raise ValueError(f"ulira: shadows={options['shadows']} is too few; its leave-one-model-out game needs "
                         f">= {ULIRA_MIN_SHADOWS} shadows of each kind (or fix_variance: true)")


@register_evaluator("ulira", references=_ulira_references, smoke=_ulira_smoke, class_requests_only=True,
                    check=_ulira_check)
def ulira_eval(cell: CellView, shadows: int = 3, train: dict | None = None, cache_dir: str | None = None,
               fix_variance: bool = False, folds: str = "rotate") -> dict:
    """U-LiRA: can shadows unlearned by this method be told from shadows retrained without the data?

    Unlearned shadows: ``shadows`` models trained on the full pool with the ``train`` recipe (give
    the experiment's ``train`` block, e.g. by a YAML anchor), then unlearned with the method under
    test; retrained shadows: the cell's cached retrained references. The Retrain row compares two
    disjoint sets of retrained references (~50% by construction); the Original row leaves the
    full-data shadows as they are. Keys: ULiRA_acc (leave-one-model-out balanced accuracy, 50 =
    ideal), ULiRA_auc, ULiRA_target (share of the MODEL UNDER TEST's forget samples called
    "unlearned", never a shadow's).
    """
    forget_classes_of(cell)
    is_retrain = cell.unlearn is None and cell.model is not cell.original
    refs = cell.references(2 * shadows if is_retrain else shadows)
    retrained = refs[shadows:] if is_retrain else refs
    if is_retrain:
        unlearned = refs[:shadows]
    else:
        cache = ModelCache(Path(cache_dir)) if cache_dir else None
        base = _in_shadows(cell, shadows, TrainRecipe(**{**(train or {}), "milestones": tuple((train or {}).get("milestones", ()))}), cache)
        unlearned = base if cell.unlearn is None else [cell.unlearn(m) for m in base]
    res = ulira(forget_stats(unlearned, cell.forget, cell.device), forget_stats(retrained, cell.forget, cell.device),
                forget_stats([cell.model], cell.forget, cell.device)[0], fix_variance=fix_variance, folds=folds)
    return {"ULiRA_acc": 100.0 * res.balanced_accuracy, "ULiRA_auc": 100.0 * res.auc,
            "ULiRA_target": 100.0 * res.target_unlearned_rate}


@register_evaluator("forget_confusion", class_requests_only=True)
def forget_confusion(cell: CellView) -> dict:
    """Where forgotten-class test samples go: share predicted as each class (conf_to_<name>).

    Also conf_tv_retrain: total-variation distance (percent) to the retrained model's distribution.
    """
    forgot, _ = split_by_class(cell.test, forget_classes_of(cell))
    k = cell.bundle.num_classes

    def dist(model) -> np.ndarray:
        pred = predict_logits(model, forgot.x, cell.device).argmax(1)
        return np.bincount(pred.numpy(), minlength=k) / max(1, len(pred))

    mine, ref = dist(cell.model), dist(cell.retrained)
    out = {f"conf_to_{_slug(class_name(cell, c))}": 100.0 * float(mine[c]) for c in range(k)}
    out["conf_tv_retrain"] = 50.0 * float(np.abs(mine - ref).sum())
    return out
