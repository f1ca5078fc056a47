"""Whole classes: every training sample of the named classes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import REQUEST_SHAPES, ForgetRequest, RequestShape, ShapeData


def class_request(y, classes, num_classes: int) -> ForgetRequest:
    """Every training sample of the given classes."""
    classes = tuple(int(c) for c in np.atleast_1d(classes))
    if not classes:
        raise ValueError("class request names no class")
    for c in classes:
        if not 0 <= c < num_classes:
            raise ValueError(f"class {c} does not exist (dataset has classes 0..{num_classes - 1})")
    if len(set(classes)) == num_classes:
        raise ValueError("class request names every class: nothing would be retained")
    y = np.asarray(y)
    idx = np.flatnonzero(np.isin(y, classes))
    if idx.size == 0:
        raise ValueError(f"classes {classes} have no training samples")
    return ForgetRequest(idx, "class" + "-".join(map(str, classes)), "class", classes)


@REQUEST_SHAPES.register("class")
@dataclass
class WholeClasses(RequestShape):
    """Every training sample of the given classes (class unlearning)."""

    example = {"classes": [1]}

    classes: list[int]
    """the classes to forget"""

    def __post_init__(self):
        if not self.classes:
            raise ValueError("classes must name at least one class")
        for i, c in enumerate(self.classes):
            if c < 0:
                raise ValueError(f"classes must be class indices >= 0, got {c}")
            if c in self.classes[:i]:
                raise ValueError(f"classes lists class {c} twice; give each once")

    def build(self, data: ShapeData) -> ForgetRequest:
        return class_request(data.y, self.classes, data.num_classes)
