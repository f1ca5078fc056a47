"""Task functions F(θ) measured on the validation set, their gradients, and adversarial points.

Formulas from the reference code (``XinbaoQiao/Soft-Weighted-Machine-Unlearning``: ``fair_fn.py``
for the demographic-parity and FERM equal-opportunity surrogates, ``robust_fn.py`` /
``robust_fn_nn.py`` for the boundary-projection adversarial points). s = 1 is the privileged group.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.func import grad

from .core import as_tensor, sample_losses

TASKS = ("dp", "eop", "robustness")


def utility_loss(theta, x, y) -> torch.Tensor:
    """U: summed validation log-loss (the utility the soft weights must not hurt)."""
    return sample_losses(theta, x, y).sum()


def dp_gap(theta, x, s) -> torch.Tensor:
    """F_DP = mean σ(θᵀx) over s = 1 minus over s = 0 (signed; can be negative)."""
    p = torch.sigmoid(x @ theta)
    return p[s == 1].mean() - p[s == 0].mean()


def eop_gap(theta, x, y, s) -> torch.Tensor:
    """F_EOP = mean log-loss on {s=0, y=1} minus on {s=1, y=1} (FERM surrogate; signed)."""
    losses = sample_losses(theta, x, y)
    pos = y == 1
    return losses[pos & (s == 0)].mean() - losses[pos & (s == 1)].mean()


def adversarial_points(theta, x, overshoot: float = 1.3) -> torch.Tensor:
    """x − overshoot·(θᵀx)/‖θ‖²·θ: each point projected across the linear boundary (x 1.3)."""
    theta = as_tensor(theta)
    return as_tensor(x) - overshoot * ((as_tensor(x) @ theta) / theta.dot(theta))[:, None] * theta


def robust_loss(theta, x_adv, y) -> torch.Tensor:
    """F_rob: summed log-loss of the (fixed) adversarial points with their true labels."""
    return sample_losses(theta, x_adv, y).sum()


def make_task(task: str, theta0, x, y, s, overshoot: float = 1.3) -> Callable[[torch.Tensor], torch.Tensor]:
    """F(θ) for ``task`` on validation data; robustness points are built once from θ0 (pre model)."""
    x, y, s = as_tensor(x), as_tensor(y), torch.as_tensor(np.asarray(s))
    if task == "dp":
        _check_groups(s, s == s)
        return lambda t: dp_gap(t, x, s)
    if task == "eop":
        _check_groups(s, y == 1)
        return lambda t: eop_gap(t, x, y, s)
    if task == "robustness":
        x_adv = adversarial_points(theta0, x, overshoot)
        return lambda t: robust_loss(t, x_adv, y)
    raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")


def _check_groups(s, mask):
    for g in (0, 1):
        if not bool(((s == g) & mask).any()):
            raise ValueError(f"validation set has no samples with sensitive = {g} for this task")


def value_and_grad(fn: Callable, theta) -> tuple[float, np.ndarray]:
    """F(θ) and ∇F(θ) as NumPy (float64)."""
    theta = as_tensor(theta)
    return float(fn(theta)), grad(fn)(theta).numpy()
