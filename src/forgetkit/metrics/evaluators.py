"""Extra evaluators a config can ask for by name (``metrics.extra``), beyond FA/RA/TA/MIA.

An evaluator is ``fn(cell: CellView, **options) -> dict[str, float | str]``; its keys are added to
the row's metrics. It sees models and splits, never a method, so it works on any method's output.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..data.base import DataBundle, Split
from ..data.requests import ForgetRequest
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
