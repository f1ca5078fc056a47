"""The files a user hands the command line (data, forget indices, checkpoints) and the model they
name, read in one place with one set of errors: every refusal is a ``ValueError`` that names the
file or the flag and says what to do, and nothing is scored or written before everything loads.

Data files are ``.pt`` (``torch.save`` of ``{"x": ..., "y": ...}`` or an ``(x, y)`` pair) or
``.npz`` (arrays ``x`` and ``y``); either may carry ``indices`` (positions in the training pool).
Checkpoints are ``state_dict`` files, optionally wrapped as ``{"state_dict": ...}`` (or
``{"model_state_dict": ...}``, as PyTorch's tutorials save them), always read with
``weights_only=True``: a pickled whole model is refused, since unpickling one can run any code.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..data.base import Split
from ..inputs.splits import labels_checked

STATE_DICT_KEYS = ("state_dict", "model_state_dict")
"""wrappers of a state_dict that training scripts commonly save"""

SAVE_HINT = "save the weights with torch.save(model.state_dict(), path)"


class MissingInputFile(FileNotFoundError, ValueError):
    """A file named on the command line does not exist (a bad argument like every other refusal here)."""


@dataclass
class LoadedData:
    """A data file's samples and, when it carries them, their positions in the training pool."""

    split: Split
    indices: np.ndarray | None


def existing(path: str | Path, what: str) -> Path:
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{what} file '{p}' is a directory; give the file itself")
    if not p.is_file():
        raise MissingInputFile(f"{what} file '{p}' does not exist")
    return p


def _torch_load(p: Path):
    """``torch.load(weights_only=True)``; the error is torch's first line without its advice to load
    unsafely or its terminal colour codes, and a pickled object is named."""
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  torch raises many kinds (unpickling, zip, weights-only refusals)
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if found:
            raise _PickledObject(found.group(1)) from None
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        raise _Unreadable(f"{type(e).__name__}: {first}" if first else type(e).__name__) from None


class _PickledObject(Exception):
    """The file holds a pickled Python object (its class named), not tensors."""


class _Unreadable(Exception):
    """torch cannot read the file at all."""


def load_data(path: str | Path, what: str) -> LoadedData:
    """The samples of a ``.pt`` or ``.npz`` data file; ``what`` names it in errors (``forget``, ``test``)."""
    p = existing(path, what)
    if p.suffix not in (".pt", ".npz"):
        raise ValueError(f"{what} file '{p}' must end in .pt or .npz (holding x and y)")
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                raw = {k: z[k] for k in z.files}
        else:
            raw = _torch_load(p)
    except _PickledObject as e:
        raise ValueError(f"{what} file '{p}' holds a pickled {e} rather than tensors; save "
                         "{'x': x, 'y': y} of tensors with torch.save, or arrays with numpy.savez") from None
    except (_Unreadable, ValueError, OSError) as e:
        raise ValueError(f"{what} file '{p}' could not be read ({e})") from None
    if isinstance(raw, (tuple, list)) and len(raw) == 2:
        raw = {"x": raw[0], "y": raw[1]}
    if not isinstance(raw, dict) or "x" not in raw or "y" not in raw:
        held = f"it holds the keys {sorted(map(str, raw))}" if isinstance(raw, dict) else \
            f"it holds a {type(raw).__name__}"
        raise ValueError(f"{what} file '{p}' must hold x and y (a dict or .npz with keys 'x' and 'y', or an "
                         f"(x, y) pair); {held}")
    try:
        x, y = (raw[k] if torch.is_tensor(raw[k]) else torch.as_tensor(np.asarray(raw[k])) for k in ("x", "y"))
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{what} file '{p}': x and y must be arrays of numbers ({e})") from None
    if y.dtype == torch.bool:
        raise ValueError(f"{what} file '{p}': labels must be integer class indices, got torch.bool")
    split = labels_checked(x, y, f"{what} file '{p}'")
    idx = raw.get("indices")
    return LoadedData(split, None if idx is None else np.asarray(idx).ravel())


