"""Splits streamed from a map-style torch ``Dataset``: every read runs the dataset's transforms again.

The resident path keeps a split as tensors (fast, but a ``Dataset`` is read once, so a random
augmentation is drawn once, and it must fit in memory). A :class:`StreamSplit` keeps only the
dataset, the positions of its samples in it and their labels (read once, when the input is
checked); inputs are read batch by batch when the engine or a method asks for them, through a
``DataLoader`` that keeps the user's workers, collate function and pinned memory. The engine
plans the same steps on both paths, so the same data in the same order gives the same model.

Code outside the engine reads a streamed split's inputs by position only (``split.x[pos]``,
``split.x.split(n)``); anything that needs the whole input tensor (``split.x.to(...)``) raises
:class:`StreamingUnsupported`, which names the split.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, SequentialSampler, TensorDataset, \
    default_collate

from ..data.base import Split
from ..data.requests import validate_indices
from ..inputs import InputCheck, as_split, check_fits, check_inputs, check_loader_order, labels_checked, pair, to_tensor

LOADER_OPTIONS = ("num_workers", "collate_fn", "pin_memory", "timeout", "worker_init_fn",
                  "multiprocessing_context", "prefetch_factor")
"""the settings of a user's DataLoader the streaming path keeps (its sampler and batch size are
the engine's: the engine plans the order and the method sets the batch size)"""
SCAN_BATCH = 256
"""samples per batch of the up-front check of a streamed split"""


class StreamingUnsupported(ValueError):
    """Code asked a streamed split for its whole input tensor."""


@dataclass
class StreamOptions:
    """How a streamed split is read: the user's DataLoader settings (see :data:`LOADER_OPTIONS`)."""

    num_workers: int = 0
    collate_fn: Callable | None = None
    pin_memory: bool = False
    timeout: float = 0
    worker_init_fn: Callable | None = None
    multiprocessing_context: Any = None
    prefetch_factor: int | None = None

    @classmethod
    def of(cls, loader: DataLoader) -> "StreamOptions":
        """The settings of ``loader`` that the streaming path keeps."""
        opts = {k: getattr(loader, k, None) for k in LOADER_OPTIONS}
        opts["num_workers"] = opts["num_workers"] or 0
        if not opts["num_workers"]:
            opts["prefetch_factor"] = None  # torch refuses a prefetch factor without workers
        return cls(**{k: v for k, v in opts.items() if v is not None})

    def loader(self, dataset: Dataset, batches: list[list], collate: Callable, seed: int) -> DataLoader:
        """A loader over ``batches`` (lists of keys into ``dataset``) in the given order.

        Its own generator (seeded) draws the worker seeds, so the global RNG is not touched.
        """
        extra = {"prefetch_factor": self.prefetch_factor} if self.num_workers and self.prefetch_factor else {}
        return DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, timeout=self.timeout, worker_init_fn=self.worker_init_fn,
                          multiprocessing_context=self.multiprocessing_context if self.num_workers else None,
                          generator=torch.Generator().manual_seed(seed), **extra)

    def collate(self, items: list) -> Any:
        return (self.collate_fn or default_collate)(items)


