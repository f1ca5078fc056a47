"""Python API for a user's own model and data: ``unlearn`` one request, ``evaluate`` models you have.

Everything a user passes is checked once, up front, with an error that names the problem and
what to do (labels, output size, image range, NaN/inf, held-out shape and size, device, options),
so nothing runs on data that would give a silent wrong answer.
"""
from __future__ import annotations

import copy
import math
import os
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import (BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler, SequentialSampler,
                              TensorDataset)

from .data.base import DataBundle, Split, as_float
from .data.requests import ForgetRequest, validate_indices
from .methods import METHODS, build_method
from .methods.base import EngineMethod
from .options import validate_options
from .unlearn.context import UnlearnContext
from .unlearn.objectives import ForgetObjective, RetainObjective
from .unlearn.streaming import StreamingUnsupported, StreamOptions, StreamSplit
from .unlearn.weightings import WEIGHTINGS, build_weighting

CORE_METRICS = ("FA", "RA", "TA", "MIA")
REFERENCE_METRICS = ("AvgGap", "deviation")
MIN_HELDOUT_PER_CLASS = 2
"""a held-out class needs two samples for a spread; fewer gives FaLW a zero or undefined σ"""
MEMORY_FRACTION = 0.5
"""materialise a Dataset or DataLoader only when it takes at most this share of physical memory"""
DATA_PATHS = ("auto", "resident", "streaming")
"""how ``unlearn`` reads the training data: chosen by :func:`choose_data_path`, or forced"""
SCAN_BATCH = 256
"""samples per batch of the up-front check of a streamed split"""
TRANSFORM_ATTRIBUTES = ("transform", "transforms", "target_transform")
"""attributes through which torchvision-style datasets hold their transforms"""


# ---------------------------------------------------------------------------------------------
# data: Split, (x, y), Dataset or DataLoader -> Split
# ---------------------------------------------------------------------------------------------

def _tensor(v, name: str, what: str) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v
    try:
        return torch.as_tensor(np.asarray(v))
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name}: {what} of type {type(v).__name__} is not a tensor or array; convert it "
                        "in the Dataset's transform (e.g. torchvision.transforms.PILToTensor())") from None


def _pair(item, name: str, where: str) -> tuple:
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        got = f"{len(item)} values" if isinstance(item, (tuple, list)) else f"a {type(item).__name__}"
        raise ValueError(f"{name}: {where} must be an (x, y) pair, got {got}; wrap your data so it yields "
                         "(input, integer label) only (extra fields such as sample ids are not accepted)")
    return item[0], item[1]


def _memory_limit() -> float:
    try:
        return MEMORY_FRACTION * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return math.inf


def _check_fits(name: str, n: int, per_sample: int) -> None:
    need = n * per_sample
    if need > _memory_limit():
        raise ValueError(f"{name}: {n} samples need about {need / 2**30:.1f} GiB in memory, more than "
                         f"{MEMORY_FRACTION:.0%} of this machine's RAM; pass a subset that fits")


def _from_dataset(data: Dataset, name: str) -> Split:
    n = len(data)  # type: ignore[arg-type]
    if n == 0:
        return Split(torch.empty(0), torch.empty(0, dtype=torch.long))
    x0, _ = _pair(data[0], name, "Dataset item 0")
    x0 = _tensor(x0, name, "item 0's input")
    _check_fits(name, n, x0.element_size() * x0.numel())
    xs, ys = [], []
    for i in range(n):
        x, y = _pair(data[i], name, f"Dataset item {i}")
        xs.append(_tensor(x, name, f"item {i}'s input"))
        ys.append(_tensor(y, name, f"item {i}'s label"))
    return _stacked(xs, ys, name, torch.stack)