def load_indices(path: str | Path) -> np.ndarray:
    """Forget indices from ``.npy``, ``.pt``, ``.json`` (a list) or text (whitespace- or comma-separated)."""
    p = existing(path, "forget indices")
    try:
        if p.suffix == ".npy":
            return np.load(p, allow_pickle=False)
        if p.suffix == ".pt":
            return torch.as_tensor(_torch_load(p)).numpy()
        if p.suffix == ".json":
            return np.asarray(json.loads(p.read_text()))
    except (_PickledObject, _Unreadable, ValueError, TypeError, RuntimeError, UnicodeDecodeError) as e:
        raise ValueError(f"forget indices file '{p}' could not be read as a list of integers ({e})") from None
    try:
        return np.asarray([int(v) for v in p.read_text().replace(",", " ").split()], dtype=np.int64)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"forget indices file '{p}' must hold integers") from None


def model_option(text: str) -> tuple[str, object]:
    """``--model-option KEY=VALUE``: the value read as YAML (``32``, ``0.5``, ``true``, ``[1, 2]``)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. hidden=32), got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise argparse.ArgumentTypeError(f"the value of {key.strip()} is not valid YAML: "
                                         f"{str(e).splitlines()[0]}") from None


@dataclass
class ModelSpec:
    """The architecture ``--model`` names: a registered name, or ``package.module:factory``."""

    name: str
    options: dict

    def build(self, in_shape: tuple, num_classes: int) -> nn.Module:
        if ":" not in self.name:
            from ..models import MODELS, build_model

            if self.name not in MODELS:
                raise ValueError(f"--model {self.name!r} is not a registered model (known: {', '.join(MODELS.names())}); "
                                 "give one of them or your own factory as package.module:function")
            return build_model(self.name, in_shape, num_classes, **self.options)
        return _call_factory(self.name, importable(self.name, "--model"), self.options, in_shape, num_classes)


def add_model_arguments(parser: argparse.ArgumentParser, *, required: bool, whose: str) -> None:
    """``--model``, ``--model-option`` and ``--normalize``: how a subcommand builds the user's model
    around a checkpoint, the same flags for every subcommand that loads one."""
    parser.add_argument("--model", required=required, help="a registered architecture (forgetkit methods lists "
                        "them), e.g. mlp, or your own factory as package.module:function")
    parser.add_argument("--model-option", action="append", type=model_option, metavar="KEY=VALUE",
                        help="architecture option, e.g. hidden=256 (repeatable)")
    parser.add_argument("--normalize", metavar="SPEC",
                        help=f"how {whose} {'expects its' if whose == 'the model' else 'expect their'} inputs normalised: "
                             "'{mean: [...], std: [...]}' (one value, or one per channel) or package.module:function "
                             "applied to each batch; the data files stay as they are")


def importable(spec: str, flag: str) -> Callable:
    """The function or class ``package.module:name`` names (``flag`` says which option gave it)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"{flag} {spec!r}: give package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"{flag} {spec!r}: module {module_name!r} cannot be imported ({e}); install its "
                         "package or put its directory on PYTHONPATH") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
            raise ValueError(f"{flag} {spec!r}: module {module_name!r} has no {attr!r}; it has "
                             f"{', '.join(public) or 'no public callables'}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{flag} {spec!r}: {attr!r} is a {type(obj).__name__}, not a function or class")
    return obj


def normalize_option(text: str, sample_shape: tuple) -> Callable:
    """``--normalize``: ``"{mean: [...], std: [...]}"`` or ``"[mean, std]"`` (YAML, one value or one per
    channel of ``sample_shape``), or ``package.module:function`` applied to every batch."""
    import yaml

    from ..inputs.models import normalisation

    text = text.strip()
    if ":" in text and not text.startswith(("{", "[")):
        return importable(text, "--normalize")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"--normalize {text!r} is not valid YAML ({str(e).splitlines()[0]}); give "
                         "'{mean: [0.5], std: [0.25]}' or package.module:function") from None
    try:
        return normalisation(value, sample_shape, "--normalize")
    except TypeError as e:
        raise ValueError(str(e)) from None


SHAPE_ARGS = ("in_shape", "num_classes")


