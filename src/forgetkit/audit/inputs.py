"""Input checks: every bad input the audit refuses, before anything is computed."""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from ..data.base import Split

def _row_hashes(x: torch.Tensor) -> list[bytes]:
    flat = x.detach().cpu().contiguous().reshape(len(x), -1).numpy()
    return [hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in flat]


def identical_rows(a: torch.Tensor, b: torch.Tensor) -> list[tuple[int, int]]:
    """(row in a, row in b) pairs whose features are byte-identical (same dtype and shape)."""
    if a.dtype != b.dtype or a.shape[1:] != b.shape[1:]:
        return []
    seen = {h: i for i, h in enumerate(_row_hashes(a))}
    return [(seen[h], j) for j, h in enumerate(_row_hashes(b)) if h in seen]


def check_inputs(forget: Split, heldout: Split, *, retain: Split | None = None, test: Split | None = None,
                 forget_indices=None, heldout_indices=None, check_duplicates: bool = True) -> None:
    """Every bad input the audit refuses, each a ValueError naming the problem."""
    if len(forget) == 0:
        raise ValueError("the forget set is empty: there is nothing to audit")
    if len(heldout) == 0:
        raise ValueError("the held-out set is empty: the audit needs unseen samples to compare against")
    for name, s in (("forget", forget), ("heldout", heldout), ("retain", retain), ("test", test)):
        if s is None:
            continue
        if s.y.dim() != 1:
            raise ValueError(f"{name} labels must be 1-D, got shape {tuple(s.y.shape)}")
        if len(s) and int(s.y.min()) < 0:
            raise ValueError(f"{name} has negative labels")
        if s.x.shape[1:] != forget.x.shape[1:]:
            raise ValueError(f"{name} samples have shape {tuple(s.x.shape[1:])} but forget samples have "
                             f"{tuple(forget.x.shape[1:])}: every split must have the model's input shape")
    missing = sorted(set(forget.y.tolist()) - set(heldout.y.tolist()))
    if missing:
        raise ValueError(f"the held-out set has no samples of forget class(es) {missing}: the audit compares "
                         "each forget class with unseen samples of the same class; add held-out samples of them")
    if (forget_indices is None) != (heldout_indices is None):
        raise ValueError("give both forget_indices and heldout_indices (indices into one training pool) or neither")
    if forget_indices is not None:
        fi, hi = np.asarray(forget_indices).ravel(), np.asarray(heldout_indices).ravel()
        if len(fi) != len(forget) or len(hi) != len(heldout):
            raise ValueError(f"forget_indices has {len(fi)} entries for {len(forget)} forget samples and "
                             f"heldout_indices {len(hi)} for {len(heldout)} held-out samples; they must match")
        both = np.intersect1d(fi, hi)
        if both.size:
            raise ValueError(f"forget and held-out indices overlap at {both.size} index(es), e.g. {both[:5].tolist()}: "
                             "a held-out sample must never have been trained on")
    if check_duplicates:
        same = identical_rows(forget.x, heldout.x)
        if same:
            raise ValueError(f"{len(same)} held-out sample(s) are identical to forget samples (e.g. forget row "
                             f"{same[0][0]} = held-out row {same[0][1]}): a held-out sample must never have been "
                             "trained on; pass check_duplicates=False only if these are truly distinct samples")