def _check_loader_order(loader: DataLoader, name: str) -> None:
    """A training DataLoader must not shuffle or drop samples: the forget indices refer to its order."""
    if isinstance(getattr(loader, "sampler", None), RandomSampler):
        raise ValueError(f"{name}: the DataLoader shuffles, so forget indices would not point at fixed "
                         "samples; pass DataLoader(..., shuffle=False) (the order the indices refer to)")
    if getattr(loader, "drop_last", False):
        raise ValueError(f"{name}: the DataLoader has drop_last=True, so samples the forget indices refer to "
                         "would be missing; pass drop_last=False")


def _from_loader(loader: DataLoader, name: str, ordered: bool) -> Split:
    if ordered:
        _check_loader_order(loader, name)
    xs, ys = [], []
    for b, batch in enumerate(loader):
        x, y = _pair(batch, name, f"DataLoader batch {b}")
        x, y = _tensor(x, name, f"batch {b}'s input"), _tensor(y, name, f"batch {b}'s labels")
        if b == 0 and hasattr(loader, "dataset"):
            try:
                _check_fits(name, len(loader.dataset), x.element_size() * x[0].numel())  # type: ignore[arg-type]
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
    return _labels_checked(x, y, name)


def _labels_checked(x: torch.Tensor, y: torch.Tensor, name: str) -> Split:
    y = torch.as_tensor(y)
    if y.dim() == 2 and y.shape[1] > 1:
        raise ValueError(f"{name}: labels have shape {tuple(y.shape)}, which looks one-hot; forgetkit needs "
                         "class indices of shape (N,): pass y.argmax(1)")
    if y.dim() != 1:
        raise ValueError(f"{name}: labels must have shape (N,), got {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex():
        if y.is_complex() or not torch.equal(y, y.round()):
            raise ValueError(f"{name}: labels must be integer class indices, got {y.dtype} values such as "
                             f"{y[y != y.round()][:3].tolist()}")
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
        return _labels_checked(data.x, data.y, name) if data.y.dim() != 1 else data
    if isinstance(data, (tuple, list)):
        x, y = _pair(data, name, "the data")
        return _labels_checked(_tensor(x, name, "x"), _tensor(y, name, "y"), name)
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


def _dataset_fits(data: Dataset, name: str) -> bool:
    """Whether all samples of ``data``, each the size of item 0, take at most MEMORY_FRACTION of RAM."""
    n = len(data)  # type: ignore[arg-type]
    if not n:
        return True
    x0 = _tensor(_pair(data[0], name, "Dataset item 0")[0], name, "item 0's input")
    return n * x0.element_size() * x0.numel() <= _memory_limit()


def choose_data_path(data, data_path: str, method: str, name: str = "train") -> str:
    """``"resident"`` or ``"streaming"``: how :func:`unlearn` reads the training data ``data`` for ``method``.

    ``"auto"``: tensors (a Split or an ``(x, y)`` pair) are resident. A DataLoader, a Dataset holding
    a transform (:func:`has_transform`) or a Dataset too large for ``MEMORY_FRACTION`` of RAM is
    streamed, so transforms run at every read; any other Dataset is read into memory once (the fast
    path, same result); a DataLoader over an iterable dataset is read into memory once (it has no
    positions to stream by). A method that cannot stream (``Method.streams`` False) gets resident data:
    with a warning when the data holds a transform (then drawn once per sample), refused when it
    does not fit. ``"resident"`` / ``"streaming"`` force a path; streaming a method that cannot
    stream is refused, naming the method.
    """
    if not isinstance(data_path, str) or data_path not in DATA_PATHS:
        raise ValueError(f"data_path must be one of {DATA_PATHS}, got {data_path!r}")
    streams = getattr(METHODS.get(method), "streams", False)
    refusal = (f"method {method!r} cannot stream: it needs its splits as whole tensors in memory; pass "
               "data_path='resident' (the data must fit in memory) or a method that streams (" +
               ", ".join(n for n in METHODS.names() if getattr(METHODS.get(n), "streams", False)) + ")")
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
    if not (loader or transform) and _dataset_fits(dataset, name):
        return "resident"
    if streams:
        return "streaming"
    if not _dataset_fits(dataset, name):
        raise ValueError(f"{name}: the data does not fit in memory and {refusal}")
    if transform:
        warnings.warn(f"method {method!r} does not stream, so {name} is read into memory once and its "
                      "transforms run once per sample; pass data_path='resident' to choose this knowingly",
                      stacklevel=3)
    return "resident"


def _stream_source(data, name: str) -> tuple[Dataset, StreamOptions, str]:
    """The map-style dataset a streamed split reads by position, how to read it, and what to call a batch."""
    if isinstance(data, Split):
        return TensorDataset(data.x, data.y), StreamOptions(), "batch"
    if isinstance(data, (tuple, list)):
        x, y = _pair(data, name, "the data")
        return TensorDataset(_tensor(x, name, "x"), _tensor(y, name, "y")), StreamOptions(), "batch"
    if isinstance(data, DataLoader):
        _check_loader_order(data, name)
        if isinstance(data.dataset, IterableDataset):
            raise ValueError(f"{name}: streaming reads samples by position, which an iterable dataset does not "
                             "have; pass data_path='resident' to read it into memory once")
        if not isinstance(data.sampler, SequentialSampler) or type(data.batch_sampler) is not BatchSampler:
            raise ValueError(f"{name}: the DataLoader has its own sampler ({type(data.sampler).__name__}, "
                             f"{type(data.batch_sampler).__name__}); streaming reads loader.dataset by position "
                             "in the engine's order: pass a DataLoader without a sampler, or a Subset of the dataset")
        return data.dataset, StreamOptions.of(data), "DataLoader batch"
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset):
        if len(data):  # type: ignore[arg-type]
            _pair(data[0], name, "Dataset item 0")
        return data, StreamOptions(), "Dataset batch"
    raise TypeError(f"{name} must be a forgetkit Split, an (x, y) pair of tensors, a map-style torch Dataset "
                    f"or a DataLoader, got {type(data).__name__}")


