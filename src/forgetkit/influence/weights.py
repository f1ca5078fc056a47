"""Per-sample unlearning weights ε from influence values: the hard scheme and the soft schemes.

Convention (reference ``XinbaoQiao/Soft-Weighted-Machine-Unlearning``, ``SEC-5-*.py``): a sample
gets training weight ``1 + ε_j``; ``ε_j = −1`` deletes it. With ``I_F(j) = g_jᵀ H⁻¹ ∇F`` the
predicted change of F after the weighted Newton update is ``ΔF = −εᵀ I_F``.

**Sign of the gap.** The reference always asks for ``ΔF = −|f0|``. That is right for a loss
(robustness) or when the DP/EOP gap is positive, but when the signed gap f0 is negative it asks
F to fall further below zero, i.e. it *doubles* the violation. Here every scheme first calls
:func:`orient`, which multiplies F (and so I_F) by sign(f0): the task becomes the non-negative
loss ``F' = |F|`` near θ̂, which the schemes drive towards 0 by ``Δ = target_fraction · |f0|``.
"""
from __future__ import annotations

import cvxpy as cp
import numpy as np

SCHEMES = ("hard", "soft-2.0", "soft-2.1", "soft-2.2", "soft-2.3", "qp")


class InfeasibleTargetError(ValueError):
    """No weights satisfy the requested target under the constraints."""


def orient(infl_task, f0: float) -> tuple[np.ndarray, float]:
    """(sign(f0)·I_F, |f0|): turn a signed gap into a loss whose target change is −|f0|."""
    sign = -1.0 if f0 < 0 else 1.0
    return sign * np.asarray(infl_task, dtype=np.float64), abs(float(f0))


