"""Datasets, held-out splits and forget requests."""
from . import images, tabular  # noqa: F401  (register loaders)
from .base import DATASETS, DataBundle, Split, as_float, heldout_split
from .requests import ForgetRequest, class_request, longtail_request, random_request, validate_indices


def load_dataset(name: str, data_dir: str | None = None) -> DataBundle:
    """Load a registered dataset by name (``forgetkit methods`` lists them)."""
    return DATASETS.get(name)(data_dir=data_dir)


__all__ = ["DATASETS", "DataBundle", "Split", "ForgetRequest", "as_float", "heldout_split",
           "load_dataset", "class_request", "longtail_request", "random_request", "validate_indices"]
