"""What an unlearner may see: the original model and the data splits of one forget request."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from ..data.base import Split


@dataclass
class UnlearnContext:
    """Inputs shared by every part of one unlearning run.

    ``forget``/``retain``/``heldout`` are None when the caller does not give them; methods declare
    what they need (``Method.needs``) and the platform refuses a run that lacks it.
    """

    original: nn.Module
    forget: Split
    num_classes: int
    retain: Split | None = None
    heldout: Split | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    kind: str = "image"  # "image" | "tabular": image-only methods refuse tabular data
    forget_classes: tuple[int, ...] = ()  # set for class-unlearning requests
    update_frozen_stats: bool = False
    """False: norm layers inside modules whose parameters are all frozen keep their running statistics"""

    def __post_init__(self):
        self.original = copy.deepcopy(self.original).to(self.device).eval()
        for p in self.original.parameters():
            p.requires_grad_(False)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU generator seeded from the run seed; offsets give independent streams."""
        return torch.Generator().manual_seed(self.seed * 1000003 + offset)
