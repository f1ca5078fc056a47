"""Unlearners that take per-sample weights ε (training weight 1 + ε_j; ε_j = −1 deletes j).

Reference: ``XinbaoQiao/Soft-Weighted-Machine-Unlearning`` — ``unlearn/IF.py`` (Newton update),
``trainer/train.py`` (weighted refit for LR, weighted last-layer fine-tuning with Adam,
lr = weight_decay = 1e-3, 30 full-batch epochs). The soft form of gradient ascent is not in the
released code; :func:`soft_gradient_ascent` documents our choice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ..registry import Registry
from .core import LinearInfluence, as_tensor, objective, sample_losses


@dataclass
class FittedHead:
    """What every unlearner starts from: θ̂, its training data and its influence object."""

    theta: np.ndarray
    x: np.ndarray
    y: np.ndarray
    infl: LinearInfluence


Unlearner = Callable[[FittedHead, np.ndarray, Any], np.ndarray]
UNLEARNERS: Registry[Unlearner] = Registry("soft-weighting unlearner")
"""name → ``fn(head, eps, cfg) -> θ``; ``cfg`` is the run's config, from which an unlearner reads
its own options (``cfg.finetune``, ``cfg.ga``). Registering one here makes it a config choice."""


def sample_weights(eps) -> torch.Tensor:
    """1 + ε clipped at 0: a negative training weight makes the objective unbounded below."""
    return torch.clamp(1.0 + as_tensor(eps), min=0.0)


def fit_logistic(x, y, l2_reg: float = 1.0, weights=None, theta0=None, tol: float = 1e-10,
                 max_iter: int = 100) -> np.ndarray:
    """Exact minimiser of Σ w_j ℓ_j + l2_reg/2 ‖θ‖² by Newton's method with backtracking.

    Stands in for sklearn's ``LogisticRegression(fit_intercept=False, C=1/l2_reg,
    solver="newton-cg", tol=1e-8)`` of the reference, in float64 so leave-one-out refits are exact.
    """
    x, y = as_tensor(x), as_tensor(y)
    w = torch.ones(len(y), dtype=x.dtype) if weights is None else as_tensor(weights)
    theta = torch.zeros(x.shape[1], dtype=x.dtype) if theta0 is None else as_tensor(theta0).clone()
    eye = torch.eye(x.shape[1], dtype=x.dtype)
    f = objective(theta, x, y, l2_reg, w)
    for _ in range(max_iter):
        p = torch.sigmoid(x @ theta)
        g = x.T @ (w * (p - y)) + l2_reg * theta
        h = (x * (w * p * (1 - p))[:, None]).T @ x + l2_reg * eye
        step = torch.linalg.solve(h, g)
        decrement = float(g.dot(step))
        t = 1.0
        while True:
            cand = theta - t * step
            f_new = objective(cand, x, y, l2_reg, w)
            if f_new <= f - 0.25 * t * decrement or t < 1e-8:
                break
            t *= 0.5
        theta, f = cand, f_new
        if decrement / 2 <= tol:
            break
    return theta.numpy()


def influence_update(infl: LinearInfluence, eps) -> np.ndarray:
    """θ̂ − H⁻¹ Σ_j ε_j g_j (one Newton step on the re-weighted objective)."""
    return infl.newton_update(eps)


def weighted_retrain(x, y, eps, l2_reg: float = 1.0) -> np.ndarray:
    """Refit from scratch on weights 1 + ε (hard: only the ε = 0 points count)."""
    return fit_logistic(x, y, l2_reg, weights=sample_weights(eps))


def _adam(theta, loss_fn, lr: float, weight_decay: float, epochs: int) -> np.ndarray:
    theta = as_tensor(theta).clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        opt.zero_grad()
        loss_fn(theta).backward()
        opt.step()
    return theta.detach().numpy()


def weighted_finetune(theta, x, y, eps, lr: float = 1e-3, weight_decay: float = 1e-3,
                      epochs: int = 30) -> np.ndarray:
    """Full-batch Adam on mean_j (1 + ε_j) ℓ_j, starting from θ̂ (the reference NN branch)."""
    x, y, w = as_tensor(x), as_tensor(y), sample_weights(eps)
    return _adam(theta, lambda t: (w * sample_losses(t, x, y)).mean(), lr, weight_decay, epochs)


def soft_gradient_ascent(theta, x, y, eps, lr: float = 1e-3, epochs: int = 30) -> np.ndarray:
    """Full-batch Adam on Σ_j ε_j ℓ_j / Σ_j |ε_j|, starting from θ̂.

    Our choice (the released code has no soft GA): with hard weights this is plain gradient
    ascent on the mean loss of the deleted points; soft weights ascend on down-weighted points
    (ε_j < 0) and descend on up-weighted ones (ε_j > 0), in proportion to |ε_j|. The
    normalisation makes the step size independent of the overall weight scale.
    """
    x, y, e = as_tensor(x), as_tensor(y), as_tensor(eps)
    total = float(e.abs().sum())
    if total == 0.0:
        return np.asarray(as_tensor(theta).numpy())
    return _adam(theta, lambda t: (e * sample_losses(t, x, y)).sum() / total, lr, 0.0, epochs)


@UNLEARNERS.register("influence")
def _influence(head: FittedHead, eps, cfg) -> np.ndarray:
    return influence_update(head.infl, eps)


@UNLEARNERS.register("retrain")
def _retrain(head: FittedHead, eps, cfg) -> np.ndarray:
    return weighted_retrain(head.x, head.y, eps, head.infl.l2_reg)


@UNLEARNERS.register("finetune")
def _finetune(head: FittedHead, eps, cfg) -> np.ndarray:
    return weighted_finetune(head.theta, head.x, head.y, eps, **cfg.finetune.model_dump())


@UNLEARNERS.register("ga")
def _ga(head: FittedHead, eps, cfg) -> np.ndarray:
    return soft_gradient_ascent(head.theta, head.x, head.y, eps, **cfg.ga.model_dump())