def _scan(dataset: Dataset, options: StreamOptions, name: str, what: str, forget_idx) -> StreamSplit:
    """Read ``dataset`` once, in batches, for the up-front checks; keep only its labels."""
    n = len(dataset)  # type: ignore[arg-type]
    batches = [list(range(i, min(n, i + SCAN_BATCH))) for i in range(0, n, SCAN_BATCH)]
    check, ys, shape = _InputCheck(name, None, forget_idx), [], None
    loader = options.loader(dataset, batches, options.collate, seed=0)
    it = iter(loader)
    for b, keys in enumerate(batches):
        try:
            batch = next(it)
        except RuntimeError as e:
            raise ValueError(f"{name}: samples of {what} {b} cannot form one batch ({e}); inputs must share "
                             "one shape and each label must be one integer") from None
        x, y = _pair(batch, name, f"{what} {b}")
        split = _labels_checked(_tensor(x, name, f"{what} {b}'s input"), _tensor(y, name, f"{what} {b}'s labels"),
                                name)
        if shape is None:
            shape = tuple(split.x.shape[1:])
            check.shape = shape
        check.add(keys[0], split.x, split.y)
        ys.append(split.y)
    check.finish()
    y = torch.cat(ys) if ys else torch.empty(0, dtype=torch.long)
    return StreamSplit(dataset, torch.arange(n), y, shape or (), name, options)


def _resident(split):
    """A streamed split read into memory (for evaluation); a resident one as it is."""
    if not isinstance(split, StreamSplit):
        return split
    x = torch.cat([c.cpu() for c in split.x.split(SCAN_BATCH)]) if len(split) else torch.empty(0, *split.sample_shape)
    return Split(x, split.y.cpu())


def _first_bad(mask: torch.Tensor, k: int = 5) -> list[int]:
    return torch.nonzero(mask).flatten()[:k].tolist()


def _check_inputs(split: Split, name: str, shape: tuple | None = None, forget_idx=None) -> None:
    """Shape, finiteness and (for images) range of ``split.x``; labels must be non-negative.

    ``forget_idx``: the forget indices into this split, so an error can say which bad samples are forget samples.
    """
    check = _InputCheck(name, shape, forget_idx)
    check.add(0, split.x, split.y)
    check.finish()


