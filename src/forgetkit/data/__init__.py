"""Datasets, held-out splits and forget requests; importing this package imports every module in
it, so a new loader module registers itself (one file plus its test)."""
import importlib
import pkgutil

from .base import DATASETS, DataBundle, Split, as_float, heldout_split
from .requests import (ForgetRequest, class_request, longtail_request, mixed_request, random_request,
                       validate_indices)

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")


def load_dataset(name: str, data_dir: str | None = None) -> DataBundle:
    """Load a registered dataset by name (``forgetkit methods`` lists them)."""
    return DATASETS.get(name)(data_dir=data_dir)


__all__ = ["DATASETS", "DataBundle", "Split", "ForgetRequest", "as_float", "heldout_split",
           "load_dataset", "class_request", "longtail_request", "mixed_request", "random_request", "validate_indices"]
