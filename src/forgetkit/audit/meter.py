"""The meter: audit a deletion from models (:func:`audit`) or from stored per-sample scores
(:func:`audit_scores`).
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from .. import stats
from .decision import ACC_MARGIN, PROB_MARGIN, TAIL_QUANTILE, decide
from .inputs import check_inputs
from .rules import (DEPLETED, PROB_TOLERANCE, RETRAIN_SLOPE, TARGET_MARGIN, TARGET_MARGIN_BELOW, bracket_side,
                    retrain_shift)
from ..inputs import as_split, normalisation, normalised, resolve_device
from .scores import SCORE_KEYS, SCORE_NAME, model_scores, score_arrays
from .statistics import compare_side
from .types import AuditResult

def audit(model: nn.Module, forget, heldout, *, original: nn.Module | None = None, retain=None, test=None,
          num_classes: int | None = None, device: str | torch.device = "cpu", forget_indices=None,
          heldout_indices=None, forget_classes=(), check_duplicates: bool = True, alpha: float = 0.05,
          margin: float = 0.02, target_margin: float = TARGET_MARGIN, target_margin_below: float = TARGET_MARGIN_BELOW,
          retrain_slope: float = RETRAIN_SLOPE, tolerance: float = 0.01, min_samples: int = 20, n_boot: int = 300,
          seed: int = 0, batch_size: int = 1024, retain_accuracy: dict | None = None, normalize=None,
          prob_margin: float = PROB_MARGIN, acc_margin: float = ACC_MARGIN) -> AuditResult:
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
    again (the largest split; the audit's budget is 10 % of the run it checks). ``normalize``: the
    models' input normalisation, ``(mean, std)`` or a function of a batch, applied as
    ``forgetkit.unlearn`` applies it (the data stays uint8 or [0, 1]).
    """
    start = time.perf_counter()
    known = dict(retain_accuracy or {})
    if set(known) - {"after", "before"}:
        raise ValueError(f"retain_accuracy: unknown sides {sorted(set(known) - {'after', 'before'})}; "
                         "give {'after': %, 'before': %}")
    forget, heldout = _split(forget, "forget"), _split(heldout, "heldout")
    retain = None if retain is None else _split(retain, "retain")
    test = None if test is None else _split(test, "test")
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
    dev = resolve_device(device)
    transform = normalisation(normalize, tuple(forget.x.shape[1:]))
    model, original = normalised(model, transform), None if original is None else normalised(original, transform)
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
                          tolerance=tolerance, min_samples=min_samples, n_boot=n_boot, seed=seed,
                          prob_margin=prob_margin, acc_margin=acc_margin)
    result.settings["device"] = str(dev)
    result.seconds = time.perf_counter() - start
    return result



def audit_scores(after: dict, before: dict | None = None, *, num_classes: int, forget_classes=(),
                 accuracy: dict | None = None, alpha: float = 0.05, margin: float = 0.02,
                 target_margin: float = TARGET_MARGIN, target_margin_below: float = TARGET_MARGIN_BELOW,
                 retrain_slope: float = RETRAIN_SLOPE, tolerance: float = 0.01, min_samples: int = 20,
                 n_boot: int = 300, seed: int = 0, retain_counts: dict | None = None,
                 prob_margin: float = PROB_MARGIN, acc_margin: float = ACC_MARGIN) -> AuditResult:
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
    raw = {"after": score_arrays(after, "after")}
    if before is not None:
        raw["before"] = score_arrays(before, "before")
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
    opts = dict(alpha=alpha, min_samples=min_samples, prob_margin=prob_margin, acc_margin=acc_margin)
    decisions = {side: decide(r["forget"], r["forget_correct"], yf, r["heldout"], r["heldout_correct"], yh,
                              removed={e.cls: e.verdict for e in sides[side].per_class if e.removed},
                              original_heldout_correct=raw["before"]["heldout_correct"]
                              if side == "after" and "before" in raw else None, **opts)
                 for side, r in raw.items()}
    settings |= {"prob_margin": prob_margin, "acc_margin": acc_margin, "tail_quantile": TAIL_QUANTILE}
    return AuditResult(num_classes, sides["after"], sides.get("before"), accuracy, settings,
                       time.perf_counter() - start, raw, target, unmoved, decisions["after"][0],
                       decisions["after"][1], decisions["before"][0] if "before" in decisions else None)



def _split(data, name: str):
    """The shared input conversion; a wrong type is a ValueError here, like every other bad audit input."""
    try:
        return as_split(data, name)
    except TypeError as e:
        raise ValueError(str(e)) from None
