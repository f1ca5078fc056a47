"""Checks of inputs, labels and the request against the model: each error names the argument."""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ..data.base import Split

MIN_HELDOUT_PER_CLASS = 2
"""a held-out class needs two samples for a spread; fewer gives FaLW a zero or undefined σ"""


def check_inputs(split: Split, name: str, shape: tuple | None = None, forget_idx=None) -> None:
    """Shape, finiteness and (for images) range of ``split.x``; labels must be non-negative.

    ``forget_idx``: the forget indices into this split, so an error can say which bad samples are forget samples.
    """
    check = InputCheck(name, shape, forget_idx)
    check.add(0, split.x, split.y)
    check.finish()


class InputCheck:
    """The checks of :func:`check_inputs`, gathered chunk by chunk (a streamed split is read in batches),
    then reported in one order: shape, negative labels, NaN/inf, image range."""

    def __init__(self, name: str, shape: tuple | None = None, forget_idx=None):
        self.name, self.shape, self.forget_idx = name, shape, forget_idx
        self.min_label, self.neg, self.bad = None, [], []
        self.lo, self.hi, self.dtype, self.dim, self.floating = math.inf, -math.inf, None, None, False

    def add(self, offset: int, x: torch.Tensor, y: torch.Tensor) -> None:
        name = self.name
        if self.shape is not None and len(x) and tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"{name}: samples have shape {tuple(x.shape[1:])}, but the training data's are {self.shape}")
        if x.dtype == torch.bool:
            raise ValueError(f"{name}: inputs are booleans; pass them as float (x.float()) or uint8 images")
        self.dtype, self.dim, self.floating = x.dtype, x.dim(), x.is_floating_point()
        if len(y):
            self.min_label = int(y.min()) if self.min_label is None else min(self.min_label, int(y.min()))
            self.neg.append(torch.nonzero(y < 0).flatten() + offset)
        if x.is_floating_point() and len(x):
            bad = ~torch.isfinite(x.reshape(len(x), -1)).all(1)
            self.bad.append(torch.nonzero(bad).flatten() + offset)
            good = x[~bad]
            if x.dim() == 4 and len(good):
                self.lo, self.hi = min(self.lo, good.min().item()), max(self.hi, good.max().item())

    def finish(self) -> None:
        name = self.name
        if self.min_label is not None and self.min_label < 0:
            raise ValueError(f"{name}: labels must be >= 0, found {self.min_label} at samples "
                             f"{torch.cat(self.neg)[:5].tolist()}")
        bad = torch.cat(self.bad) if self.bad else torch.empty(0, dtype=torch.long)
        if len(bad):
            where = ""
            if self.forget_idx is not None:
                in_forget = np.intersect1d(bad.numpy(), self.forget_idx)
                where = f", forget samples among them: {in_forget[:5].tolist()}" if len(in_forget) else ", none in the forget set"
            raise ValueError(f"{name}: samples {bad[:5].tolist()} contain NaN or inf ({len(bad)} in all{where}); "
                             "clean or drop them before unlearning")
        if self.dim == 4:
            if self.floating:
                lo, hi = (self.lo, self.hi) if self.lo <= self.hi else (0.0, 0.0)
                if lo < -1e-6 or hi > 1 + 1e-6:
                    raise ValueError(f"{name}: images must be uint8 or float in [0, 1], got float values in "
                                     f"[{lo:g}, {hi:g}]; divide 0..255 images by 255 and pass the model's "
                                     "normalisation as normalize=(mean, std) (or put it inside the model)")
            elif self.dtype != torch.uint8:
                raise ValueError(f"{name}: images must be uint8 or float in [0, 1], got {self.dtype}")


