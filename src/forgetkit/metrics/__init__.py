"""Metrics, attacks and the evaluator registry; importing this package registers every evaluator."""
from . import class_eval, output_eval  # noqa: F401
from .evaluators import EVALUATORS, CellView

__all__ = ["EVALUATORS", "CellView"]
