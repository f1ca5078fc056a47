"""Parameter masks M: which coordinates unlearning may change.

A mask maps parameter names to boolean tensors (True = trainable). The engine guarantees masked
coordinates stay exactly fixed, weight decay and momentum included (the 2026 SalUn fix).
"""
from __future__ import annotations

import torch
from torch import nn

Mask = dict[str, torch.Tensor]


def last_layer_mask(model: nn.Module) -> Mask:
    """Only the final ``nn.Linear`` may change."""
    last = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    return {n: torch.full_like(p, n.startswith(last + "."), dtype=torch.bool)
            for n, p in model.named_parameters()}


def top_fraction_mask(scores: dict[str, torch.Tensor], fraction: float) -> Mask:
    """Keep the globally top ``fraction`` of coordinates by score (SalUn's hard threshold)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"mask fraction must be in (0, 1], got {fraction}")
    flat = torch.cat([s.flatten() for s in scores.values()])
    k = max(1, int(round(fraction * flat.numel())))
    threshold = torch.topk(flat, k).values.min()
    return {n: s >= threshold for n, s in scores.items()}


def random_layers_mask(model: nn.Module, k: int, generator: torch.Generator) -> Mask:
    """Only ``k`` randomly drawn parametrised layers (modules with direct parameters) may change."""
    layers = [n for n, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    if not 1 <= k <= len(layers):
        raise ValueError(f"cannot choose {k} layers from a model with {len(layers)} parametrised layers")
    chosen = {layers[i] for i in torch.randperm(len(layers), generator=generator)[:k].tolist()}
    return {n: torch.full_like(p, n.rsplit(".", 1)[0] in chosen, dtype=torch.bool)
            for n, p in model.named_parameters()}
