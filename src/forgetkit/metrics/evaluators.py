"""The evaluator registry: everything measured on a cell's model, FA/RA/TA/MIA included.

An evaluator is ``fn(cell: CellView, **options) -> dict``: its numbers and strings become the row's
metrics, anything else (per-sample arrays) its artifacts. It sees models and splits, never a method,
so it works on any method's output. Each declares what it costs beyond the model under test —
how many extra retrained references it asks ``cell.references`` for — and how ``--smoke`` shrinks
it, so a runner can train those references once, up front, without knowing evaluator options.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

import torch
from torch import nn

from ..data.base import DataBundle, Split
from ..data.requests import ForgetRequest, class_groups
from ..registry import Registry

EVALUATORS: Registry = Registry("evaluator")


@dataclass
class CellView:
    """What an evaluator may look at for one (method, request, seed) cell."""

    model: nn.Module
    """the model under test (unlearned, or a reference for the Original/Retrain rows)"""
    original: nn.Module
    retrained: nn.Module
    bundle: DataBundle
    """the dataset (train is the pool that forget indices refer to)"""
    forget: Split
    retain: Split
    test: Split
    request: ForgetRequest
    seed: int
    device: torch.device
    references: Callable[[int], list[nn.Module]]
    """``references(m)``: m retrained models with different seeds (cached, trained once)"""
    unlearn: Callable[[nn.Module], nn.Module] | None = None
    """re-run the method under test on another model (for shadow-model attacks); None for references"""

    @property
    def eval_test(self) -> Split:
        """The test set TA and MIA-Efficacy use: without the forgotten classes for a whole-class
        request (SalUn's protocol), the whole test set otherwise."""
        from .core import without_classes

        return without_classes(self.test, self.request.classes if self.request.kind == "class" else ())


def _no_references(options: dict) -> int:
    return 0


def _unchanged(options: dict) -> dict:
    return dict(options)


def _accept(options: dict) -> None:
    return None


class Evaluator:
    """A registered evaluator: the function plus what it declares about its cost."""

    def __init__(self, fn: Callable[..., dict], references: Callable[[dict], int], smoke: Callable[[dict], dict],
                 class_requests_only: bool, check: Callable[[dict], None]):
        self.fn, self.references_for, self.smoke_options = fn, references, smoke
        self.class_requests_only, self.check = class_requests_only, check
        self.__doc__, self.__wrapped__ = fn.__doc__, fn  # so help() and inspect.signature see fn

    def __call__(self, cell: CellView, **options: Any) -> dict:
        return self.fn(cell, **options)


def register_evaluator(name: str, *, references: Callable[[dict], int] = _no_references,
                       smoke: Callable[[dict], dict] = _unchanged, class_requests_only: bool = False,
                       check: Callable[[dict], None] = _accept):
    """Register ``fn`` as evaluator ``name``.

    ``references(options)``: how many extra retrained references (``cell.references(m)``) it uses
    with these options; ``smoke(options)``: its options under ``--smoke`` (a copy, input untouched);
    ``class_requests_only``: it measures whole-class forgetting; ``check(options)``: raises
    ValueError for options it cannot work with — all used before any training.
    """
    def add(fn):
        EVALUATORS.register(name)(Evaluator(fn, references, smoke, class_requests_only, check))
        return fn

    return add


@register_evaluator("standard")
def standard(cell: CellView, groups: str = "thirds") -> dict:
    """FA, RA, TA, MIA-Efficacy, FA per head/mid/tail group, and the forget set's true-class probabilities.

    TA and MIA use :attr:`CellView.eval_test` (without the forgotten classes for a class request).
    """
    from .core import evaluate_model, group_accuracy

    test = cell.eval_test
    ev = evaluate_model(cell.model, cell.forget, cell.retain, test, cell.device)
    labels = cell.forget.y.numpy()
    by_group = class_groups(labels, cell.bundle.num_classes, groups)
    out = {k: ev[k] for k in ("FA", "RA", "TA", "MIA")}
    present = {g: classes for g, classes in by_group.items() if classes}  # a class request has one group
    out.update({f"FA_{g}": v for g, v in group_accuracy(ev["forget_correct"], labels, present).items()})
    out.update({"n_forget": len(cell.forget), "n_test": len(test),
                "forget_probs": np.round(ev["forget_probs"], 5), "groups": by_group, "forget_labels": labels})
    return out
