"""IU: influence unlearning with a WoodFisher inverse-Fisher–vector product (one closed-form step).

Source: Izzo et al. 2021 / Koh & Liang 2017 as run in "Model Sparsity Can Simplify Machine
Unlearning" (Jia et al., NeurIPS'23) and SalUn (Fan et al., ICLR'24); reference
``OPTML-Group/Unlearn-Saliency`` ``Classification/unlearn/Wfisher.py`` (same effect as
``OPTML-Group/Unlearn-Sparse`` ``unlearn/Wfisher.py``, whose second ``woodfisher`` is the one used).

The step is θ ← θ + α·F⁻¹v with v = ∇L_f·n_f/(n_f+n_r) − ∇L_r·n_f/(n_f+n_r) (mean losses), i.e.
the summed forget gradient minus the rescaled retain gradient, and F the empirical Fisher of the
first ``fisher_samples``+1 retain samples (unshuffled, batch size 1, as in the reference loader).

Fidelity switch ``recursion``:
- ``"as_coded"`` (default, reference behaviour): one running vector ``o`` stands for F⁻¹g; for each
  retain gradient g: t = o·g, k ← k − (k·g)/(N+t)·o, o ← o − t/(N+t)·o. Not textbook WoodFisher.
- ``"textbook"``: the exact inverse of λI + (1/N)·Σ g gᵀ applied to v through the Woodbury identity,
  which is what the full WoodFisher recursion computes; it holds the N×d gradient matrix in memory
  (capped by ``max_memory_mb``).

Memory: per-sample gradients are computed with ``torch.func`` (vmap of grad) in chunks of
``chunk_size``; the as-coded recursion keeps only three parameter-sized vectors. For big models,
``param_scope="last_layer"`` restricts the step to the final ``nn.Linear`` (a documented approximation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ..data.base import Split, as_float
from ..models import last_linear
from ..unlearn.grads import accumulate_grads
from .base import METHODS, Method

RECURSIONS = ("as_coded", "textbook")
PARAM_SCOPES = ("all", "last_layer")


def selected_params(model: nn.Module, scope: str) -> dict[str, nn.Parameter]:
    """Trainable parameters the step moves: all of them, or those of the last ``nn.Linear``."""
    if scope == "all":
        return {n: p for n, p in model.named_parameters() if p.requires_grad}
    head = {id(p) for p in last_linear(model).parameters()}
    return {n: p for n, p in model.named_parameters() if id(p) in head and p.requires_grad}


def summed_grad(model: nn.Module, params: dict[str, nn.Parameter], data: Split, batch_size: int,
                device: torch.device) -> torch.Tensor:
    """Σ_i ∇ℓ(x_i) over a split as one flat vector (eval mode, so per-sample terms are independent)."""
    sums, _ = accumulate_grads(model, data, batch_size, lambda out, y: F.cross_entropy(out.float(), y, reduction="sum"),
                               train=False, device=device, params=params, combine=lambda g: g.double())
    return torch.cat([sums[n].reshape(-1) for n in params]).to(device)


def per_sample_grads(model: nn.Module, params: dict[str, nn.Parameter], data: Split, chunk_size: int,
                     device: torch.device):
    """Yield flat per-sample gradients, ``chunk_size`` rows at a time (torch.func vmap of grad)."""
    fixed = {n: p.detach() for n, p in model.named_parameters() if n not in params}
    buffers = dict(model.named_buffers())

    def loss_one(theta, x, y):
        out = functional_call(model, ({**fixed, **theta}, buffers), (x.unsqueeze(0),))
        return F.cross_entropy(out.float(), y.unsqueeze(0))

    g_fn = vmap(grad(loss_one), in_dims=(None, 0, 0))
    theta = {n: p.detach() for n, p in params.items()}
    for start in range(0, len(data), chunk_size):
        x = as_float(data.x[start:start + chunk_size].to(device))
        y = data.y[start:start + chunk_size].to(device)
        g = g_fn(theta, x, y)
        yield torch.cat([g[n].reshape(len(y), -1) for n in params], 1).double()


def woodfisher_as_coded(v: torch.Tensor, grads, n: int) -> torch.Tensor:
    """The reference recursion: ``o`` is a single running vector (first gradient only seeds it)."""
    k, o = v.clone(), None
    for chunk in grads:
        for g in chunk:
            if o is None:
                o = g.clone()
                continue
            t = o @ g
            k -= (k @ g) / (n + t) * o
            o -= t / (n + t) * o
    return k


def woodfisher_textbook(v: torch.Tensor, grads, n: int, damping: float, max_bytes: float) -> torch.Tensor:
    """(λI + GᵀG/N)⁻¹v = (v − Gᵀ(NλI + GGᵀ)⁻¹Gv)/λ: the exact inverse the WoodFisher recursion builds."""
    rows, size = [], 0
    for chunk in grads:
        size += chunk.numel() * chunk.element_size()
        if size > max_bytes:
            raise ValueError(f"textbook WoodFisher needs more than {max_bytes / 2**20:.0f} MiB for the "
                             "per-sample gradient matrix; lower fisher_samples, use param_scope='last_layer' "
                             "or raise max_memory_mb")
        rows.append(chunk)
    g = torch.cat(rows)
    gram = g @ g.T + n * damping * torch.eye(len(g), dtype=g.dtype, device=g.device)
    return (v - g.T @ torch.linalg.solve(gram, g @ v)) / damping


@METHODS.register("iu")
@dataclass
class IU(Method):
    description: ClassVar[str] = "influence unlearning: one WoodFisher inverse-Fisher step (closed form)"
    paper_name: ClassVar[str] = "IU"
    tune_space: ClassVar[dict] = {
        "alpha": {"low": 0.01, "high": 10.0, "log": True},
        "damping": {"low": 0.01, "high": 10.0, "log": True},
    }
    smoke_caps: ClassVar[dict[str, int | float]] = {"fisher_samples": 200}
    """the WoodFisher recursion is one rank-one update per sample: the smoke run's largest cost"""
    needs: ClassVar[frozenset] = frozenset({"forget", "retain"})

    alpha: float = 0.2
    """step size α on F⁻¹v (reference ``--alpha`` default; the paper tunes it in 1–20, third-party
    CIFAR-10 scripts use 10, which overshoots on the CPU preset's small CNN: docs/results/baselines.md)"""
    fisher_samples: int = 1000
    """N: retain samples in the Fisher recursion and its 1/N scale (reference: 1000)"""
    recursion: str = "as_coded"
    """as_coded (reference single-vector recursion) or textbook (exact damped-Fisher inverse)"""
    damping: float = 1.0
    """λ of the textbook Fisher λI + GᵀG/N (1 matches the as-coded recursion's identity start)"""
    param_scope: str = "all"
    """which parameters move: all (reference) or last_layer (for models too big for d-sized work)"""
    batch_size: int = 256
    """batch size of the summed forget/retain gradients (reference: 256)"""
    chunk_size: int = 64
    """per-sample gradients computed at once (bounds memory: chunk_size × d floats)"""
    max_memory_mb: float = 2048.0
    """cap on the N×d gradient matrix of the textbook recursion"""

    def __post_init__(self):
        if self.recursion not in RECURSIONS:
            raise ValueError(f"recursion must be one of {RECURSIONS}, got {self.recursion!r}")
        if self.param_scope not in PARAM_SCOPES:
            raise ValueError(f"param_scope must be one of {PARAM_SCOPES}, got {self.param_scope!r}")
        if self.fisher_samples < 1 or self.damping <= 0 or self.chunk_size < 1 or self.batch_size < 1:
            raise ValueError("fisher_samples, chunk_size and batch_size must be >= 1 and damping > 0")

    def run(self, model, ctx, prepared, progress):
        dev = ctx.device
        model.eval()
        params = selected_params(model, self.param_scope)
        n_f, n_r = len(ctx.forget), len(ctx.retain)
        n = n_f + n_r
        g_f = summed_grad(model, params, ctx.forget, self.batch_size, dev) / n
        g_r = summed_grad(model, params, ctx.retain, self.batch_size, dev) * n_f / (n * n_r)
        v = g_f - g_r
        fisher = ctx.retain.subset(range(min(n_r, self.fisher_samples + 1)))
        grads = per_sample_grads(model, params, fisher, self.chunk_size, dev)
        if self.recursion == "as_coded":
            k = woodfisher_as_coded(v, grads, self.fisher_samples)
        else:
            k = woodfisher_textbook(v, grads, self.fisher_samples, self.damping, self.max_memory_mb * 2**20)
        if not torch.isfinite(k).all():
            raise FloatingPointError("IU step is not finite")
        with torch.no_grad():
            offset = 0
            for p in params.values():
                p.add_((self.alpha * k[offset:offset + p.numel()]).view_as(p).to(p.dtype))
                offset += p.numel()
        if progress is not None:
            progress(1, 1)
        return {"step_norm": float(self.alpha * k.norm()), "fisher_samples": len(fisher)}
