"""Core unlearning metrics as small pure functions (percentages, like the papers' tables).

FA/RA/TA are accuracies on forget/retain/test; MIA is SalUn's MIA-Efficacy; Avg. Gap is the mean
absolute difference to the retrained reference over FA, RA, TA, MIA (FaLW §6.1).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.base import Split, as_float

GAP_KEYS = ("FA", "RA", "TA", "MIA")


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` in eval mode on CPU float32, computed in batches on ``device``.

    Always fp32, on CUDA too: the reference implementations evaluate in fp32, and bf16 moves a
    test accuracy by tenths of a point (training steps keep bf16 autocast).
    """
    model.eval()
    with torch.autocast(device.type, enabled=False):  # even inside a caller's autocast region
        outs = [model(as_float(chunk.to(device))).float().cpu() for chunk in x.split(batch_size)]
    return torch.cat(outs) if outs else torch.empty(0)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in percent (NaN for an empty split)."""
    if len(y) == 0:
        return float("nan")
    return 100.0 * (logits.argmax(1) == y).float().mean().item()


def true_class_probs(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """p_θ(y_i | x_i) for each sample."""
    return torch.softmax(logits.float(), 1).gather(1, y.view(-1, 1)).squeeze(1).numpy()


def avg_gap(metrics: dict[str, float], reference: dict[str, float], keys=GAP_KEYS) -> float:
    """Mean |metric − reference| over ``keys`` (FaLW's Avg. Gap)."""
    return float(np.mean([abs(metrics[k] - reference[k]) for k in keys]))


def unlearning_deviation(p_unlearned, p_retrained, tau: float = 0.05) -> dict[str, float]:
    """FaLW Definition 1: fraction (percent) of forget samples under / faithfully / over-forgotten.

    Under-forgetting: p_u > p_* + τ; over-forgetting: p_u < p_* − τ; faithful otherwise.
    """
    pu, pr = np.asarray(p_unlearned, float), np.asarray(p_retrained, float)
    if pu.shape != pr.shape:
        raise ValueError(f"probability arrays differ in shape: {pu.shape} vs {pr.shape}")
    if tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    under, over = pu > pr + tau, pu < pr - tau
    return {"under": 100 * under.mean(), "faithful": 100 * (~under & ~over).mean(), "over": 100 * over.mean()}


def group_accuracy(correct, labels, groups: dict[str, list[int]]) -> dict[str, float]:
    """Accuracy (percent) of the samples whose label is in each group's classes."""
    correct, labels = np.asarray(correct, bool), np.asarray(labels)
    out = {}
    for g, classes in groups.items():
        sel = np.isin(labels, classes)
        out[g] = float(100 * correct[sel].mean()) if sel.any() else float("nan")
    return out


def mia_efficacy_of(model: nn.Module, forget: Split, retain: Split, test: Split, device) -> float:
    """SalUn MIA-Efficacy in percent: shadow members are the *first* |test| retain samples.

    A retain set smaller than the test set is an error, as in the reference (SalUn's
    ``evaluation/SVC_MIA``): a silently shrunk shadow set would change the attack.
    """
    from .attacks import mia_efficacy, true_class_prob

    if len(retain) < len(test):
        raise ValueError(f"MIA-Efficacy takes its shadow members from the first |test| = {len(test)} retain "
                         f"samples, but the retain set has only {len(retain)}; use a smaller test set")
    conf = lambda s: true_class_prob(predict_logits(model, s.x, device), s.y)  # noqa: E731
    return 100.0 * mia_efficacy(conf(retain.subset(range(len(test)))), conf(test), conf(forget))


def evaluate_model(model: nn.Module, forget: Split, retain: Split, test: Split, device) -> dict:
    """FA, RA, TA, MIA plus the per-sample forget-set true-class probabilities and correctness."""
    lf = predict_logits(model, forget.x, device)
    return {
        "FA": accuracy(lf, forget.y),
        "RA": accuracy(predict_logits(model, retain.x, device), retain.y),
        "TA": accuracy(predict_logits(model, test.x, device), test.y),
        "MIA": mia_efficacy_of(model, forget, retain, test, device),
        "forget_probs": true_class_probs(lf, forget.y),
        "forget_correct": (lf.argmax(1) == forget.y).numpy(),
    }


def without_classes(test: Split, classes) -> Split:
    """``test`` without the samples of ``classes``: SalUn evaluates TA and MIA-Efficacy of a
    whole-class request on the remaining classes only (its ``main_forget.py`` drops the forgotten
    classes from the test loader), so a Retrain row's TA is not depressed by a class it never saw."""
    if not len(classes):
        return test
    keep = ~torch.isin(test.y, torch.as_tensor(list(classes)))
    return test.subset(torch.nonzero(keep).flatten())


def derived_metrics(metrics: dict, reference: dict, probs=None, reference_probs=None,
                    tau: float = 0.05) -> dict[str, float]:
    """What is computed against the retrained reference from two rows' raw metrics: the gap of
    each of FA/RA/TA/MIA, their mean (Avg. Gap), ΔFA per head/mid/tail group, and FaLW's
    unlearning deviation when both rows' forget-set true-class probabilities are given."""
    out = {f"gap_{k}": abs(metrics[k] - reference[k]) for k in GAP_KEYS}
    out["AvgGap"] = avg_gap(metrics, reference)
    for k in metrics:
        if k.startswith("FA_") and k in reference:
            out[f"dFA_{k[3:]}"] = metrics[k] - reference[k]
    if probs is not None and reference_probs is not None:
        out.update({f"dev_{k}": v for k, v in unlearning_deviation(probs, reference_probs, tau).items()})
    return out
