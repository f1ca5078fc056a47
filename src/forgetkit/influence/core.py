"""Influence functions for a binary logistic head θ (no bias) with an L2 penalty.

Following the soft-weighting reference code (``XinbaoQiao/Soft-Weighted-Machine-Unlearning``,
``model.py``): the unlearned parameters are a logistic-regression weight vector, either on the raw
features ("LR") or on a frozen MLP's penultimate embedding ("NN last layer"). The training
objective is the *summed* log-loss plus ``l2_reg/2 · ‖θ‖²``, so

    H = Σ_j p_j (1 − p_j) x_j x_jᵀ + l2_reg · I,    I_F(j) = g_jᵀ H⁻¹ ∇F(θ̂) ≈ F(θ̂_{−j}) − F(θ̂),

and up-weighting sample j by ε_j moves θ by ``−H⁻¹ Σ_j ε_j g_j`` (one Newton step), so the
predicted change of F is ``−εᵀ I_F``. Gradients and Hessians come from ``torch.func``; the
inverse-Hessian-vector products use a SciPy Cholesky factor (exact, for the small heads here) or
conjugate gradient on Hessian-vector products (``method="cg"``, for long parameter vectors).
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
import torch
from torch.func import grad, hessian, jvp, vmap

DTYPE = torch.float64


class SingularHessianError(np.linalg.LinAlgError):
    """The Hessian is (numerically) singular and damping was not allowed."""


def as_tensor(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a) if not torch.is_tensor(a) else a).to(DTYPE)


def sample_losses(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample binary log-loss of logits ``x @ θ`` (labels in {0, 1})."""
    z = x @ theta
    return torch.nn.functional.softplus(z) - y * z


def objective(theta, x, y, l2_reg: float, weights=None) -> torch.Tensor:
    """Σ_j w_j ℓ_j(θ) + l2_reg/2 ‖θ‖², the training loss the influence is taken of."""
    losses = sample_losses(theta, x, y)
    if weights is not None:
        losses = losses * weights
    return losses.sum() + 0.5 * l2_reg * theta.dot(theta)


def _one_loss(theta, x, y):
    return sample_losses(theta, x[None], y[None])[0]


def per_sample_grads(theta, x, y) -> torch.Tensor:
    """n×d matrix of g_j = ∇_θ ℓ_j(θ) (un-regularised, as in the reference)."""
    return vmap(grad(_one_loss), in_dims=(None, 0, 0))(theta, x, y)


def objective_hessian(theta, x, y, l2_reg: float) -> torch.Tensor:
    """Exact d×d Hessian of :func:`objective`."""
    return hessian(objective)(theta, x, y, l2_reg)


def cholesky_factor(h: np.ndarray, damping: float = 0.0, auto_damping: bool = True,
                    rcond: float = 1e-12, max_tries: int = 12):
    """Cholesky factor of ``H + damping·I``; returns ``(factor, damping_used)``.

    A Hessian whose smallest Cholesky pivot² is below ``rcond`` × the largest counts as singular
    (it happens with ``l2_reg = 0`` and collinear one-hot columns, or dead ReLU units). With
    ``auto_damping`` the damping starts at ``rcond^½ · mean(diag H)`` and grows ×10 until the
    factor is well conditioned, with a warning; without it a :class:`SingularHessianError` says so.
    """
    d = h.shape[0]
    scale = float(np.mean(np.abs(np.diag(h)))) or 1.0
    lam = damping
    for _ in range(max_tries):
        try:
            factor = scipy.linalg.cho_factor(h + lam * np.eye(d), lower=True)
            piv = np.abs(np.diag(factor[0])) ** 2
            if piv.min() > rcond * piv.max():
                if lam != damping:
                    warnings.warn(f"singular Hessian: added damping {lam:.3g}·I", RuntimeWarning)
                return factor, lam
        except np.linalg.LinAlgError:
            pass
        if not auto_damping:
            raise SingularHessianError(
                f"the {d}×{d} Hessian is singular or not positive definite (damping={damping}); "
                "use l2_reg > 0, damping > 0 or auto_damping=True")
        lam = max(lam * 10.0, np.sqrt(rcond) * scale)
    raise SingularHessianError(f"Hessian still singular after damping up to {lam:.3g}")


