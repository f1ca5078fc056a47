"""Parameter masks M: which coordinates unlearning may change.

A mask maps parameter names to boolean tensors (True = trainable). The engine guarantees masked
coordinates stay exactly fixed, weight decay and momentum included (the 2026 SalUn fix).
"""
from __future__ import annotations

import torch
from torch import nn

Mask = dict[str, torch.Tensor]


def top_fraction_mask(scores: dict[str, torch.Tensor], fraction: float) -> Mask:
    """Exactly ⌊fraction·N⌋ coordinates with the highest scores (SalUn's hard threshold).

    As SalUn's ``Classification/generate_mask.py`` (``save_gradient_ratio``): coordinates are ranked
    over all parameters by descending score and those ranked below ``int(N·fraction)`` are kept.
    Ties (e.g. the many zero-saliency weights of always-black pixels or dead ReLUs) are broken by a
    stable order, parameter order then position, so the count never exceeds the fraction.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"mask fraction must be in (0, 1], got {fraction}")
    flat = torch.cat([s.detach().flatten().float() for s in scores.values()])
    k = int(fraction * flat.numel())
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.sort(flat, descending=True, stable=True).indices[:k]] = True
    out, start = {}, 0
    for n, s in scores.items():
        out[n] = keep[start:start + s.numel()].view(s.shape)
        start += s.numel()
    return out


def random_layers_mask(model: nn.Module, k: int, generator: torch.Generator) -> Mask:
    """Only ``k`` randomly drawn parametrised layers (modules with direct parameters) may change."""
    layers = [n for n, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    if not 1 <= k <= len(layers):
        raise ValueError(f"cannot choose {k} layers from a model with {len(layers)} parametrised layers")
    chosen = {layers[i] for i in torch.randperm(len(layers), generator=generator)[:k].tolist()}
    return {n: torch.full_like(p, n.rsplit(".", 1)[0] in chosen, dtype=torch.bool)
            for n, p in model.named_parameters()}
