"""Training of the original and retrained reference models, with a content-addressed cache.

A checkpoint's file name is the hash of everything that produced it (data fingerprint, the
training indices, architecture, recipe, seed), so a model is trained once and reused across
methods, runs and sweeps. Files are written atomically and read with ``weights_only=True``.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Callable

import numpy as np
import torch
from torch import nn

from .cache import ModelCache
from .data.base import Split
from .unlearn.context import UnlearnContext
from .unlearn.engine import LoopConfig, Parts, run_engine
from .unlearn.objectives import RetainCE
from .unlearn.optim import Optimisation


@dataclass(eq=True)
class TrainRecipe(Optimisation):
    """Recipe for original and retrained models (SalUn/FaLW: SGD, momentum 0.9, wd 5e-4, cosine).

    Every field is an :class:`Optimisation` field (validated there); only the defaults differ.
    Hashable, so a recipe can key in-process caches; treat it as immutable.
    """

    epochs: int = 20
    """training epochs"""
    lr: float = 0.05
    """initial learning rate"""
    batch_size: int = 128
    """mini-batch size"""
    schedule: str = "cosine"
    """cosine (per step), step (``milestones`` × ``gamma``), constant, or a torch scheduler name"""

    def key_fields(self) -> dict:
        """The fields that identify trained weights: the historical eight, plus any other field only
        when it differs from its default (so recipes written before the optimiser choice keep their
        cache keys)."""
        base = ("epochs", "lr", "batch_size", "momentum", "weight_decay", "schedule", "milestones", "gamma")
        out = {k: getattr(self, k) for k in base}
        for f in fields(Optimisation):
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            if f.name not in base and getattr(self, f.name) != default:
                out[f.name] = getattr(self, f.name)
        return out

    def __hash__(self):
        return hash(json.dumps(self.key_fields(), sort_keys=True, default=str))


def fingerprint_split(split: Split) -> str:
    """sha256 of a split's features and labels (cheap: tens of MB hash in well under a second)."""
    h = hashlib.sha256()
    h.update(split.x.detach().cpu().contiguous().numpy().tobytes())
    h.update(split.y.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def cache_key(**fields) -> str:
    blob = json.dumps(fields, sort_keys=True, default=_jsonable)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _jsonable(o):
    if isinstance(o, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(o).tobytes()).hexdigest()
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    return str(o)


def train_classifier(model: nn.Module, data: Split, recipe: TrainRecipe, seed: int,
                     device: torch.device, num_classes: int,
                     progress: Callable[[int, int], None] | None = None) -> nn.Module:
    """Train ``model`` in place with CE on ``data`` (the engine with a retain objective only)."""
    ctx = UnlearnContext(original=nn.Identity(), forget=data.subset([]), retain=data,
                         num_classes=num_classes, device=device, seed=seed)
    cfg = LoopConfig(**recipe.optimisation(), mixing="retain_only")
    run_engine(model, ctx, Parts(retain=RetainCE()), cfg, progress)
    return model


def train_cached(cache: ModelCache | None, build: Callable[[], nn.Module], data: Split, train_idx: np.ndarray,
                 recipe: TrainRecipe, seed: int, device: torch.device, num_classes: int,
                 key_fields: dict, progress=None) -> tuple[nn.Module, float]:
    """Train on ``data[train_idx]`` or load the cached result; returns (model, training seconds).

    Only ``data.subset(train_idx)`` reaches the training loop, which is what guarantees a
    retrained reference never sees a forget index.
    """
    key = cache_key(kind="trained-model", recipe=recipe.key_fields(), seed=seed, idx=np.asarray(train_idx),
                    data=fingerprint_split(data), **key_fields)
    def seeded_build() -> nn.Module:
        torch.manual_seed(seed)
        return build()

    def fit(model: nn.Module) -> dict:
        start = time.perf_counter()
        train_classifier(model, data.subset(train_idx), recipe, seed, device, num_classes, progress)
        return {"seconds": time.perf_counter() - start, "device": str(device), "n_train": len(train_idx)}

    if cache is None:
        model = seeded_build()
        meta = fit(model)
    else:  # under the cache's per-key lock: two processes never train the same model at once
        model, meta, _ = cache.get_or_train(key, seeded_build, fit)
    return model.to(device).eval(), float(meta.get("seconds", float("nan")))
