"""SVD: gradient-free class unlearning by projecting weights off forget-only activation spaces.

Source: Kodge, Saha & Roy, "Deep Unlearning: Fast and Efficient Gradient-free Class Forgetting",
TMLR 2024; reference ``sangamesh-kodge/class_forgetting`` ``main.py`` (``our_unlearn``,
``get_projection_matrix``) and ``models/model_utils.py`` (conv activations); defaults from its
``scripts/our_*.sh`` for CIFAR-10 VGG11-BN (900 samples, α_r = 100, α_f = 3).

For every ``nn.Linear`` and ``nn.Conv2d`` (groups = 1) the original model's layer inputs on a few
retain samples (R) and forget samples (F) give activation matrices; their SVDs give scaled
projections M = U·diag(α·r/((α−1)·r+1))·Uᵀ with r_i = s_i²/Σs_j². The weight is replaced by
W·Pᵀ with P = I − (M_f − M_f·M_r): the directions the forget class uses and the retain classes do
not are removed. Biases and normalisation layers are untouched; one pass, no gradients.

Conv layers use unfolded k×k patches from a random 3k×3k crop of the (zero-padded) input map,
shuffled and capped at ``max_patches``, as in the reference. Tabular MLPs use the linear path
only. Any other module with weights (Conv1d, grouped conv, attention, embeddings) is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Split, as_float
from .base import METHODS, Method

UNTOUCHED = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)


def projected_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Linear and Conv2d layers the method projects; raises for any other weighted module."""
    layers = {}
    for name, m in model.named_modules():
        own = list(m.parameters(recurse=False))
        if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1):
            layers[name] = m
        elif own and not isinstance(m, UNTOUCHED):
            raise ValueError(f"svd supports nn.Linear and nn.Conv2d (groups=1) layers only; layer "
                             f"{name!r} is {type(m).__name__}"
                             + (f" with groups={m.groups}" if isinstance(m, nn.Conv2d) else ""))
    if not layers:
        raise ValueError("svd found no nn.Linear or nn.Conv2d layer to project")
    return layers


def conv_patches(x: torch.Tensor, conv: nn.Conv2d, max_patches: int, gen: torch.Generator) -> torch.Tensor:
    """(C·k·k) × P matrix of input patches from one random 3k×3k crop per sample, shuffled, capped."""
    if isinstance(conv.padding, str):
        raise ValueError(f"svd does not support string padding {conv.padding!r} in Conv2d")
    ph, pw = conv.padding
    x = F.pad(x, (pw, pw, ph, ph))
    kh, kw = conv.kernel_size
    ch, cw = min(3 * kh, x.shape[2]), min(3 * kw, x.shape[3])
    crops = []
    for xi in x:
        top = int(torch.randint(0, x.shape[2] - ch + 1, (1,), generator=gen))
        left = int(torch.randint(0, x.shape[3] - cw + 1, (1,), generator=gen))
        crops.append(xi[:, top:top + ch, left:left + cw])
    cols = F.unfold(torch.stack(crops), conv.kernel_size, dilation=conv.dilation, stride=conv.stride)
    cols = cols.transpose(0, 1).reshape(cols.shape[1], -1)
    order = torch.randperm(cols.shape[1], generator=gen)[:max_patches]
    return cols[:, order.to(cols.device)]


