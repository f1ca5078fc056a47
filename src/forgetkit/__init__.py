"""forgetkit: machine unlearning that decides how much to forget.

Quick use::

    from forgetkit import unlearn, evaluate
    result = unlearn(model, (x, y), forget_indices, method="rl", weighting="falw", heldout=(xh, yh))

The plug-in helpers and ``audit`` are imported on first use. ``unlearn`` is bound here, eagerly:
it shares its name with the ``forgetkit.unlearn`` package, which importing the API loads first.
"""
from __future__ import annotations

import importlib

from .api import EvaluationTable, UnlearnResult, evaluate, unlearn

_EXPORTS = {
    "register_method": "plugins", "register_weighting": "plugins", "register_evaluator": "plugins",
    "register_dataset": "plugins", "register_model": "plugins", "register_request_shape": "plugins",
    "load_plugins": "plugins",
    "audit": "audit",
    "ForgetkitWarning": "inputs",
}

__all__ = ["unlearn", "evaluate", "UnlearnResult", "EvaluationTable", *sorted(_EXPORTS)]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        value = module if _EXPORTS[name] == name else getattr(module, name)  # ``audit``: the callable package
        globals()[name] = value
        return value
    raise AttributeError(f"module 'forgetkit' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])
