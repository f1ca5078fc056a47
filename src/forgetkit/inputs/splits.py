"""Data as a user has it (a Split, an ``(x, y)`` pair, a map-style Dataset, a DataLoader) → a checked :class:`Split`,
and the choice between reading it into memory and streaming it."""
from __future__ import annotations

import math
import os
import warnings

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler

from ..data.base import Split

MEMORY_FRACTION = 0.5
"""materialise a Dataset or DataLoader only when it takes at most this share of physical memory"""
DATA_PATHS = ("auto", "resident", "streaming")
"""how ``unlearn`` reads the training data: chosen by :func:`choose_data_path`, or forced"""
TRANSFORM_ATTRIBUTES = ("transform", "transforms", "target_transform")
"""attributes through which torchvision-style datasets hold their transforms"""


def to_tensor(v, name: str, what: str) -> torch.Tensor:
    """``v`` as a tensor, or an error naming ``name`` (an argument) and ``what`` (a part of it)."""
    if isinstance(v, torch.Tensor):
        return v
    try:
        return torch.as_tensor(np.asarray(v))
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name}: {what} of type {type(v).__name__} is not a tensor or array; convert it "
                        "in the Dataset's transform (e.g. torchvision.transforms.PILToTensor())") from None


def pair(item, name: str, where: str) -> tuple:
    """``(x, y)`` of a sample, batch or argument; anything else is refused, naming where it came from."""
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        got = f"{len(item)} values" if isinstance(item, (tuple, list)) else f"a {type(item).__name__}"
        raise ValueError(f"{name}: {where} must be an (x, y) pair, got {got}; wrap your data so it yields "
                         "(input, integer label) only (extra fields such as sample ids are not accepted)")
    return item[0], item[1]


def memory_limit() -> float:
    try:
        return MEMORY_FRACTION * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return math.inf


def check_fits(name: str, n: int, per_sample: int) -> None:
    need = n * per_sample
    if need > memory_limit():
        raise ValueError(f"{name}: {n} samples need about {need / 2**30:.1f} GiB in memory, more than "
                         f"{MEMORY_FRACTION:.0%} of this machine's RAM; pass a subset that fits")


def _from_dataset(data: Dataset, name: str) -> Split:
    n = len(data)  # type: ignore[arg-type]
    if n == 0:
        return Split(torch.empty(0), torch.empty(0, dtype=torch.long))
    x0 = to_tensor(pair(data[0], name, "Dataset item 0")[0], name, "item 0's input")
    check_fits(name, n, x0.element_size() * x0.numel())
    xs, ys = [], []
    for i in range(n):
        x, y = pair(data[i], name, f"Dataset item {i}")
        xs.append(to_tensor(x, name, f"item {i}'s input"))
        ys.append(to_tensor(y, name, f"item {i}'s label"))
    return _stacked(xs, ys, name, torch.stack)


def check_loader_order(loader: DataLoader, name: str) -> None:
    """A training DataLoader must not shuffle or drop samples: the forget indices refer to its order."""
    if isinstance(getattr(loader, "sampler", None), RandomSampler):
        raise ValueError(f"{name}: the DataLoader shuffles, so forget indices would not point at fixed "
                         "samples; pass DataLoader(..., shuffle=False) (the order the indices refer to)")
    if getattr(loader, "drop_last", False):
        raise ValueError(f"{name}: the DataLoader has drop_last=True, so samples the forget indices refer to "
                         "would be missing; pass drop_last=False")


def _from_loader(loader: DataLoader, name: str, ordered: bool) -> Split:
    if ordered:
        check_loader_order(loader, name)
    xs, ys = [], []
    for b, batch in enumerate(loader):
        x, y = pair(batch, name, f"DataLoader batch {b}")
        x, y = to_tensor(x, name, f"batch {b}'s input"), to_tensor(y, name, f"batch {b}'s labels")
        if b == 0 and hasattr(loader, "dataset"):
            try:
                check_fits(name, len(loader.dataset), x.element_size() * x[0].numel())  # type: ignore[arg-type]
            except TypeError:  # an iterable dataset without a length
                pass
        xs.append(x)
        ys.append(y)
    if not xs:
        return Split(torch.empty(0), torch.empty(0, dtype=torch.long))
    return _stacked(xs, ys, name, torch.cat)


def _stacked(xs, ys, name, join) -> Split:
    try:
        x = join(xs)
    except RuntimeError as e:
        raise ValueError(f"{name}: inputs differ in shape, so they cannot form one batch ({e})") from None
    try:
        y = join(ys)
    except RuntimeError as e:
        raise ValueError(f"{name}: labels differ in shape ({e}); each label must be one integer") from None
    return labels_checked(x, y, name)