def hard_weights(infl, fraction: float = 0.2) -> np.ndarray:
    """ε = −1 on the ⌊fraction·n⌋ samples with the most negative (oriented) influence, else 0.

    Those are the samples whose removal lowers the task loss most: ``np.argsort(infl)[:k]`` with
    ``k = int(n·fraction)`` in the reference ``SEC-5-2-0-*.py`` (floor, not rounding).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"hard fraction must be in [0, 1], got {fraction}")
    infl = np.asarray(infl, dtype=np.float64)
    eps = np.zeros_like(infl)
    eps[np.argsort(infl, kind="stable")[: int(fraction * len(infl))]] = -1.0
    return eps


def soft_weights_2_0(infl, lam: float) -> np.ndarray:
    """argmin −εᵀI + λ‖ε‖²  →  ε = I / (2λ)."""
    return np.asarray(infl, dtype=np.float64) / (2.0 * lam)


def soft_weights_2_1(infl, delta: float) -> np.ndarray:
    """Minimum-norm ε with εᵀI = Δ:  ε = Δ·I / ‖I‖²."""
    infl = np.asarray(infl, dtype=np.float64)
    norm2 = infl.dot(infl)
    if norm2 == 0.0:
        raise InfeasibleTargetError("all task influences are zero: no weighting changes the task")
    return delta * infl / norm2


def soft_weights_2_2(infl, infl_util, lam: float) -> np.ndarray:
    """argmin −εᵀI + λ‖ε‖² s.t. εᵀI_U ≥ 0 (no first-order utility loss).

    KKT: ε = (I + β I_U)/(2λ) with β = max(0, −IᵀI_U/‖I_U‖²); the reference skips the β ≥ 0 check
    in its main scripts, which turns an inactive constraint into an equality.
    """
    infl, util = np.asarray(infl, np.float64), np.asarray(infl_util, np.float64)
    beta = max(0.0, -infl.dot(util) / util.dot(util)) if util.dot(util) > 0 else 0.0
    return (infl + beta * util) / (2.0 * lam)


def soft_weights_2_3(infl, infl_util, delta: float, tol: float = 1e-10) -> np.ndarray:
    """Minimum-norm ε with εᵀI = Δ and εᵀI_U = 0 (the paper's main scheme):

        ε = Δ (‖I_U‖² I − (IᵀI_U) I_U) / (‖I‖²‖I_U‖² − (IᵀI_U)²).

    When the two influence vectors are (nearly) collinear the target cannot be met without a
    first-order utility change; the reference then returns uniform weights 1/n, here it raises.
    """
    infl, util = np.asarray(infl, np.float64), np.asarray(infl_util, np.float64)
    a, b, c = infl.dot(infl), util.dot(util), infl.dot(util)
    det = a * b - c * c
    if det <= tol * max(a * b, np.finfo(float).tiny):
        raise InfeasibleTargetError(
            "task and utility influences are collinear: the target cannot be reached with zero "
            "first-order utility change (use soft-2.1 or qp with utility_tolerance > 0)")
    return delta * (b * infl - c * util) / det


def qp_weights(infl, infl_util, delta: float, lam: float = 1.0, task_weight: float = 0.0,
               utility_tolerance: float = 0.0, lower: float | None = None,
               upper: float | None = None, solver: str = "CLARABEL") -> np.ndarray:
    """General soft weights by a convex QP solved with cvxpy (Clarabel or OSQP)::

        min  λ‖ε‖² − task_weight · εᵀI
        s.t. εᵀI ≥ Δ                     (predicted task change ≤ −Δ)
             εᵀI_U ≥ −utility_tolerance  (predicted utility-loss increase ≤ tolerance)
             lower ≤ ε_j ≤ upper         (optional box; lower = −1 forbids negative weights)

    With ``task_weight = 0`` and both constraints active this is soft-2.3; with ``task_weight = 1``
    and inactive constraints it is soft-2.0. Raises :class:`InfeasibleTargetError` when no ε
    satisfies the constraints, ``RuntimeError`` when the solver fails otherwise.
    """
    infl, util = np.asarray(infl, np.float64), np.asarray(infl_util, np.float64)
    eps = cp.Variable(len(infl))
    constraints = [infl @ eps >= delta, util @ eps >= -utility_tolerance]
    if lower is not None:
        constraints.append(eps >= lower)
    if upper is not None:
        constraints.append(eps <= upper)
    problem = cp.Problem(cp.Minimize(lam * cp.sum_squares(eps) - task_weight * (infl @ eps)),
                         constraints)
    try:
        problem.solve(solver=solver)
    except cp.error.SolverError as err:
        raise RuntimeError(f"QP solver {solver} failed: {err}") from err
    if problem.status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        raise InfeasibleTargetError(
            f"no weights reach the target Δ={delta:.4g} within bounds [{lower}, {upper}] and "
            f"utility tolerance {utility_tolerance} (solver {solver}: {problem.status})")
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise RuntimeError(f"QP solver {solver} ended with status {problem.status}")
    return np.asarray(eps.value, dtype=np.float64)


def compute_weights(scheme: str, infl_task, infl_util, f0: float, hard_fraction: float = 0.2,
                    target_fraction: float = 1.0, lam: float = 1.0, **qp_options) -> np.ndarray:
    """Weights for ``scheme`` after orienting the task by the sign of its value ``f0``.

    ``target_fraction`` scales the requested change: 1.0 = the reference's "cancel F to first
    order" (Δ = |f0|). ``lam`` is λ of soft-2.0/2.2/qp; ``qp_options`` go to :func:`qp_weights`.
    """
    infl, delta = orient(infl_task, f0)
    delta *= target_fraction
    if scheme == "hard":
        return hard_weights(infl, hard_fraction)
    if scheme == "soft-2.0":
        return soft_weights_2_0(infl, lam)
    if scheme == "soft-2.1":
        return soft_weights_2_1(infl, delta)
    if scheme == "soft-2.2":
        return soft_weights_2_2(infl, infl_util, lam)
    if scheme == "soft-2.3":
        return soft_weights_2_3(infl, infl_util, delta)
    if scheme == "qp":
        return qp_weights(infl, infl_util, delta, lam=lam, **qp_options)
    raise ValueError(f"unknown weighting scheme {scheme!r}; choose one of {SCHEMES}")
