"""Output-distribution evaluators (``metrics.extra``): ZRF, JS to Retrain, activation distance.

All three compare softmax outputs on the forget set (the training samples of the request) and are
in natural units, as the papers report them, not percentages:

- ``zrf``: Zero Retrain Forgetting score of Chundawat et al., "Can Bad Teaching Induce
  Forgetting? Unlearning in Deep Networks using an Incompetent Teacher", AAAI 2023:
  ZRF = 1 − (1/n_f)·Σ_i JS(M(x_i) ‖ T_d(x_i)), T_d a randomly initialised model of the same
  architecture. 1 means the model behaves like a random one on D_f. The reference code
  (``vikram2000b/bad-teaching-unlearning`` ``metrics.py::UnLearningScore``) computes
  ½·KL(m‖p) + ½·KL(m‖q) averaged over samples *and classes* instead; ``variant="reference_code"``
  reproduces it for comparison with numbers produced by that code.
- ``js_divergence``: mean per-sample JS divergence between the model's and the retrained model's
  outputs (the "JS Div" the same notebook prints, here with the paper's JS).
- ``activation_distance``: mean L2 distance between the two models' probability vectors
  (``metrics.py::actv_dist``; Chundawat et al., after Golatkar et al.).
"""
from __future__ import annotations

import torch
from torch import nn

from .core import predict_logits
from .evaluators import CellView, register_evaluator
from .shadows import fresh_copy

VARIANTS = ("paper", "reference_code")


def _check(p: torch.Tensor, q: torch.Tensor) -> None:
    if p.shape != q.shape or p.dim() != 2:
        raise ValueError(f"probability tables must both be N × C; got {tuple(p.shape)} and {tuple(q.shape)}")


def _kl_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row KL(a ‖ b) in nats with 0·log 0 = 0."""
    a, b = a.double(), b.double()
    return torch.where(a > 0, a * (a.log() - b.log()), torch.zeros_like(a)).sum(1)


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per-sample Jensen–Shannon divergence ½·KL(p‖m) + ½·KL(q‖m), m = (p+q)/2, in nats (≤ ln 2)."""
    _check(p, q)
    m = (p.double() + q.double()) / 2
    return 0.5 * _kl_rows(p, m) + 0.5 * _kl_rows(q, m)


def reference_code_divergence(p: torch.Tensor, q: torch.Tensor) -> float:
    """The reference code's "JSDiv": ½·KL(m‖p) + ½·KL(m‖q), averaged over all N·C entries."""
    _check(p, q)
    m = (p.double() + q.double()) / 2
    n_entries = p.numel()
    return float((0.5 * _kl_rows(m, p) + 0.5 * _kl_rows(m, q)).sum() / n_entries)


def zrf_score(p_model: torch.Tensor, p_random: torch.Tensor, variant: str = "paper") -> float:
    """ZRF = 1 − mean JS between the model's and an incompetent model's outputs."""
    _check_zrf({"variant": variant})
    if variant == "reference_code":
        return 1.0 - reference_code_divergence(p_model, p_random)
    return 1.0 - float(js_divergence(p_model, p_random).mean())


def activation_distance(p: torch.Tensor, q: torch.Tensor) -> float:
    """Mean over samples of the L2 distance between two probability vectors."""
    _check(p, q)
    return float((p.double() - q.double()).norm(dim=1).mean())


def _probs(model: nn.Module, cell: CellView) -> torch.Tensor:
    return torch.softmax(predict_logits(model, cell.forget.x, cell.device), 1)


def incompetent_model(template: nn.Module, seed: int, device: torch.device) -> nn.Module:
    """A freshly initialised copy of ``template``'s architecture, the same for every method of a seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fresh_copy(template).to(device).eval()


def _check_zrf(options: dict) -> None:
    variant = options.get("variant", "paper")
    if variant not in VARIANTS:
        raise ValueError(f"zrf variant must be one of {VARIANTS}, got {variant!r}")


@register_evaluator("zrf", check=_check_zrf)
def zrf_eval(cell: CellView, variant: str = "paper") -> dict:
    """ZRF on the forget set against a random initialisation seeded by the cell's seed."""
    random_model = incompetent_model(cell.original, cell.seed, cell.device)
    return {"ZRF": zrf_score(_probs(cell.model, cell), _probs(random_model, cell), variant)}


@register_evaluator("js_divergence")
def js_eval(cell: CellView) -> dict:
    """JS_retrain: mean JS divergence to the retrained model's outputs on the forget set (0 = same)."""
    return {"JS_retrain": float(js_divergence(_probs(cell.model, cell), _probs(cell.retrained, cell)).mean())}


@register_evaluator("activation_distance")
def activation_distance_eval(cell: CellView) -> dict:
    """ActDist_retrain: mean L2 distance to the retrained model's probabilities on the forget set."""
    return {"ActDist_retrain": activation_distance(_probs(cell.model, cell), _probs(cell.retrained, cell))}
