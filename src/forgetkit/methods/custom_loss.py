"""A user's own forget or retain loss in place of an engine preset's (``unlearn(forget_loss=...)``).

The method keeps everything else (mixing, optimiser, weighting, mask, stop rule); only the term
is swapped, so a custom loss is weighted and masked as the built-in one would be.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..unlearn.objectives import ForgetObjective, RetainObjective
from .base import EngineMethod

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(float32 logits, labels) -> one loss per sample (minimised)"""


def _per_sample(loss, n: int, what: str) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor) or loss.shape != (n,):
        got = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"{what} must return one loss per sample, a tensor of shape ({n},), got {got}; "
                         "use reduction='none'")
    return loss


class CallableForget(ForgetObjective):
    """A user's ``fn(logits, y) -> per-sample losses`` as the forget term (minimised, weightable).

    The logits are float32 (under CUDA's bf16 autocast too), as the built-in objectives use them.
    """

    def __init__(self, fn: LossFn):
        self.fn = fn

    def __call__(self, logits, batch, ctx):
        return _per_sample(self.fn(logits.float(), batch.y), len(batch.y), "forget_loss")


class CallableRetain(RetainObjective):
    """A user's ``fn(logits, y) -> per-sample losses`` as the retain term (minimised)."""

    def __init__(self, fn: LossFn):
        self.fn = fn

    def __call__(self, logits, batch, ctx):
        return _per_sample(self.fn(logits.float(), batch.y), len(batch.y), "retain_loss")


def with_losses(method, name: str, forget_loss: LossFn | None = None, retain_loss: LossFn | None = None):
    """The same engine preset with its forget and/or retain objective replaced by the user's."""
    for what, fn in (("forget_loss", forget_loss), ("retain_loss", retain_loss)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{what} must be a function (logits, y) -> per-sample losses, got {type(fn).__name__}")
    if not isinstance(method, EngineMethod):
        raise ValueError(f"method {name!r} is not an engine preset, so it has no loss to replace; custom "
                         "losses work with engine methods such as ga, rl, ft, neggrad, scrub")
    mixing = method.loop().mixing
    if forget_loss is not None and mixing == "retain_only":
        raise ValueError(f"method {name!r} trains on the retain set only; it has no forget term for forget_loss")
    if retain_loss is not None and mixing == "forget_only":
        raise ValueError(f"method {name!r} trains on the forget set only; it has no retain term for retain_loss")
    base = type(method)

    def parts(self, model, ctx):
        p = base.parts(self, model, ctx)
        if forget_loss is not None:
            p.forget = CallableForget(forget_loss)
        if retain_loss is not None:
            if p.retain is None:
                raise ValueError(f"method {name!r} has no retain term for retain_loss")
            p.retain = CallableRetain(retain_loss)
        return p

    custom = type(base.__name__, (base,), {"parts": parts, "__doc__": f"{base.__name__} with custom losses"})
    return custom(**method.params())
