"""Shadow models for U-LiRA: same architecture and recipe as the original, other seeds, cached.

A shadow is trained from a fresh initialisation of the original's architecture (its modules'
``reset_parameters`` under the shadow's seed), so no attack ever needs to know the model's name.
Checkpoints go through :func:`forgetkit.train.train_cached`: trained once, reused by every
method and request that needs the same (data, recipe, seed).
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ..data.base import Split
from ..cache import ModelCache
from ..train import TrainRecipe, train_cached


def fresh_copy(template: nn.Module) -> nn.Module:
    """``template``'s architecture with newly initialised parameters and BatchNorm statistics."""
    model = copy.deepcopy(template).cpu()
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return model


def train_shadows(template: nn.Module, data: Split, recipe: TrainRecipe, seeds, device: torch.device,
                  num_classes: int, *, cache: ModelCache | None = None, tag: str = "shadow") -> list[nn.Module]:
    """One model per seed trained on all of ``data``; cached by data, recipe, seed and architecture."""
    idx = np.arange(len(data))
    fields = {"arch": repr(template), "what": tag}
    return [train_cached(cache, lambda: fresh_copy(template), data, idx, recipe, int(s), device,
                         num_classes, fields)[0] for s in seeds]


def pool_of(forget: Split, retain: Split, forget_indices) -> Split:
    """Rebuild the training pool (forget ∪ retain in pool order) from a request's two splits.

    Shadows trained "on the full data" then coincide for every request of one seed, so they are
    trained once per seed, not once per request.
    """
    idx = np.asarray(forget_indices)
    n = len(forget) + len(retain)
    order = np.concatenate([idx, np.setdiff1d(np.arange(n), idx)])
    x = torch.empty((n, *forget.x.shape[1:]), dtype=forget.x.dtype)
    y = torch.empty(n, dtype=forget.y.dtype)
    pos = torch.as_tensor(order)
    x[pos] = torch.cat([forget.x, retain.x])
    y[pos] = torch.cat([forget.y, retain.y])
    return Split(x, y)