@dataclass
class StreamSplit:
    """Samples ``indices`` of ``dataset``, read when used; ``y`` holds their labels (read once)."""

    dataset: Dataset
    indices: torch.Tensor
    y: torch.Tensor
    sample_shape: tuple[int, ...]
    name: str = "data"
    options: StreamOptions = field(default_factory=StreamOptions)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    sensitive: None = None

    def __post_init__(self):
        self.indices = torch.as_tensor(self.indices, dtype=torch.long)
        if len(self.indices) != len(self.y):
            raise ValueError(f"{self.name}: {len(self.indices)} positions but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def x(self) -> "StreamedInputs":
        return StreamedInputs(self)

    def subset(self, idx) -> "StreamSplit":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return replace(self, indices=self.indices[idx], y=self.y[idx.to(self.y.device)])

    def to(self, device) -> "StreamSplit":
        """The same split, with labels and the batches it reads on ``device`` (the data stays where it is)."""
        return replace(self, y=self.y.to(device), device=torch.device(device))

    def read(self, pos) -> torch.Tensor:
        """Inputs of the samples at positions ``pos`` of this split, read (and transformed) now."""
        keys = self.indices[torch.as_tensor(pos, dtype=torch.long).cpu()].tolist()
        if not keys:
            return torch.empty(0, *self.sample_shape)
        return self.options.collate([self.dataset[i] for i in keys])[0].to(self.device)


class StreamedInputs:
    """The inputs of a :class:`StreamSplit`: read by position (``x[pos]``, ``x.split(n)``), never whole."""

    def __init__(self, split: StreamSplit):
        self._split = split

    def __len__(self) -> int:
        return len(self._split)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self._split), *self._split.sample_shape))

    @property
    def ndim(self) -> int:
        return 1 + len(self._split.sample_shape)

    def dim(self) -> int:
        return self.ndim

    def __getitem__(self, pos) -> torch.Tensor:
        if isinstance(pos, slice):
            pos = torch.arange(len(self._split))[pos]
        elif isinstance(pos, int):
            return self._split.read([pos])[0]
        return self._split.read(pos)

    def split(self, size: int):
        """Consecutive batches of ``size`` samples, read one at a time."""
        return (self[idx] for idx in torch.arange(len(self._split)).split(size))

    def _refusal(self, what: str) -> StreamingUnsupported:
        return StreamingUnsupported(
            f"{self._split.name}: this split is streamed from a Dataset, so its inputs are read by position "
            f"(x[positions], x.split(n)); the code asked for {what}, which needs the whole tensor in memory: "
            "pass data_path='resident' (the data must fit in memory)")

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise self._refusal(f"x.{name}")

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        """Any torch function given the whole inputs (``torch.cat([split.x, ...])``) is refused by name."""
        stack = [*args, *(kwargs or {}).values()]
        while stack:
            a = stack.pop()
            if isinstance(a, cls):
                raise a._refusal(f"{getattr(func, '__name__', func)}(x)")
            if isinstance(a, (list, tuple)):
                stack.extend(a)
        return NotImplemented


class _Tagged(Dataset):
    """Items of two streamed splits under keys (0, i) for forget position i, (1, i) for retain position i."""

    def __init__(self, forget: StreamSplit | None, retain: StreamSplit | None):
        self.splits = (forget, retain)

    def __getitem__(self, key):
        which, i = key
        return which, self.splits[which].dataset[i]


class StepReader:
    """Inputs of each planned step: ``(x_forget, x_retain)`` as read (None where a step has none).

    Resident splits are indexed on the device; streamed splits are read through one DataLoader per
    epoch whose batches are the planned steps, so workers read ahead while the model trains. A run
    may mix the two (a method that swaps in a resident split of its own, e.g. learnt noise).
    """

    def __init__(self, forget, retain, seed: int):
        self.forget, self.retain, self.seed = forget, retain, seed
        self.streamed = tuple(isinstance(s, StreamSplit) for s in (forget, retain))
        given = [s for s, st in zip((forget, retain), self.streamed) if st]
        if given:
            self.options, self.device = given[0].options, given[0].device
            self._tagged = _Tagged(forget, retain)

    def _collate(self, items):
        groups = ([it for w, it in items if w == 0], [it for w, it in items if w == 1])
        return tuple(self.options.collate(g)[0] if g else None for g in groups)

    def _keys(self, f_pos, r_pos) -> list[tuple[int, int]]:
        keys = [(0, i) for i in self.forget.indices[f_pos].tolist()] if self.streamed[0] and len(f_pos) else []
        return keys + ([(1, i) for i in self.retain.indices[r_pos].tolist()] if self.streamed[1] and len(r_pos) else [])

    def _resident(self, split, pos):
        return split.x[pos.to(split.x.device)] if len(pos) else None

    def epoch(self, steps, epoch: int):
        """Yields ``(x_forget, x_retain)`` for each ``(f_pos, r_pos, it)`` of ``steps``, in order."""
        read = iter(())
        if any(self.streamed):
            batches = [self._keys(f_pos, r_pos) for f_pos, r_pos, _ in steps]
            read = iter(self.options.loader(self._tagged, batches, self._collate, self.seed * 7919 + epoch))
            non_blocking = self.options.pin_memory and self.device.type == "cuda"
        for f_pos, r_pos, _ in steps:
            xs = [None, None]
            if any(self.streamed):
                xs = [None if x is None else x.to(self.device, non_blocking=non_blocking) for x in next(read)]
            for k, (split, pos) in enumerate(((self.forget, f_pos), (self.retain, r_pos))):
                if not self.streamed[k] and split is not None:
                    xs[k] = self._resident(split, pos)
            yield tuple(xs)