def labels_checked(x: torch.Tensor, y: torch.Tensor, name: str) -> Split:
    """A Split of ``x`` and ``y`` once ``y`` is a vector of integer class indices as long as ``x``."""
    y = torch.as_tensor(y)
    if x.dim() == 0:
        raise ValueError(f"{name}: x is a single number; it must hold one row per sample")
    if y.dim() == 2 and y.shape[1] > 1:
        raise ValueError(f"{name}: labels have shape {tuple(y.shape)}, which looks one-hot; forgetkit needs "
                         "class indices of shape (N,): pass y.argmax(1)")
    if y.dim() != 1:
        raise ValueError(f"{name}: labels must have shape (N,), got {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex():
        if y.is_complex() or not torch.isfinite(y).all() or not torch.equal(y, y.round()):
            raise ValueError(f"{name}: labels must be integer class indices, got {y.dtype} values such as "
                             f"{y[~torch.isfinite(y) | (y != y.round())][:3].tolist()}")
    if x.is_complex():
        raise ValueError(f"{name}: inputs are complex ({x.dtype}); forgetkit needs real-valued inputs")
    if len(x) != len(y):
        raise ValueError(f"{name}: x has {len(x)} rows but y has {len(y)}")
    return Split(x, y.long())


def as_split(data, name: str = "data", ordered: bool = False) -> Split:
    """A forgetkit :class:`Split` from a Split, an ``(x, y)`` pair, a map-style ``Dataset`` or a ``DataLoader``.

    Datasets and DataLoaders are materialised once (their transforms run once per sample, so a
    random augmentation is drawn once), when they fit in memory. ``ordered``: the forget indices
    refer to this data's order, so a shuffling DataLoader is refused.
    """
    if isinstance(data, Split):
        return labels_checked(data.x, data.y, name) if data.y.dim() != 1 else data
    if isinstance(data, (tuple, list)):
        x, y = pair(data, name, "the data")
        return labels_checked(to_tensor(x, name, "x"), to_tensor(y, name, "y"), name)
    if isinstance(data, DataLoader):
        return _from_loader(data, name, ordered)
    if isinstance(data, Dataset):
        if not hasattr(data, "__len__"):
            raise TypeError(f"{name}: an iterable Dataset has no length; wrap it in a DataLoader")
        return _from_dataset(data, name)
    raise TypeError(f"{name} must be a forgetkit Split, an (x, y) pair of tensors, a map-style torch Dataset "
                    f"or a DataLoader, got {type(data).__name__}")


def has_transform(data) -> bool:
    """True when a Dataset, or one it wraps (``Subset.dataset``, ``ConcatDataset.datasets``), holds a
    transform in one of :data:`TRANSFORM_ATTRIBUTES` (an empty list of transforms holds none)."""
    for attr in TRANSFORM_ATTRIBUTES:
        t = getattr(data, attr, None)
        if t is not None and not (isinstance(t, (list, tuple)) and not t):
            return True
    inner = [getattr(data, "dataset", None), *(getattr(data, "datasets", None) or [])]
    return any(isinstance(d, Dataset) and has_transform(d) for d in inner)


def dataset_fits(data: Dataset, name: str) -> bool:
    """Whether all samples of ``data``, each the size of item 0, take at most MEMORY_FRACTION of RAM."""
    n = len(data)  # type: ignore[arg-type]
    if not n:
        return True
    x0 = to_tensor(pair(data[0], name, "Dataset item 0")[0], name, "item 0's input")
    return n * x0.element_size() * x0.numel() <= memory_limit()


def choose_data_path(data, data_path: str, method: str, streams: bool, streamers=(), name: str = "train") -> str:
    """``"resident"`` or ``"streaming"``: how the training data ``data`` is read for ``method``.

    ``"auto"``: tensors (a Split or an ``(x, y)`` pair) are resident. A DataLoader, a Dataset holding
    a transform (:func:`has_transform`) or a Dataset too large for ``MEMORY_FRACTION`` of RAM is
    streamed, so transforms run at every read; any other Dataset is read into memory once (the fast
    path, same result); a DataLoader over an iterable dataset is read into memory once (it has no
    positions to stream by). A method that cannot stream (``streams`` False) gets resident data:
    with a warning when the data holds a transform (then drawn once per sample), refused when it
    does not fit. ``"resident"`` / ``"streaming"`` force a path; streaming a method that cannot
    stream is refused, naming the method and the ones that can (``streamers``).
    """
    if not isinstance(data_path, str) or data_path not in DATA_PATHS:
        raise ValueError(f"data_path must be one of {DATA_PATHS}, got {data_path!r}")
    refusal = (f"method {method!r} cannot stream: it needs its splits as whole tensors in memory; pass "
               f"data_path='resident' (the data must fit in memory) or a method that streams ({', '.join(streamers)})")
    if data_path == "resident":
        return "resident"
    if data_path == "streaming":
        if not streams:
            raise ValueError(refusal)
        return "streaming"
    if not isinstance(data, (DataLoader, Dataset)):  # tensors; anything else is refused by as_split
        return "resident"
    loader = isinstance(data, DataLoader)
    dataset = data.dataset if loader else data
    if isinstance(dataset, IterableDataset):  # no positions to stream by: read it once
        return "resident"
    transform = has_transform(dataset)
    if not (loader or transform) and dataset_fits(dataset, name):
        return "resident"
    if streams:
        return "streaming"
    if not dataset_fits(dataset, name):
        raise ValueError(f"{name}: the data does not fit in memory and {refusal}")
    if transform:
        warnings.warn(f"method {method!r} does not stream, so {name} is read into memory once and its "
                      "transforms run once per sample; pass data_path='resident' to choose this knowingly",
                      stacklevel=4)
    return "resident"