class _InputCheck:
    """The checks of :func:`_check_inputs`, gathered chunk by chunk (a streamed split is read in batches),
    then reported in one order: shape, negative labels, NaN/inf, image range."""

    def __init__(self, name: str, shape: tuple | None = None, forget_idx=None):
        self.name, self.shape, self.forget_idx = name, shape, forget_idx
        self.min_label, self.neg, self.bad = None, [], []
        self.lo, self.hi, self.dtype, self.dim, self.floating = math.inf, -math.inf, None, None, False

    def add(self, offset: int, x: torch.Tensor, y: torch.Tensor) -> None:
        name = self.name
        if self.shape is not None and tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"{name}: samples have shape {tuple(x.shape[1:])}, but the training data's are {self.shape}")
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
                                     f"[{lo:g}, {hi:g}]; divide 0..255 images by 255 and put any normalisation "
                                     "inside the model")
            elif self.dtype != torch.uint8:
                raise ValueError(f"{name}: images must be uint8 or float in [0, 1], got {self.dtype}")


def _check_labels(split: Split, name: str, num_classes: int) -> None:
    if len(split) and split.y.max() >= num_classes:
        raise ValueError(f"{name}: label {split.y.max().item()} is out of range for {num_classes} classes "
                         f"(samples {_first_bad(split.y >= num_classes)}); labels must be 0..{num_classes - 1}")


# ---------------------------------------------------------------------------------------------
# models and devices
# ---------------------------------------------------------------------------------------------

def model_device(model: nn.Module) -> torch.device:
    """Where the model's first parameter (or buffer) lives; CPU for a model without any."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def resolve_device(device, model: nn.Module) -> torch.device:
    """None: where the model lives; "auto": CUDA when available, else CPU (as in configs)."""
    if device is None:
        return model_device(model)
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a device; use 'cpu', 'cuda', 'cuda:0' or 'auto'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but no CUDA GPU is available; use 'cpu' or 'auto'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


class _KeepModes:
    """Restore every submodule's train/eval flag on exit (evaluation must not change the user's model)."""

    def __init__(self, *models: nn.Module):
        self.saved = [(m, m.training) for model in models for m in model.modules()]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for m, mode in self.saved:
            m.training = mode
        return False


@torch.no_grad()
def output_size(model: nn.Module, x: torch.Tensor, name: str = "model") -> int:
    """Number of logits ``model`` gives for one sample; refuses anything but an N×K tensor."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    with _KeepModes(model):
        model.eval()
        try:
            out = model(as_float(x[:1].to(model_device(model))))
        except Exception as e:  # noqa: BLE001  the user's forward: report it with the input shape
            raise ValueError(f"{name} fails on one sample of shape {tuple(x.shape[1:])}: "
                             f"{type(e).__name__}: {e}") from e
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{name} returned a {type(out).__name__}, not a tensor of logits; forgetkit needs "
                        "forward(x) -> logits of shape (N, classes): wrap the model so forward returns "
                        "only the logits (e.g. model(x)[0])")
    if out.dim() != 2 or out.shape[0] != 1:
        raise ValueError(f"{name} returned shape {tuple(out.shape)} for one sample; forgetkit needs logits "
                         "of shape (N, classes)")
    return int(out.shape[1])


def _num_classes(k: int, num_classes: int | None, labels_max: int) -> int:
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if num_classes != k:
            raise ValueError(f"num_classes={num_classes}, but the model has {k} outputs; they must agree")
        return int(num_classes)
    if labels_max + 1 < k:
        raise ValueError(f"the model has {k} outputs but the labels only go up to {labels_max}; if the model "
                         f"really has {k} classes pass num_classes={k}, otherwise fix the model's output layer")
    return k


