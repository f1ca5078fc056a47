"""Reported metrics on hard predictions: accuracy, log-loss, fairlearn DP/EOP gaps, robust accuracy.

As in the reference ``eval.py`` the fairness metrics are absolute differences on hard predictions
(here computed by fairlearn), and robust accuracy is accuracy on adversarial points built once from
the pre-unlearning model.
"""
from __future__ import annotations

import numpy as np
import torch
from fairlearn.metrics import demographic_parity_difference, equal_opportunity_difference

from .core import as_tensor, sample_losses


def evaluate(theta, x, y, s, x_adv) -> dict[str, float]:
    """accuracy, mean log-loss, |DP|, |EOP| and robust accuracy of head θ (percent for accuracies)."""
    theta, x, y_t = as_tensor(theta), as_tensor(x), as_tensor(y)
    with torch.no_grad():
        pred = (x @ theta > 0).long().numpy()
        pred_adv = (as_tensor(x_adv) @ theta > 0).long().numpy()
        loss = float(sample_losses(theta, x, y_t).mean())
    y, s = np.asarray(y), np.asarray(s)
    return {
        "accuracy": 100.0 * float((pred == y).mean()),
        "loss": loss,
        "dp": float(demographic_parity_difference(y, pred, sensitive_features=s)),
        "eop": float(equal_opportunity_difference(y, pred, sensitive_features=s)),
        "robust_accuracy": 100.0 * float((pred_adv == y).mean()),
    }