def check_seed(seed) -> int:
    """A seed torch and numpy both take: an integer in [0, 2**63)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def check_labels(split: Split, name: str, num_classes: int) -> None:
    if len(split) and split.y.max() >= num_classes:
        bad = torch.nonzero(split.y >= num_classes).flatten()[:5].tolist()
        raise ValueError(f"{name}: label {split.y.max().item()} is out of range for {num_classes} classes "
                         f"(samples {bad}); labels must be 0..{num_classes - 1}")


def resolve_classes(k: int, num_classes, labels_max: int) -> int:
    """The number of classes: the model's output size ``k``, which ``num_classes`` (if given) must equal."""
    if k < 2:
        raise ValueError(f"the model returns {k} output per sample; forgetkit needs one logit per class "
                         "(at least 2: for a binary sigmoid output return torch.cat([-z, z], 1) / 2 or two logits)")
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if num_classes != k:
            raise ValueError(f"num_classes={num_classes}, but the model has {k} outputs; they must agree")
        return int(num_classes)
    if labels_max + 1 < k:
        raise ValueError(f"the model has {k} outputs but the labels only go up to {labels_max}; if the model "
                         f"really has {k} classes pass num_classes={k}, otherwise fix the model's output layer")
    return k


def class_list(classes, name: str = "forget_classes") -> tuple[int, ...]:
    """``classes`` (an integer or a list of them) as a sorted tuple of distinct class indices."""
    values = [classes] if isinstance(classes, (numbers.Integral, torch.Tensor)) and np.ndim(classes) == 0 else classes
    try:
        values = list(values)
    except TypeError:
        raise TypeError(f"{name} must be a list of class indices, got {type(classes).__name__}") from None
    out = []
    for c in values:
        c = c.item() if isinstance(c, (torch.Tensor, np.ndarray)) and np.ndim(c) == 0 else c
        if isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 0:
            raise ValueError(f"{name} must hold class indices (integers >= 0), got {c!r}")
        out.append(int(c))
    if len(set(out)) != len(out):
        raise ValueError(f"{name} names a class twice: {out}")
    return tuple(sorted(out))


def check_forget_classes(classes: tuple[int, ...], forget: Split, retain: Split | None, num_classes: int,
                         name: str = "forget_classes") -> None:
    """Whole classes: each named class is a class of the model and all of its samples are in the
    forget set (none left in ``retain``); the forget set may hold single samples of other classes too
    (a mixed request)."""
    if not classes:
        return
    out = [c for c in classes if c >= num_classes]
    if out:
        raise ValueError(f"{name}: classes {out} do not exist (the model has classes 0..{num_classes - 1})")
    present = set(forget.y.tolist())
    absent = [c for c in classes if c not in present]
    if absent:
        raise ValueError(f"{name}: classes {absent} have no samples in the forget set; a class removed whole "
                         "must have all its training samples there")
    kept = sorted(set(classes) & set(retain.y.tolist())) if retain is not None else []
    if kept:
        raise ValueError(f"{name}: classes {kept} still have samples outside the forget set, so they are not "
                         "removed whole; put every sample of those classes in the forget set, or leave "
                         "forget_classes out")


def check_heldout_counts(heldout: Split, forget_labels: torch.Tensor, num_classes: int, who: str) -> None:
    """Every forget class needs :data:`MIN_HELDOUT_PER_CLASS` held-out samples when ``who`` (a
    weighting or method) estimates each forget class on unseen data."""
    counts = torch.bincount(heldout.y, minlength=num_classes)
    few = [int(c) for c in torch.unique(forget_labels) if counts[c] < MIN_HELDOUT_PER_CLASS]
    if few:
        raise ValueError(f"heldout: forget classes {few} have fewer than {MIN_HELDOUT_PER_CLASS} held-out "
                         f"samples ({[int(counts[c]) for c in few]}); {who} estimates each "
                         "forget class on unseen data: give more held-out samples of those classes")


def check_mia_sizes(n_retain: int, test: Split, forget_classes: tuple[int, ...]) -> None:
    """MIA-Efficacy takes one shadow member per scored test sample (the test set without the
    forgotten classes) from the retain set: refused up front, not after unlearning."""
    n_test = len(test) - int(torch.isin(test.y, torch.as_tensor(forget_classes, dtype=torch.long)).sum())
    if not n_test:
        raise ValueError(f"test: every test sample is of forget_classes {list(forget_classes)}, which TA and MIA "
                         "leave out; give test samples of the other classes")
    if n_retain < n_test:
        raise ValueError(f"test: MIA-Efficacy takes one shadow member per test sample from the retain set, but "
                         f"test has {n_test} samples and the retain set {n_retain}; give a smaller test set")