# ---------------------------------------------------------------------------------------------
# custom losses
# ---------------------------------------------------------------------------------------------

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

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        self.fn = fn

    def __call__(self, logits, batch, ctx):
        return _per_sample(self.fn(logits.float(), batch.y), len(batch.y), "forget_loss")


class CallableRetain(RetainObjective):
    """A user's ``fn(logits, y) -> per-sample losses`` as the retain term (minimised)."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        self.fn = fn

    def __call__(self, logits, batch, ctx):
        return _per_sample(self.fn(logits.float(), batch.y), len(batch.y), "retain_loss")


def with_losses(method, name: str, forget_loss=None, retain_loss=None):
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


# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------

@dataclass
class EvaluationTable:
    """One row of metrics per model; ``print(table)`` aligns them, ``table.to_pandas()`` gives a DataFrame."""

    rows: dict[str, dict[str, Any]]

    def __getitem__(self, model: str) -> dict[str, Any]:
        return self.rows[model]

    @property
    def columns(self) -> list[str]:
        cols: list[str] = []
        for r in self.rows.values():
            cols += [k for k in r if k not in cols]
        return cols

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame.from_dict(self.rows, orient="index", columns=self.columns).rename_axis("model")

    def __str__(self) -> str:
        cols = self.columns

        def cell(v) -> str:
            if v is None:
                return "-"
            return f"{v:.2f}" if isinstance(v, (float, np.floating)) else str(v)

        table = [["model", *cols]] + [[name, *(cell(r.get(c)) for c in cols)] for name, r in self.rows.items()]
        widths = [max(len(row[i]) for row in table) for i in range(len(cols) + 1)]
        lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
                 for row in table]
        return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])

    __repr__ = __str__


def _parse_metrics(metrics, have_reference: bool) -> tuple[list[str], list[str]]:
    from .metrics.evaluators import EVALUATORS

    if metrics is None:
        return list(CORE_METRICS) + (list(REFERENCE_METRICS) if have_reference else []), []
    if isinstance(metrics, str):
        metrics = [metrics]
    core, extra = [], []
    for m in metrics:
        if m in CORE_METRICS or m in REFERENCE_METRICS:
            if m in REFERENCE_METRICS and not have_reference:
                raise ValueError(f"metric {m!r} compares to a retrained model: pass reference=...")
            core.append(m)
        elif m in EVALUATORS:
            extra.append(m)
        else:
            known = ", ".join([*CORE_METRICS, *REFERENCE_METRICS, *EVALUATORS.names()])
            raise ValueError(f"unknown metric {m!r}; known: {known}")
    return core, extra


def _no_unlearn(model: nn.Module) -> nn.Module:
    raise ValueError("this evaluator re-runs the unlearning on shadow models: pass "
                     "unlearn=fn(model) -> unlearned model to forgetkit.evaluate")


def evaluate(models: dict[str, nn.Module], *, forget, retain, test, reference=None, metrics=None,
             original: nn.Module | None = None, num_classes: int | None = None, forget_classes=(),
             class_names=(), unlearn: Callable[[nn.Module], nn.Module] | None = None, tau: float = 0.05,
             options: dict[str, dict] | None = None, seed: int = 0) -> EvaluationTable:
    """Score models you already have on one forget request; forgetkit as the judge.

    ``models``: name → model (each evaluated where it lives; its train/eval mode is kept).
    ``forget``/``retain``/``test``: data as for :func:`unlearn`. ``reference``: a model retrained
    without the forget set (or a list of them, for evaluators that need several); it adds a
    ``reference`` row, Avg. Gap and FaLW's deviation (under/faithful/over-forgotten shares at
    ``tau``). ``metrics``: FA, RA, TA, MIA, AvgGap, deviation and any registered evaluator
    (``forgetkit methods`` lists them), with keyword options in ``options[name]``. With
    ``forget_classes`` (a whole-class request; class evaluators need it) TA and MIA use the test
    samples of the other classes, as SalUn does. ``original``/``unlearn``: the model before unlearning and
    your unlearning as a function, for evaluators that re-run it on shadow models (U-LiRA).
    """
    from .metrics.core import GAP_KEYS, avg_gap, evaluate_model, unlearning_deviation, without_classes
    from .metrics.evaluators import EVALUATORS, CellView

    if not isinstance(models, dict) or not models:
        raise TypeError("models must be a non-empty dict of name -> torch.nn.Module")
    refs = list(reference) if isinstance(reference, (list, tuple)) else ([reference] if reference is not None else [])
    if "reference" in models and refs:
        raise ValueError("'reference' names the retrained model's row; rename that entry of models")
    core, extra = _parse_metrics(metrics, bool(refs))
    for k in options or {}:
        if k not in extra:
            raise ValueError(f"options given for {k!r}, which is not among the requested evaluators {extra}")
    forget, retain, test = as_split(forget, "forget"), as_split(retain, "retain"), as_split(test, "test")
    if not len(forget):
        raise ValueError("forget: the forget set is empty")
    shape = tuple(forget.x.shape[1:])
    for s, n in ((forget, "forget"), (retain, "retain"), (test, "test")):
        _check_inputs(s, n, shape)
    rows_models = {**models, **({"reference": refs[0]} if refs else {})}
    named = list(rows_models.items()) + [(f"reference[{i}]", r) for i, r in enumerate(refs[1:], 1)]
    if original is not None:
        named.append(("original", original))
    sizes = {n: output_size(m, forget.x, f"model {n!r}") for n, m in named}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"models give different numbers of outputs: {sizes}; all must score the same classes")
    k = next(iter(sizes.values()))
    labels_max = max(int(s.y.max()) for s in (forget, retain, test) if len(s))
    k = _num_classes(k, num_classes, labels_max)
    for s, n in ((forget, "forget"), (retain, "retain"), (test, "test")):
        _check_labels(s, n, k)

    pool = Split(torch.cat([forget.x, retain.x]), torch.cat([forget.y, retain.y]))
    bundle = DataBundle("user", pool, test, k, "image" if pool.x.dim() == 4 else "tabular", list(class_names))
    fc = tuple(int(c) for c in forget_classes)
    request = ForgetRequest(np.arange(len(forget)), "user", "class" if fc else "indices", fc)
    template = original if original is not None else (copy.deepcopy(refs[0]) if refs and extra else None)

    def references(m: int) -> list[nn.Module]:
        if m > len(refs):
            raise ValueError(f"this evaluator needs {m} retrained references; pass reference=[...] with {m} models "
                             "retrained without the forget set (different seeds)")
        return refs[:m]

    ev_options = {}
    for e in extra:
        ev_options[e] = validate_options(EVALUATORS.get(e), (options or {}).get(e, {}), f"evaluator {e!r} options")
        getattr(EVALUATORS.get(e), "check", lambda o: None)(ev_options[e])
    eval_test = without_classes(test, fc)  # SalUn: TA and MIA of a class request on the other classes

    table: dict[str, dict[str, Any]] = {}
    with _KeepModes(*(m for _, m in named)):
        evals = {name: evaluate_model(m, forget, retain, eval_test, model_device(m)) for name, m in rows_models.items()}
        ref_ev = evals.get("reference")
        for name, m in rows_models.items():
            ev, row = evals[name], {}
            for key in core:
                if key in GAP_KEYS:
                    row[key] = ev[key]
                elif key == "AvgGap":
                    row[key] = avg_gap(ev, ref_ev)
                else:
                    row.update({f"dev_{a}": v for a, v in
                                unlearning_deviation(ev["forget_probs"], ref_ev["forget_probs"], tau).items()})
            view = CellView(m, template if template is not None else m, refs[0] if refs else m, bundle, forget,
                            retain, test, request, seed, model_device(m), references,
                            None if name == "reference" else (unlearn or _no_unlearn))
            for e in extra:
                out = EVALUATORS.get(e)(view, **ev_options[e])
                row.update({k: v for k, v in out.items() if isinstance(v, (str, int, float, np.number))})
            table[name] = row
    return EvaluationTable(table)


# ---------------------------------------------------------------------------------------------
# unlearn
# ---------------------------------------------------------------------------------------------

@dataclass
class UnlearnResult:
    """The unlearned model, how long it took, and (with ``test``) its metrics beside the original's."""

    model: nn.Module
    metrics: dict[str, float] = field(default_factory=dict)
    """FA/RA/TA/MIA of the unlearned model; with a reference also retrain_* values, AvgGap, dev_*"""
    info: dict = field(default_factory=dict)
    """what the method reports (per-epoch history, steps, ...)"""
    original_metrics: dict[str, float] = field(default_factory=dict)
    """the same metrics for the model before unlearning: did unlearning beat doing nothing?"""
    seconds: float = 0.0
    """wall-clock time of the unlearning itself (checks and evaluation excluded)"""
    table: EvaluationTable | None = None
    """original / unlearned / reference rows side by side (None without ``test``)"""

    def __repr__(self) -> str:
        head = f"UnlearnResult(seconds={self.seconds:.2f}"
        return head + (")" if self.table is None else f", table=\n{self.table}\n)")


