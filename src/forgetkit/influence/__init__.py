"""Soft-weighted influence unlearning for fairness and robustness.

Paper: Qiao et al., "Soft Weighted Machine Unlearning", AAAI 2026. Reference code:
``XinbaoQiao/Soft-Weighted-Machine-Unlearning`` (``SEC-5-2-0-*.py``, ``model.py``,
``unlearn/IF.py``); data definitions: ``brandeis-machine-learning/influence-fairness``.
"""
from .core import LinearInfluence, SingularHessianError, objective, per_sample_grads, sample_losses
from .targets import adversarial_points, dp_gap, eop_gap, make_task, robust_loss, utility_loss
from .weights import (InfeasibleTargetError, compute_weights, hard_weights, orient, qp_weights,
                      soft_weights_2_0, soft_weights_2_1, soft_weights_2_2, soft_weights_2_3)
from .unlearners import (fit_logistic, influence_update, soft_gradient_ascent, weighted_finetune,
                         weighted_retrain)
from .metrics import evaluate

__all__ = ["LinearInfluence", "SingularHessianError", "InfeasibleTargetError", "objective",
           "per_sample_grads", "sample_losses", "adversarial_points", "dp_gap", "eop_gap",
           "make_task", "robust_loss", "utility_loss", "compute_weights", "hard_weights", "orient",
           "qp_weights", "soft_weights_2_0", "soft_weights_2_1", "soft_weights_2_2",
           "soft_weights_2_3", "fit_logistic", "influence_update", "soft_gradient_ascent",
           "weighted_finetune", "weighted_retrain", "evaluate"]
from . import experiment  # noqa: F401,E402  registers the soft-weighting experiment kind