def layer_activations(model: nn.Module, layers: dict[str, nn.Module], x: torch.Tensor, batch_size: int,
                      max_patches: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Features × samples activation matrix of every layer's input on ``x`` (float64)."""
    acts: dict[str, list[torch.Tensor]] = {n: [] for n in layers}

    def hook(name, module):
        def fn(_m, inputs, _out):
            a = inputs[0].detach()
            if isinstance(module, nn.Conv2d):
                acts[name].append(conv_patches(a, module, max_patches, gen).double())
            else:
                acts[name].append(a.reshape(-1, a.shape[-1]).T.double())
        return fn

    handles = [m.register_forward_hook(hook(n, m)) for n, m in layers.items()]
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                model(as_float(x[start:start + batch_size]))
    finally:
        for h in handles:
            h.remove()
    out = {}
    for n, chunks in acts.items():
        a = torch.cat(chunks, 1)
        if isinstance(layers[n], nn.Conv2d) and a.shape[1] > max_patches:
            a = a[:, torch.randperm(a.shape[1], generator=gen)[:max_patches].to(a.device)]
        out[n] = a
    return out


def scaled_projection(a: torch.Tensor, alpha: float) -> torch.Tensor:
    """M = U·diag(α·r/((α−1)·r+1))·Uᵀ from the SVD of the activation matrix ``a``."""
    u, s, _ = torch.linalg.svd(a, full_matrices=False)
    r = s.square() / s.square().sum().clamp_min(1e-300)
    scale = alpha * r / ((alpha - 1) * r + 1)
    return (u * scale) @ u.T


def retain_sample(retain: Split, forget_classes: tuple[int, ...], num_classes: int, total: int) -> torch.Tensor:
    """The first ⌊total/(C−|forget classes|)⌋ samples of every retain class (reference order)."""
    kept = [c for c in range(num_classes) if c not in forget_classes]
    per_class = max(1, total // len(kept))
    idx = [torch.nonzero(retain.y == c).flatten()[:per_class] for c in kept]
    return torch.cat(idx)


@METHODS.register("svd")
@dataclass
class SVD(Method):
    description: ClassVar[str] = "class unlearning by SVD projections of layer weights (gradient-free)"
    paper_name: ClassVar[str] = "SVD"
    tune_space: ClassVar[dict] = {
        "alpha_r": {"low": 1.0, "high": 1000.0, "log": True},
        "alpha_f": {"low": 1.0, "high": 30.0, "log": True},
    }
    needs: ClassVar[frozenset] = frozenset({"forget", "retain"})
    class_only: ClassVar[bool] = True

    samples: int = 900
    """activation samples: this many forget samples, and samples/(C−1) per retain class (CIFAR-10: 900)"""
    alpha_r: float = 100.0
    """scaling α of the retain-space projection (CIFAR-10 VGG11-BN script)"""
    alpha_f: float = 3.0
    """scaling α of the forget-space projection (CIFAR-10 VGG11-BN script)"""
    max_patches: int = 10000
    """cap on conv patches per layer and set (reference: 10000)"""
    batch_size: int = 256
    """forward-pass batch size when collecting activations"""

    def __post_init__(self):
        if self.samples < 1 or self.max_patches < 1 or self.batch_size < 1:
            raise ValueError("samples, max_patches and batch_size must be >= 1")
        if self.alpha_r <= 0 or self.alpha_f <= 0:
            raise ValueError("alpha_r and alpha_f must be > 0")

    def run(self, model, ctx, prepared, progress):
        dev = ctx.device
        model.eval()
        layers = projected_layers(model)
        gen = ctx.generator(31)
        f_idx = torch.randperm(len(ctx.forget), generator=gen)[:self.samples]
        r_idx = retain_sample(ctx.retain, ctx.forget_classes, ctx.num_classes, self.samples)
        act_f = layer_activations(model, layers, ctx.forget.x[f_idx].to(dev), self.batch_size,
                                  self.max_patches, gen)
        act_r = layer_activations(model, layers, ctx.retain.x[r_idx].to(dev), self.batch_size,
                                  self.max_patches, gen)
        with torch.no_grad():
            for i, (name, layer) in enumerate(layers.items()):
                m_f = scaled_projection(act_f[name], self.alpha_f)
                m_r = scaled_projection(act_r[name], self.alpha_r)
                p = torch.eye(len(m_f), dtype=m_f.dtype, device=m_f.device) - (m_f - m_f @ m_r)
                w = layer.weight
                w.copy_((w.flatten(1).double() @ p.T).view_as(w).to(w.dtype))
                if progress is not None:
                    progress(i + 1, len(layers))
        return {"layers": list(layers), "retain_samples": len(r_idx), "forget_samples": len(f_idx)}