class LinearInfluence:
    """Per-sample influence and Newton updates for a fitted logistic head.

    Parameters
    ----------
    l2_reg : the L2 coefficient the head was trained with (enters H as ``l2_reg·I``).
    method : ``"exact"`` (Hessian + Cholesky) or ``"cg"`` (conjugate gradient on
        Hessian-vector products; no d×d matrix, for long parameter vectors).
    damping : added to the Hessian diagonal (0 = the exact Hessian).
    auto_damping : on a singular Hessian, add the smallest damping that makes it invertible
        (with a warning) instead of raising :class:`SingularHessianError`.
    cg_tol, cg_maxiter : CG stopping rule (relative residual, iterations).
    """

    def __init__(self, l2_reg: float = 1.0, method: str = "exact", damping: float = 0.0,
                 auto_damping: bool = True, cg_tol: float = 1e-10, cg_maxiter: int = 1000):
        if method not in ("exact", "cg"):
            raise ValueError(f"method must be 'exact' or 'cg', got {method!r}")
        self.l2_reg, self.method, self.damping = l2_reg, method, damping
        self.auto_damping, self.cg_tol, self.cg_maxiter = auto_damping, cg_tol, cg_maxiter

    def fit(self, theta, x, y) -> "LinearInfluence":
        """Store θ̂ and the training data; compute per-sample gradients and H (or its HVP)."""
        self.theta_ = as_tensor(theta)
        self.x_, self.y_ = as_tensor(x), as_tensor(y)
        self.grads_ = per_sample_grads(self.theta_, self.x_, self.y_).numpy()
        self.damping_ = self.damping
        if self.method == "exact":
            h = objective_hessian(self.theta_, self.x_, self.y_, self.l2_reg).numpy()
            self.factor_, self.damping_ = cholesky_factor(h, self.damping, self.auto_damping)
        return self

    def hvp(self, v: np.ndarray) -> np.ndarray:
        """(H + damping·I) v by forward-over-reverse differentiation."""
        g = grad(objective)
        v_t = as_tensor(v)
        _, hv = jvp(lambda t: g(t, self.x_, self.y_, self.l2_reg), (self.theta_,), (v_t,))
        return hv.numpy() + self.damping_ * np.asarray(v)

    def inverse_hvp(self, v) -> np.ndarray:
        """H⁻¹ v."""
        v = np.asarray(v, dtype=np.float64)
        if self.method == "exact":
            return scipy.linalg.cho_solve(self.factor_, v)
        d = v.shape[0]
        op = scipy.sparse.linalg.LinearOperator((d, d), matvec=self.hvp, dtype=np.float64)
        out, info = scipy.sparse.linalg.cg(op, v, rtol=self.cg_tol, maxiter=self.cg_maxiter)
        if info != 0:
            raise SingularHessianError(
                f"conjugate gradient did not converge in {self.cg_maxiter} iterations; the "
                "Hessian may be singular (raise damping or l2_reg) or ill-conditioned")
        return out

    def influence(self, grad_target) -> np.ndarray:
        """I_F(j) = g_jᵀ H⁻¹ ∇F, the predicted change F(θ̂_{−j}) − F(θ̂) of removing j."""
        return self.grads_ @ self.inverse_hvp(np.asarray(grad_target, dtype=np.float64))

    def newton_update(self, eps) -> np.ndarray:
        """θ̂ − H⁻¹ Σ_j ε_j g_j: the weighted influence-function unlearner (``unlearn/IF.py``)."""
        return self.theta_.numpy() - self.inverse_hvp(self.grads_.T @ np.asarray(eps, np.float64))
