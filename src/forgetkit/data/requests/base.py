"""Forget requests, and the registry of the shapes that choose them.

A shape is a dataclass whose fields are its options, registered under a name in
:data:`REQUEST_SHAPES`; its ``build`` picks the forget set from what :class:`ShapeData` holds.
Options are checked like a method's (:func:`forgetkit.options.validate_options`: unknown keys,
types, then the shape's own ``__post_init__`` range checks), so a config, the Python API and a
plug-in all get the same error naming the field. Shapes seed their own ``RandomState`` so a request
is identical on every machine; an infeasible request raises ``ValueError`` saying why.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np

from ...options import validate_options
from ...registry import Registry


@dataclass(frozen=True)
class ForgetRequest:
    """Indices into the training split to forget, with a name for reports."""

    indices: np.ndarray
    name: str
    kind: str
    """the shape's registry name (``random``, ``class``, …), or ``indices`` for indices a user gave"""
    classes: tuple[int, ...] = ()
    """classes forgotten whole (class requests): their test samples leave TA and MIA"""


def validate_indices(indices, n_train: int) -> np.ndarray:
    """Check user-supplied forget indices: integers, in range, unique, non-empty, not everything."""
    idx = np.asarray(indices)
    if idx.ndim != 1:
        raise ValueError(f"forget indices must be a 1-D list, got shape {idx.shape}")
    if idx.size == 0:
        raise ValueError("forget indices are empty: there is nothing to forget")
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"forget indices must be integers, got dtype {idx.dtype}")
    if idx.min() < 0 or idx.max() >= n_train:
        bad = idx[(idx < 0) | (idx >= n_train)][:5].tolist()
        raise ValueError(f"forget indices out of range [0, {n_train}): {bad}")
    uniq, counts = np.unique(idx, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"forget indices contain duplicates: {uniq[counts > 1][:5].tolist()}")
    if idx.size >= n_train:
        raise ValueError("forget indices cover the whole training set: nothing would be retained")
    return np.sort(idx.astype(np.int64))


@dataclass(frozen=True)
class ShapeData:
    """What a shape may look at: the training pool's labels (and inputs), its class count, the seed,
    and, for shapes that declare ``needs_features``, the original model's penultimate features of
    the pool (an array, or a function computing it, so they are only computed for such shapes)."""

    y: np.ndarray
    num_classes: int
    seed: int = 0
    x: Any = None
    """the pool's inputs (a tensor or array), for shapes that choose by content"""
    features: np.ndarray | Callable[[], np.ndarray] | None = None

    def pool_features(self) -> np.ndarray:
        if self.features is None:
            raise ValueError("this request shape clusters the original model's features, but none were given: "
                             "pass features= (forgetkit.models.penultimate_features(model, x))")
        f = np.asarray(self.features() if callable(self.features) else self.features)
        if f.ndim != 2 or len(f) != len(self.y):
            raise ValueError(f"features must be one row per training sample ({len(self.y)}), got shape {f.shape}")
        return f


class RequestShape:
    """Base of request shapes: subclass as a ``@dataclass`` (its fields are the options), implement
    :meth:`build`, register with ``@REQUEST_SHAPES.register(name)`` (or
    ``forgetkit.register_request_shape`` from outside the package)."""

    example: ClassVar[dict] = {}
    """options valid on any dataset of at least 3 classes of 20 samples: the contract test builds it"""
    needs_features: ClassVar[bool] = False
    """True when :meth:`build` reads ``data.pool_features()`` (the original must be trained first)"""
    registry_name: ClassVar[str] = ""

    def build(self, data: ShapeData) -> ForgetRequest:
        raise NotImplementedError


REQUEST_SHAPES: Registry[type[RequestShape]] = Registry("request shape")


def make_shape(kind: str, options: dict, where: str = "request") -> RequestShape:
    """The shape ``kind`` with ``options`` checked: a missing required field, an unknown one, a
    wrong type and an out-of-range value are each a ``ValueError`` starting with ``where``."""
    cls = REQUEST_SHAPES.get(kind)
    if not isinstance(options, dict):
        raise ValueError(f"{where}: expected a mapping of options, got {options!r}")
    required = [f.name for f in dataclasses.fields(cls) if f.init and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]
    for name in required:
        if name not in options:
            raise ValueError(f"{where}: a {kind} request needs the field '{name}'")
    return cls(**validate_options(cls, options, where))


def build_request(kind: str, y, num_classes: int, seed: int = 0, *, x=None, features=None,
                  **options) -> ForgetRequest:
    """A forget request of a registered shape, e.g. ``build_request("subclass", y, 10, of_class=3,
    predicate=fn, x=x)``; pass its ``indices`` to :func:`forgetkit.unlearn`."""
    shape = make_shape(kind, options)
    return shape.build(ShapeData(np.asarray(y), num_classes, seed, x, features))
