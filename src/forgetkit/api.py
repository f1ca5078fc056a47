"""Python API for a user's own model and data: one call unlearns, optionally evaluates."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .data.base import Split
from .data.requests import validate_indices
from .methods import build_method
from .metrics.core import GAP_KEYS, avg_gap, evaluate_model
from .unlearn.context import UnlearnContext
from .unlearn.weightings import build_weighting


@dataclass
class UnlearnResult:
    """The unlearned model, and metrics when a retrained reference was given."""

    model: nn.Module
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def _as_split(data) -> Split:
    if isinstance(data, Split):
        return data
    if isinstance(data, tuple) and len(data) == 2:
        return Split(torch.as_tensor(data[0]), torch.as_tensor(data[1]))
    if isinstance(data, torch.utils.data.Dataset):
        xs, ys = zip(*(data[i] for i in range(len(data))))
        return Split(torch.stack([torch.as_tensor(x) for x in xs]), torch.as_tensor(ys))
    raise TypeError("data must be a forgetkit Split, an (x, y) tuple of tensors, or a torch Dataset")


def unlearn(model: nn.Module, train, forget_indices, method: str = "rl", *, num_classes: int | None = None,
            heldout=None, test=None, reference: nn.Module | None = None, weighting: str = "uniform",
            weighting_options: dict | None = None, forget_classes=(), seed: int = 0,
            device: str | torch.device = "cpu", **method_options) -> UnlearnResult:
    """Unlearn ``forget_indices`` of ``train`` from ``model`` with a registered method.

    ``train``/``heldout``/``test``: a :class:`Split`, an ``(x, y)`` tensor pair (images as uint8
    N×C×H×W or float in [0, 1]; tabular as float), or a map-style ``Dataset``. The input model is
    not modified. With ``reference`` (a model retrained without the forget set) and ``test``,
    FA/RA/TA/MIA and their Avg. Gap to the reference are returned.
    """
    train = _as_split(train)
    idx = validate_indices(forget_indices, len(train))
    retain_idx = np.setdiff1d(np.arange(len(train)), idx)
    num_classes = num_classes or int(train.y.max()) + 1
    kind = "image" if train.x.dim() == 4 else "tabular"
    dev = torch.device(device)
    ctx = UnlearnContext(original=model, forget=train.subset(idx), retain=train.subset(retain_idx),
                         heldout=_as_split(heldout) if heldout is not None else None,
                         num_classes=num_classes, device=dev, seed=seed, kind=kind,
                         forget_classes=tuple(forget_classes))
    m = build_method(method, **method_options)
    w = build_weighting(weighting, **(weighting_options or {}))
    torch.manual_seed(seed)
    out, info = m.unlearn(model, ctx, w)
    metrics = {}
    if reference is not None:
        if test is None:
            raise ValueError("metrics against a reference need a test set (test=...)")
        test = _as_split(test)
        ev = evaluate_model(out, ctx.forget, ctx.retain, test, dev)
        ref = evaluate_model(reference, ctx.forget, ctx.retain, test, dev)
        metrics = {k: ev[k] for k in GAP_KEYS} | {f"retrain_{k}": ref[k] for k in GAP_KEYS}
        metrics["AvgGap"] = avg_gap(ev, ref)
    return UnlearnResult(out, metrics, info)
