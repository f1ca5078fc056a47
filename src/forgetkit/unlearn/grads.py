"""Gradients accumulated over the mini-batches of a split: the one loop behind saliency masks
(SalUn), Fisher diagonals (SFRon), weight importance (L2UL) and summed gradients (IU)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..data.base import Split, as_float

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(model outputs on a batch, its labels) → scalar loss"""


def accumulate_grads(model: nn.Module, split: Split, batch_size: int, loss: LossFn, *, train: bool,
                     device: torch.device | None = None, params: dict[str, nn.Parameter] | None = None,
                     combine: Callable[[torch.Tensor], torch.Tensor] = lambda g: g
                     ) -> tuple[dict[str, torch.Tensor], int]:
    """(Σ_batches combine(∇_θ loss) per parameter, number of batches).

    Batches are consecutive slices of ``batch_size``; the model runs in train mode if ``train``
    (its mode is restored). A parameter the loss does not reach contributes combine(0).
    ``params`` defaults to every named parameter.
    """
    was_training = model.training
    model.train(train)
    params = dict(model.named_parameters()) if params is None else params
    sums: dict[str, torch.Tensor] = {}
    batches = 0
    try:
        for idx in torch.arange(len(split)).split(batch_size):
            x, y = split.x[idx], split.y[idx]
            if device is not None:
                x, y = x.to(device), y.to(device)
            value = loss(model(as_float(x)), y)
            grads = torch.autograd.grad(value, list(params.values()), allow_unused=True)
            for (n, p), g in zip(params.items(), grads):
                c = combine(torch.zeros_like(p) if g is None else g)
                sums[n] = c if n not in sums else sums[n] + c
            batches += 1
    finally:
        model.train(was_training)
    if not sums:
        sums = {n: combine(torch.zeros_like(p)) for n, p in params.items()}
    return sums, batches
