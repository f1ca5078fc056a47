"""In-memory datasets: every dataset here fits in memory, so a split is a pair of tensors.

Images are stored as uint8 ``N×C×H×W`` (scaled to [0, 1] floats by :func:`as_float`), tabular
data as float32 ``N×D``. Keeping tensors (not ``Dataset`` objects) lets the GPU path keep data
resident on the device and index batches without a DataLoader.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..registry import Registry


@dataclass
class Split:
    """Features and integer labels of one split (optionally a sensitive attribute for fairness)."""

    x: torch.Tensor
    y: torch.Tensor
    sensitive: torch.Tensor | None = None

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} rows but y has {len(self.y)}")
        if self.y.dtype != torch.int64:
            self.y = self.y.long()

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx) -> "Split":
        idx = torch.as_tensor(idx, dtype=torch.long)
        s = None if self.sensitive is None else self.sensitive[idx]
        return Split(self.x[idx], self.y[idx], s)

    def to(self, device) -> "Split":
        s = None if self.sensitive is None else self.sensitive.to(device)
        return Split(self.x.to(device), self.y.to(device), s)


@dataclass
class DataBundle:
    """A dataset as the benchmark sees it: train, test, and facts the models need."""

    name: str
    train: Split
    test: Split
    num_classes: int
    kind: str = "image"  # "image" or "tabular"
    class_names: list[str] = field(default_factory=list)
    source: str = ""  # where the data was read from, for reports

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])


def as_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images → float in [0, 1]; float features pass through."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


def heldout_split(y: torch.Tensor, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Carve a per-class held-out ("unseen") split from train: returns (keep_idx, heldout_idx).

    Stratified so every class keeps about ``fraction`` of its samples apart; seeded with its own
    generator so splits are identical across machines.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"heldout fraction must be in [0, 1), got {fraction}")
    y_np = np.asarray(y)
    rng = np.random.RandomState(seed)
    held = []
    for c in np.unique(y_np):
        idx = np.flatnonzero(y_np == c)
        n = int(round(fraction * len(idx)))
        held.append(rng.choice(idx, n, replace=False))
    held_idx = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    keep = np.setdiff1d(np.arange(len(y_np)), held_idx)
    return keep.astype(np.int64), held_idx.astype(np.int64)


DATASETS = Registry("dataset")
"""Loaders ``(data_dir: str | None = None) -> DataBundle``, registered by name."""
