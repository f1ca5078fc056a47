"""Keyword options from a config, checked against what a component declares, before any work.

A component declares its options as annotated dataclass fields (methods), annotated ``__init__``
keywords (weightings) or annotated keyword parameters with defaults (model builders, evaluators).
A YAML typo or a string where a number belongs would otherwise surface hours later inside a
training loop, or never; here it is one error naming the field.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from typing import Any, Literal, Union

_MISSING = object()


def declared_options(target) -> dict[str, Any]:
    """Option name → annotation (``Any`` when unannotated or unresolvable) of ``target``.

    Dataclass: its init fields. Class: the keywords of ``__init__``. Function: the parameters
    with a default (those without one are the inputs the caller passes, such as a model's shape).
    """
    if dataclasses.is_dataclass(target) and isinstance(target, type):
        hints = _hints(target)
        return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(target) if f.init}
    fn = target.__init__ if isinstance(target, type) else inspect.unwrap(target)
    hints = _hints(fn)
    params = list(inspect.signature(fn).parameters.values())
    if isinstance(target, type):
        params = params[1:]  # self
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: hints.get(p.name, Any) for p in params
            if p.kind in kinds and (isinstance(target, type) or p.default is not inspect.Parameter.empty)}


def _hints(obj) -> dict[str, Any]:
    """Resolved annotations; one that cannot be resolved (a name imported only for type checkers)
    leaves just that field unchecked."""
    try:
        return typing.get_type_hints(obj)
    except Exception:  # noqa: BLE001
        pass
    hints = {}
    namespace = {**vars(typing), **getattr(inspect.unwrap(obj), "__globals__", {})}
    for name, ann in getattr(obj, "__annotations__", {}).items():
        try:
            hints[name] = eval(ann, namespace) if isinstance(ann, str) else ann  # noqa: S307  source annotations
        except Exception:  # noqa: BLE001
            continue
    return hints


def validate_options(target, options: dict, where: str) -> dict:
    """Check ``options`` against ``target``'s declared options; returns them with ints widened to float
    where a float is declared. Unknown keys, wrong types and the target's own range errors (a
    ``ValueError`` or ``TypeError`` from its ``__post_init__`` or constructor, classes only) are a ``ValueError``
    starting with ``where``. Nothing is constructed for a function target."""
    if not isinstance(options, dict):
        raise ValueError(f"{where}: expected a mapping of options, got {_show(options)}")
    declared = declared_options(target)
    unknown = sorted(set(options) - set(declared))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown}{_suggest(unknown, declared)}; "
                         f"options: {sorted(declared) or 'none'}")
    out = {}
    for name, value in options.items():
        ok, value = conform(value, declared[name])
        if not ok:
            raise ValueError(f"{where}.{name}: expected {type_name(declared[name])}, got {_show(value)}")
        out[name] = value
    if isinstance(target, type):
        try:
            target(**out)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{where}: {e}") from None
    return out


def suggestion(word: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or ''."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _suggest(unknown: list[str], declared) -> str:
    return suggestion(unknown[0], declared) if len(unknown) == 1 else ""


def conform(value, tp) -> tuple[bool, Any]:
    """(value fits ``tp``, value as stored): an int fits float (and becomes one), a bool fits only
    bool, a YAML list fits a tuple; a string never fits a number."""
    if tp is Any or tp is object or isinstance(tp, typing.TypeVar):
        return True, value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union or origin is types.UnionType:
        for arg in args:
            ok, v = conform(value, arg)
            if ok:
                return True, v
        return False, value
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args), value
    if tp is type(None):
        return value is None, value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False, value
        return True, float(value)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set, frozenset):
        if not isinstance(value, (list, tuple)):
            return False, value
        if args and not (origin is tuple and not (len(args) == 2 and args[1] is Ellipsis)):
            item = args[0]
            conformed = [conform(v, item) for v in value]
            if not all(ok for ok, _ in conformed):
                return False, value
            value = [v for _, v in conformed]
        return True, tuple(value) if (origin or tp) is tuple else value
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            return False, value
        if len(args) == 2:
            conformed = {k: conform(v, args[1]) for k, v in value.items()}
            if not all(conform(k, args[0])[0] for k in value) or not all(ok for ok, _ in conformed.values()):
                return False, value
            value = {k: v for k, (_, v) in conformed.items()}
        return True, value
    if origin is not None:  # Callable[...] and other generics: a config cannot give these
        origin_ok = isinstance(origin, type) and isinstance(value, origin)
        return origin_ok, value
    if isinstance(tp, type):
        return isinstance(value, tp), value
    return True, value


def type_name(tp) -> str:
    """``float``, ``int or None``, ``one of 'a', 'b'``, ``list of int``: the declared type in words."""
    if tp is Any:
        return "any value"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union or origin is types.UnionType:
        return " or ".join(type_name(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if tp is type(None):
        return "None"
    if origin in (list, tuple, set, frozenset) and args:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return "mapping"
    if isinstance(tp, type):
        return {"list": "list", "tuple": "list", "dict": "mapping"}.get(tp.__name__, tp.__name__)
    return str(tp)


def _show(value) -> str:
    return f"{value!r} ({type(value).__name__})"
