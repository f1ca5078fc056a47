"""Reported metrics: accuracy, log-loss, DP/EOP gaps (hard predictions and signed surrogates),
robust accuracy.

``dp`` / ``eop`` are absolute differences on hard predictions (fairlearn), the metric of the
reference's ``eval.py`` ``Evaluator``; ``dp_surrogate`` / ``eop_surrogate`` are the signed
surrogates the reference's ``SEC-5-2-0-*.py`` scripts print and save as the fairness result
(``fair_fn.py`` ``loss_dp``: mean probability of s = 1 minus s = 0; ``loss_ferm``: mean log-loss of
{s = 0, y = 1} minus {s = 1, y = 1}). Robust accuracy is accuracy on adversarial points built once
from the pre-unlearning model (``robust_fn_nn.py`` ``calc_robust_acc_nn``).
"""
from __future__ import annotations

import numpy as np
import torch
from fairlearn.metrics import demographic_parity_difference, equal_opportunity_difference

from .core import as_tensor, sample_losses
from .targets import dp_gap, eop_gap


def evaluate(theta, x, y, s, x_adv) -> dict[str, float]:
    """accuracy, mean log-loss, |DP|, |EOP|, the signed surrogates and robust accuracy of head θ
    (percent for accuracies)."""
    theta, x, y_t = as_tensor(theta), as_tensor(x), as_tensor(y)
    s_t = torch.as_tensor(np.asarray(s))
    with torch.no_grad():
        pred = (x @ theta > 0).long().numpy()
        pred_adv = (as_tensor(x_adv) @ theta > 0).long().numpy()
        loss = float(sample_losses(theta, x, y_t).mean())
        dp_s, eop_s = float(dp_gap(theta, x, s_t)), float(eop_gap(theta, x, y_t, s_t))
    y, s = np.asarray(y), np.asarray(s)
    return {
        "accuracy": 100.0 * float((pred == y).mean()),
        "loss": loss,
        "dp": float(demographic_parity_difference(y, pred, sensitive_features=s)),
        "eop": float(equal_opportunity_difference(y, pred, sensitive_features=s)),
        "dp_surrogate": dp_s,
        "eop_surrogate": eop_s,
        "robust_accuracy": 100.0 * float((pred_adv == y).mean()),
    }
