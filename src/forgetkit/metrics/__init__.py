"""Metrics and attacks; importing this package registers the class-unlearning evaluators."""
from . import class_eval  # noqa: F401
