"""Forget requests and the registry of request shapes; importing this package imports every module
in it, so a new shape is one module here (plus its test) and config, workspace and grid find it."""
import importlib
import pkgutil

from .base import REQUEST_SHAPES, ForgetRequest, RequestShape, ShapeData, build_request, make_shape, validate_indices
from .longtail import class_groups, longtail_counts, longtail_request
from .mixed import mixed_request
from .random_fraction import random_request
from .whole_class import class_request

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["REQUEST_SHAPES", "ForgetRequest", "RequestShape", "ShapeData", "build_request", "class_groups",
           "class_request", "longtail_counts", "longtail_request", "make_shape", "mixed_request", "random_request",
           "validate_indices"]