def unlearn(model: nn.Module, train, forget_indices, method: str = "rl", *, num_classes: int | None = None,
            heldout=None, test=None, reference: nn.Module | None = None, weighting: str = "uniform",
            weighting_options: dict | None = None, forget_classes=(), seed: int = 0, device=None,
            progress: Callable[[int, int], None] | str | None = None, forget_loss=None, retain_loss=None,
            data_path: str = "auto", **method_options) -> UnlearnResult:
    """Unlearn ``forget_indices`` of ``train`` from ``model`` with a registered method.

    ``train``/``heldout``/``test``: a :class:`Split`, an ``(x, y)`` pair (images uint8 N×C×H×W or
    float in [0, 1]; tabular float; integer labels), a map-style ``Dataset`` or a ``DataLoader``
    yielding ``(x, y)`` (a training DataLoader must not shuffle, since the indices refer to its
    order). ``data_path``: ``"auto"`` streams a DataLoader, a Dataset with a transform or one too
    large for memory (transforms run at every read) and keeps tensors resident;
    ``"resident"``/``"streaming"`` force a path (:func:`choose_data_path`); ``heldout`` and ``test``
    are always read into memory once. The input model is not modified; the copy stays on the model's
    device unless ``device`` ("cpu", "cuda", "auto") is given. ``num_classes`` defaults to the
    model's output size. ``progress(step, total)`` is called after each optimiser step;
    ``progress="metrics"`` prints each epoch's loss and forget/retain accuracy instead (on at most
    512 fixed samples of each, eval mode, fp32; one line at the end for methods without epochs).
    ``forget_loss``/``retain_loss``: ``fn(logits, y) -> per-sample losses`` (minimised) replacing
    the method's own term. With ``test``, the result holds the original's and the unlearned
    model's FA/RA/TA/MIA (as :func:`evaluate` scores them); with ``reference`` (retrained without
    the forget set) also Avg. Gap and the deviation.
    """
    name = method
    opts = validate_options(METHODS.get(name), method_options, f"method {name!r} options")
    m = build_method(name, **opts)
    if forget_loss is not None or retain_loss is not None:
        m = with_losses(m, name, forget_loss, retain_loss)
    w_opts = validate_options(WEIGHTINGS.get(weighting), weighting_options or {}, f"weighting {weighting!r} options")
    w = build_weighting(weighting, **w_opts)
    printer = None
    if isinstance(progress, str):
        if progress != "metrics":
            raise ValueError(f"progress must be a function (step, total) -> None or 'metrics', got {progress!r}")
        from .bench.progress import EpochMetrics

        printer = progress = EpochMetrics()
    elif progress is not None and not callable(progress):
        raise TypeError(f"progress must be a function (step, total) -> None or 'metrics', "
                        f"got {type(progress).__name__}")
    if reference is not None and test is None:
        raise ValueError("metrics against a reference need a test set (test=...)")
    dev = resolve_device(device, model)

    path = choose_data_path(train, data_path, name)
    if path == "streaming":
        dataset, stream_options, what = _stream_source(train, "train")
        idx = validate_indices(forget_indices, len(dataset))  # type: ignore[arg-type]
        train = _scan(dataset, stream_options, "train", what, idx)
    else:
        train = as_split(train, "train", ordered=True)
        idx = validate_indices(forget_indices, len(train))
        _check_inputs(train, "train", forget_idx=idx)
    if path == "streaming" and test is not None:
        x0 = train.x[:1]
        try:
            _check_fits("train", len(train), x0.element_size() * x0.numel())
        except ValueError as e:
            raise ValueError(f"{e}: with test=..., the streamed forget and retain sets are read into memory to "
                             "be scored; pass test=None and score a subset with forgetkit.evaluate") from None
    shape = tuple(train.x.shape[1:])
    held = as_split(heldout, "heldout") if heldout is not None else None
    test_s = as_split(test, "test") if test is not None else None
    for s, n in ((held, "heldout"), (test_s, "test")):
        if s is not None:
            _check_inputs(s, n, shape)
    k = output_size(model, train.x)
    if reference is not None and output_size(reference, train.x, "reference") != k:
        raise ValueError(f"the reference has {output_size(reference, train.x)} outputs but the model has {k}")
    labels_max = max(int(s.y.max()) for s in (train, held, test_s) if s is not None and len(s))
    num_classes = _num_classes(k, num_classes, labels_max)
    for s, n in ((train, "train"), (held, "heldout"), (test_s, "test")):
        if s is not None:
            _check_labels(s, n, num_classes)
    if "heldout" in w.needs and held is not None:
        counts = torch.bincount(held.y, minlength=num_classes)
        forget_cls = torch.unique(train.y[torch.as_tensor(idx)])
        few = [int(c) for c in forget_cls if counts[c] < MIN_HELDOUT_PER_CLASS]
        if few:
            raise ValueError(f"heldout: forget classes {few} have fewer than {MIN_HELDOUT_PER_CLASS} held-out "
                             f"samples ({[int(counts[c]) for c in few]}); weighting {weighting!r} estimates each "
                             "forget class on unseen data: give more held-out samples of those classes")

    retain_idx = np.setdiff1d(np.arange(len(train)), idx)
    kind = "image" if train.x.dim() == 4 else "tabular"
    forget_s, retain_s = train.subset(idx), train.subset(retain_idx)
    if isinstance(train, StreamSplit):  # errors name the split a method reads
        forget_s, retain_s = replace(forget_s, name="forget"), replace(retain_s, name="retain")
    ctx = UnlearnContext(original=model, forget=forget_s, retain=retain_s,
                         heldout=held, num_classes=num_classes, device=dev, seed=seed, kind=kind,
                         forget_classes=tuple(int(c) for c in forget_classes))
    torch.manual_seed(seed)
    start = time.perf_counter()
    try:
        out, info = m.unlearn(model, ctx, w, progress)
    except StreamingUnsupported as e:
        raise StreamingUnsupported(f"method {name!r} cannot run on streamed data: {e}") from None
    seconds = time.perf_counter() - start
    info = {**info, "data_path": path}
    if printer is not None and not printer.lines:  # a method without engine epochs: one line at the end
        printer.line(out, ctx, f"{name} done")
    if test_s is None:
        return UnlearnResult(out, {}, info, {}, seconds)
    table = evaluate({"original": model, "unlearned": out}, forget=_resident(ctx.forget),
                     retain=_resident(ctx.retain), test=test_s,
                     reference=reference, num_classes=num_classes, forget_classes=ctx.forget_classes)
    metrics = dict(table["unlearned"])
    if reference is not None:
        metrics |= {f"retrain_{k}": table["reference"][k] for k in CORE_METRICS}
    return UnlearnResult(out, metrics, info, dict(table["original"]), seconds, table)