def stream_source(data, name: str) -> tuple[Dataset, StreamOptions, str]:
    """The map-style dataset a streamed split reads by position, how to read it, and what to call a batch."""
    if isinstance(data, Split):
        return TensorDataset(data.x, data.y), StreamOptions(), "batch"
    if isinstance(data, (tuple, list)):
        x, y = pair(data, name, "the data")
        return TensorDataset(to_tensor(x, name, "x"), to_tensor(y, name, "y")), StreamOptions(), "batch"
    if isinstance(data, DataLoader):
        check_loader_order(data, name)
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
            pair(data[0], name, "Dataset item 0")
        return data, StreamOptions(), "Dataset batch"
    raise TypeError(f"{name} must be a forgetkit Split, an (x, y) pair of tensors, a map-style torch Dataset "
                    f"or a DataLoader, got {type(data).__name__}")


def scan(dataset: Dataset, options: StreamOptions, name: str, what: str, forget_idx) -> StreamSplit:
    """Read ``dataset`` once, in batches, for the up-front checks of :mod:`forgetkit.inputs`; keep only its labels."""
    n = len(dataset)  # type: ignore[arg-type]
    batches = [list(range(i, min(n, i + SCAN_BATCH))) for i in range(0, n, SCAN_BATCH)]
    check, ys, shape = InputCheck(name, None, forget_idx), [], None
    loader = options.loader(dataset, batches, options.collate, seed=0)
    it = iter(loader)
    for b, keys in enumerate(batches):
        try:
            batch = next(it)
        except RuntimeError as e:
            raise ValueError(f"{name}: samples of {what} {b} cannot form one batch ({e}); inputs must share "
                             "one shape and each label must be one integer") from None
        x, y = pair(batch, name, f"{what} {b}")
        split = labels_checked(to_tensor(x, name, f"{what} {b}'s input"), to_tensor(y, name, f"{what} {b}'s labels"),
                               name)
        if shape is None:
            shape = tuple(split.x.shape[1:])
            check.shape = shape
        check.add(keys[0], split.x, split.y)
        ys.append(split.y)
    check.finish()
    y = torch.cat(ys) if ys else torch.empty(0, dtype=torch.long)
    return StreamSplit(dataset, torch.arange(n), y, shape or (), name, options)


def resident(split):
    """A streamed split read into memory (for evaluation); a resident one as it is."""
    if not isinstance(split, StreamSplit):
        return split
    x = torch.cat([c.cpu() for c in split.x.split(SCAN_BATCH)]) if len(split) else torch.empty(0, *split.sample_shape)
    return Split(x, split.y.cpu())


def read_training_data(data, forget_indices, path: str, scored: bool) -> tuple:
    """``(split, forget indices)`` of the training data on ``path`` ("resident" or "streaming"), checked.

    ``scored``: the forget and retain sets will be scored (``unlearn(test=...)``), so a streamed
    split must also fit in memory; refused before anything runs when it does not.
    """
    if path == "resident":
        split = as_split(data, "train", ordered=True)
        idx = validate_indices(forget_indices, len(split))
        check_inputs(split, "train", forget_idx=idx)
        return split, idx
    dataset, options, what = stream_source(data, "train")
    idx = validate_indices(forget_indices, len(dataset))  # type: ignore[arg-type]
    split = scan(dataset, options, "train", what, idx)
    if scored:
        x0 = split.x[:1]
        try:
            check_fits("train", len(split), x0.element_size() * x0.numel())
        except ValueError as e:
            raise ValueError(f"{e}: with test=..., the streamed forget and retain sets are read into memory to be "
                             "scored; pass test=None and score a subset with forgetkit.evaluate") from None
    return split, idx
