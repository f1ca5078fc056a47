"""Metrics, attacks and the evaluator registry; importing this package imports every module in
it, so a new evaluator module registers itself (one file plus its test)."""
import importlib
import pkgutil

from .evaluators import EVALUATORS, CellView

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["EVALUATORS", "CellView"]
