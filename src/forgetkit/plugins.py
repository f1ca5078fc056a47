"""Extending forgetkit from outside the package: decorators and Python entry points.

In a notebook or your own module::

    @forgetkit.register_method("my_ga")
    @dataclass
    class MyGA(EngineMethod): ...

An installed package adds plug-ins with entry points in its ``pyproject.toml``::

    [project.entry-points."forgetkit.methods"]
    my_ga = "my_package.methods:MyGA"

:func:`load_plugins` imports them (the CLI calls it before ``run`` and ``methods``). A name that
is already registered is refused unless ``override=True``; a plug-in that fails to import is
named in a warning and skipped, so the rest of forgetkit keeps working.
"""
from __future__ import annotations

import dataclasses
import warnings
from importlib.metadata import entry_points
from typing import Callable

GROUPS = ("forgetkit.methods", "forgetkit.weightings", "forgetkit.evaluators", "forgetkit.datasets",
          "forgetkit.models", "forgetkit.request_shapes")


def _registry(group: str):
    """The registry behind an entry-point group (imported lazily: registries pull in torch code)."""
    if group == "forgetkit.methods":
        from .methods.base import METHODS
        return METHODS
    if group == "forgetkit.weightings":
        from .unlearn.weightings import WEIGHTINGS
        return WEIGHTINGS
    if group == "forgetkit.evaluators":
        from .metrics.evaluators import EVALUATORS
        return EVALUATORS
    if group == "forgetkit.datasets":
        from .data.base import DATASETS
        return DATASETS
    if group == "forgetkit.models":
        from .models import MODELS
        return MODELS
    if group == "forgetkit.request_shapes":
        from .data.requests import REQUEST_SHAPES
        return REQUEST_SHAPES
    raise ValueError(f"unknown plug-in group {group!r}; groups: {', '.join(GROUPS)}")


def _check_name(name) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a plug-in needs a non-empty string name, got {name!r}")


def _check_method(item) -> None:
    from .methods.base import Method

    if not (isinstance(item, type) and issubclass(item, Method) and dataclasses.is_dataclass(item)):
        raise TypeError(f"register_method expects a @dataclass subclass of forgetkit.methods.base.Method "
                        f"(its fields are the hyper-parameters), got {item!r}")


def _check_weighting(item) -> None:
    from .unlearn.weightings import Weighting

    if not (isinstance(item, type) and issubclass(item, Weighting)):
        raise TypeError(f"register_weighting expects a subclass of forgetkit.unlearn.weightings.Weighting, got {item!r}")


def _check_callable(kind: str, signature: str):
    def check(item) -> None:
        if not callable(item):
            raise TypeError(f"register_{kind} expects a function {signature}, got {item!r}")
    return check


def _check_request_shape(item) -> None:
    from .data.requests import RequestShape

    if not (isinstance(item, type) and issubclass(item, RequestShape) and dataclasses.is_dataclass(item)):
        raise TypeError(f"register_request_shape expects a @dataclass subclass of "
                        f"forgetkit.data.requests.RequestShape (its fields are the options), got {item!r}")


CHECKS = {
    "forgetkit.methods": _check_method,
    "forgetkit.weightings": _check_weighting,
    "forgetkit.datasets": _check_callable("dataset", "(data_dir=None) -> DataBundle"),
    "forgetkit.models": _check_callable("model", "(in_shape, num_classes, **options) -> nn.Module"),
    "forgetkit.request_shapes": _check_request_shape,
}


def _register(group: str, name: str, override: bool) -> Callable:
    _check_name(name)
    registry = _registry(group)

    def add(item):
        CHECKS[group](item)
        return registry.register(name, override=override)(item)

    return add


def register_method(name: str, *, override: bool = False) -> Callable:
    """Decorator: add an unlearning method (a dataclass ``Method``) under ``name``."""
    return _register("forgetkit.methods", name, override)


def register_weighting(name: str, *, override: bool = False) -> Callable:
    """Decorator: add a per-sample forget weighting (a ``Weighting`` subclass) under ``name``."""
    return _register("forgetkit.weightings", name, override)


def _as_evaluator(fn, references=None, smoke=None, class_requests_only: bool = False, check=None):
    """``fn`` with the cost declarations the runner reads (no extra references, unchanged under smoke)."""
    from .metrics.evaluators import Evaluator

    if isinstance(fn, Evaluator):
        return fn
    _check_callable("evaluator", "(cell: CellView, **options) -> dict")(fn)
    return Evaluator(fn, references or (lambda options: 0), smoke or dict, class_requests_only,
                     check or (lambda options: None))


def register_evaluator(name: str, *, override: bool = False, references: Callable[[dict], int] | None = None,
                       smoke: Callable[[dict], dict] | None = None, class_requests_only: bool = False,
                       check: Callable[[dict], None] | None = None) -> Callable:
    """Decorator: add an evaluator ``fn(cell, **options) -> {metric: value}`` under ``name``.

    ``references(options)``: how many retrained references it asks ``cell.references`` for;
    ``smoke(options)``: its options under ``--smoke``; ``class_requests_only``: it measures
    whole-class forgetting; ``check(options)``: raises ValueError for options it cannot take.
    """
    _check_name(name)

    def add(fn):
        from .metrics.evaluators import EVALUATORS

        EVALUATORS.register(name, override=override)(_as_evaluator(fn, references, smoke, class_requests_only, check))
        return fn

    return add


def register_dataset(name: str, *, override: bool = False) -> Callable:
    """Decorator: add a dataset loader ``fn(data_dir=None) -> DataBundle`` under ``name``."""
    return _register("forgetkit.datasets", name, override)


def register_model(name: str, *, override: bool = False) -> Callable:
    """Decorator: add an architecture ``fn(in_shape, num_classes, **options) -> nn.Module`` under ``name``."""
    return _register("forgetkit.models", name, override)


def register_request_shape(name: str, *, override: bool = False) -> Callable:
    """Decorator: add a forget-request shape (a dataclass ``RequestShape`` whose fields are its
    options, with ``build(data) -> ForgetRequest``) under ``name``; configs use it as ``kind: name``."""
    return _register("forgetkit.request_shapes", name, override)


def load_plugins() -> list[str]:
    """Import every installed plug-in; returns ``"group:name"`` of those registered by this call.

    A plug-in whose module registers itself with the decorators is left as it is; otherwise the
    loaded object is registered under the entry point's name. Failures (import errors, a clash
    with an existing name, the wrong kind of object) are warnings naming the entry point.
    """
    loaded = []
    installed = entry_points()  # one scan of the installed distributions for every group
    for group in GROUPS:
        registry = _registry(group)
        for ep in installed.select(group=group):
            try:
                item = ep.load()
                if ep.name in registry and getattr(registry.get(ep.name), "fn", registry.get(ep.name)) is item:
                    continue  # the module registered itself with the decorator
                if group == "forgetkit.evaluators":
                    register_evaluator(ep.name)(item)
                else:
                    _register(group, ep.name, override=False)(item)
            except Exception as e:  # noqa: BLE001  a broken plug-in must not break forgetkit
                warnings.warn(f"forgetkit plug-in {ep.name!r} ({group} = {ep.value}) was skipped: "
                              f"{type(e).__name__}: {e}", RuntimeWarning, stacklevel=2)
                continue
            loaded.append(f"{group}:{ep.name}")
    return loaded
