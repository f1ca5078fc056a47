"""Sub-class requests: part of one class, chosen by what the samples are rather than at random.

Two ways to choose: a user's predicate over the class's inputs (the "forget the 7s written with a
bar" request), or one cluster of the original model's penultimate features within the class
(k-means; the sub-population a model has learned to tell apart, as in sub-class unlearning
benchmarks). The rest of the class stays, so the model must keep the class and drop the part.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .base import REQUEST_SHAPES, ForgetRequest, RequestShape, ShapeData


def resolve_predicate(predicate: str | Callable) -> Callable:
    """A callable as it is; ``"package.module:function"`` imported (how configs name one)."""
    if callable(predicate):
        return predicate
    module, sep, attr = str(predicate).partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"predicate must be 'module:function' (an importable function), got {predicate!r}")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise ValueError(f"predicate {predicate!r}: cannot import module {module!r} ({e})") from None
    except AttributeError:
        raise ValueError(f"predicate {predicate!r}: module {module!r} has no {attr!r}") from None
    if not callable(fn):
        raise ValueError(f"predicate {predicate!r} is not a function")
    return fn


@REQUEST_SHAPES.register("subclass")
@dataclass
class SubClass(RequestShape):
    """Part of one class: the samples a predicate picks, or one k-means cluster of the original's features."""

    example = {"of_class": 1, "clusters": 2}

    of_class: int
    """the class a part of which is forgotten"""
    predicate: str | Callable[..., Any] | None = None
    """``fn(x) -> one bool per sample`` over the class's inputs: a function (Python API) or
    ``'module:function'`` (configs); True marks a sample to forget"""
    clusters: int | None = None
    """instead of a predicate: k of a k-means on the original model's penultimate features of the class"""
    cluster: int = 0
    """which cluster to forget, by size: 0 the largest, 1 the next (k-means numbers them arbitrarily)"""
    _fn: Callable | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        if (self.predicate is None) == (self.clusters is None):
            raise ValueError("give exactly one of predicate ('module:function') and clusters (k of a k-means)")
        if self.of_class < 0:
            raise ValueError(f"of_class must be >= 0, got {self.of_class}")
        if self.predicate is not None:
            self._fn = resolve_predicate(self.predicate)
        elif self.clusters < 2:
            raise ValueError(f"clusters must be >= 2 (one cluster is the whole class: use kind class), got {self.clusters}")
        if self.clusters is not None and not 0 <= self.cluster < self.clusters:
            raise ValueError(f"cluster must be in 0..{self.clusters - 1} (rank by size), got {self.cluster}")

    @property
    def needs_features(self) -> bool:  # type: ignore[override]
        return self.clusters is not None

    def build(self, data: ShapeData) -> ForgetRequest:
        c = self.of_class
        if c >= data.num_classes:
            raise ValueError(f"class {c} does not exist (dataset has classes 0..{data.num_classes - 1})")
        members = np.flatnonzero(np.asarray(data.y) == c)
        if members.size < 2:
            raise ValueError(f"class {c} has {members.size} training samples; a sub-class request needs at least 2")
        if self._fn is not None:
            chosen, how = members[self._pick(data, members)], getattr(self._fn, "__name__", "predicate")
        else:
            chosen, how = members[self._cluster(data, members)], f"k{self.clusters}-c{self.cluster}"
        if chosen.size == 0:
            raise ValueError(f"the sub-class request picks no sample of class {c}")
        if chosen.size == members.size:
            raise ValueError(f"the sub-class request picks every sample of class {c}; to forget the whole "
                             "class use kind: class")
        return ForgetRequest(np.sort(chosen), f"subclass{c}-{how}", "subclass")

    def _pick(self, data: ShapeData, members: np.ndarray) -> np.ndarray:
        if data.x is None:
            raise ValueError("a sub-class request with a predicate needs the training inputs (x)")
        try:
            mask = np.asarray(self._fn(data.x[members]))
        except Exception as e:  # noqa: BLE001  the user's code: say whose it is and what it raised
            raise ValueError(f"predicate {self.predicate!r} failed on the {members.size} inputs of class "
                             f"{self.of_class}: {type(e).__name__}: {e}") from None
        if mask.shape != (members.size,) or mask.dtype != bool:
            raise ValueError(f"predicate {self.predicate!r} must return one bool per sample of class "
                             f"{self.of_class} ({members.size}), got shape {mask.shape}, dtype {mask.dtype}")
        return mask

    def _cluster(self, data: ShapeData, members: np.ndarray) -> np.ndarray:
        from sklearn.cluster import KMeans

        if members.size < self.clusters:
            raise ValueError(f"class {self.of_class} has {members.size} samples, fewer than clusters={self.clusters}")
        feats = data.pool_features()[members].astype(np.float64)
        labels = KMeans(n_clusters=self.clusters, n_init=10, random_state=data.seed).fit_predict(feats)
        first = {k: np.flatnonzero(labels == k)[:1].tolist() or [members.size] for k in range(self.clusters)}
        by_size = sorted(range(self.clusters), key=lambda k: (-(labels == k).sum(), first[k]))
        return labels == by_size[self.cluster]