def _call_factory(spec: str, factory: Callable, options: dict, in_shape: tuple, num_classes: int) -> nn.Module:
    """``factory(in_shape, num_classes, **options)`` when it takes two positional inputs, as a registered
    model does; otherwise ``factory(**options)``, given ``in_shape``/``num_classes`` if it has
    parameters of those names."""
    from ..options import validate_options

    params = inspect.signature(factory).parameters.values()
    positional = [p.name for p in params if p.default is inspect.Parameter.empty
                  and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) not in (0, 2):
        raise ValueError(f"--model {spec!r}: the factory must take (in_shape, num_classes, **options) or only "
                         f"keyword options; it requires {positional}")
    given = [k for k in SHAPE_ARGS if k in options]
    if given:
        raise ValueError(f"--model-option {given[0]}: forgetkit passes {' and '.join(SHAPE_ARGS)} from the data "
                         "(use --num-classes to set the number of classes)")
    named = {p.name for p in params}
    if not isinstance(factory, type):  # a class is checked by constructing it, below
        options = validate_options(factory, options, f"--model {spec} options")
    if positional:
        args, kwargs = (in_shape, num_classes), options
    else:
        args = ()
        kwargs = {**{k: v for k, v in zip(SHAPE_ARGS, (in_shape, num_classes)) if k in named}, **options}
    try:
        model = factory(*args, **kwargs)
    except Exception as e:  # noqa: BLE001  the user's code: say whose error it is
        raise ValueError(f"--model {spec!r} raised {type(e).__name__}: {e}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"--model {spec!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def model_spec(name: str, options: list[tuple[str, object]] | None) -> ModelSpec:
    """``--model`` and its ``--model-option`` pairs (a key given twice is refused)."""
    out: dict = {}
    for key, value in options or []:
        if key in out:
            raise ValueError(f"--model-option {key} is given twice ({out[key]!r} and {value!r}); keep one")
        out[key] = value
    return ModelSpec(name, out)


def load_checkpoint(path: str | Path, model: ModelSpec, in_shape: tuple, num_classes: int,
                    what: str = "checkpoint") -> nn.Module:
    """``model`` built for ``in_shape``/``num_classes`` with the weights of ``path``, in eval mode."""
    p = existing(path, what)
    try:
        state = _torch_load(p)
    except _PickledObject as e:
        raise ValueError(f"{what} '{p}' does not load: it holds a pickled {e} (a whole model saved with "
                         f"torch.save(model)), and unpickling one can run any code; {SAVE_HINT}") from None
    except _Unreadable as e:
        raise ValueError(f"{what} '{p}' does not load: it is not a weights file torch can read ({e}); "
                         f"{SAVE_HINT}") from None
    state = _unwrap(state, p, what)
    net = model.build(in_shape, num_classes)
    state = _without_parallel_prefix(state, net)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
        reason = lines[1] if len(lines) > 1 else lines[0]
        raise ValueError(f"{what} '{p}' does not fit the chosen architecture (it does not load into {model.name} "
                         f"with {num_classes} classes, input {tuple(in_shape)}, options {model.options}): {reason}; "
                         "check --model, --model-option and --num-classes") from None
    return net.eval()


def _unwrap(state, p: Path, what: str) -> dict:
    if isinstance(state, dict):
        for key in STATE_DICT_KEYS:
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise ValueError(f"{what} '{p}' does not load: it holds a {type(state).__name__}, not a state_dict; {SAVE_HINT}")
    if not state or not all(torch.is_tensor(v) for v in state.values()):
        keys = ", ".join(map(str, list(state)[:6])) + (", …" if len(state) > 6 else "")
        raise ValueError(f"{what} '{p}' does not load: it is a dict ({keys or 'empty'}) but not a state_dict of "
                         f"tensors, nor one wrapped under {' or '.join(STATE_DICT_KEYS)}; {SAVE_HINT}")
    return state


def _without_parallel_prefix(state: dict, net: nn.Module) -> dict:
    """A state_dict saved from ``nn.DataParallel``/DDP names every key ``module.…``: strip it when the
    bare model has none of those names."""
    prefix = "module."
    if all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in net.state_dict()):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state
