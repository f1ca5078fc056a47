"""``forgetkit evaluate``: score checkpoints you already have, with forgetkit as the judge.

    forgetkit evaluate mine=unlearned.pt other=theirs.pt --reference retrained.pt \\
        --model resnet18 --train train.npz --forget-indices forget.npy --test test.npz

Checkpoints are ``state_dict`` files of a registered architecture (``--model`` with
``--model-option key=value``); data files are ``.pt`` or ``.npz`` holding ``x`` and ``y``.
Everything is loaded and checked before any model is scored; ``--csv`` is written only at the end.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def _named(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH (e.g. mine=unlearned.pt), got {text!r}")
    return name, Path(path)


def _option(text: str) -> tuple[str, object]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. hidden=32), got {text!r}")
    return key, yaml.safe_load(value)


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _exists(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {str(path)!r} does not exist")
    return path


def load_data(path: Path, what: str):
    """(x, y) tensors from a ``.pt`` file (a dict with x and y, or an (x, y) pair) or an ``.npz`` with x and y."""
    _exists(path, what)
    if path.suffix == ".npz":
        with np.load(path) as z:
            missing = [k for k in ("x", "y") if k not in z.files]
            if missing:
                raise ValueError(f"{what} file {str(path)!r} has no array(s) {missing}; it holds {z.files}")
            return torch.as_tensor(z["x"]), torch.as_tensor(z["y"])
    if path.suffix == ".pt":
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, dict) and {"x", "y"} <= set(obj):
            return torch.as_tensor(obj["x"]), torch.as_tensor(obj["y"])
        if isinstance(obj, (tuple, list)) and len(obj) == 2:
            return torch.as_tensor(obj[0]), torch.as_tensor(obj[1])
        raise ValueError(f"{what} file {str(path)!r} must hold a dict with 'x' and 'y' or an (x, y) pair")
    raise ValueError(f"{what} file {str(path)!r}: use .pt or .npz holding x and y")


def load_indices(path: Path) -> np.ndarray:
    """Forget indices from ``.npy``, ``.pt``, ``.json`` (a list) or text (whitespace- or comma-separated)."""
    _exists(path, "forget indices")
    if path.suffix == ".npy":
        return np.load(path)
    if path.suffix == ".pt":
        return torch.as_tensor(torch.load(path, map_location="cpu", weights_only=True)).numpy()
    if path.suffix == ".json":
        return np.asarray(json.loads(path.read_text()))
    text = path.read_text().replace(",", " ").split()
    try:
        return np.asarray([int(v) for v in text], dtype=np.int64)
    except ValueError:
        raise ValueError(f"forget indices file {str(path)!r} must hold integers") from None


def load_checkpoint(path: Path, build, what: str) -> torch.nn.Module:
    """A model of the chosen architecture with the ``state_dict`` in ``path`` (or its ``state_dict`` entry)."""
    _exists(path, what)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{what} {str(path)!r} is not a state_dict (got {type(state).__name__}); save model.state_dict()")
    model = build()
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ValueError(f"{what} {str(path)!r} does not fit the chosen architecture: "
                         f"{first[1].strip() if len(first) > 1 else first[0]}") from None
    return model.eval()


def _cmd_evaluate(args) -> int:
    from .api import evaluate
    from .models import build_model

    if args.train is not None and args.forget_indices is not None:
        if args.forget is not None or args.retain is not None:
            raise ValueError("give either --train with --forget-indices, or --forget with --retain, not both")
        from .data.requests import validate_indices

        x, y = load_data(args.train, "train")
        idx = validate_indices(load_indices(args.forget_indices), len(y))
        keep = np.setdiff1d(np.arange(len(y)), idx)
        forget, retain = (x[idx], y[idx]), (x[keep], y[keep])
    elif args.forget is not None and args.retain is not None:
        forget, retain = load_data(args.forget, "forget"), load_data(args.retain, "retain")
    else:
        raise ValueError("the forget request is missing: give --train with --forget-indices, or --forget with --retain")
    test = load_data(args.test, "test")
    labels = torch.cat([torch.as_tensor(d[1]).reshape(-1) for d in (forget, retain, test)])
    num_classes = args.num_classes or int(labels.max()) + 1
    options = dict(args.model_option or [])

    def build():
        return build_model(args.model, tuple(forget[0].shape[1:]), num_classes, **options)

    names = [n for n, _ in args.checkpoints]
    if len(set(names)) != len(names) or "reference" in names:
        raise ValueError(f"checkpoint names must be distinct and not 'reference', got {names}")
    models = {n: load_checkpoint(p, build, f"checkpoint {n!r}") for n, p in args.checkpoints}
    refs = [load_checkpoint(p, build, "reference") for p in args.reference or []]
    original = load_checkpoint(args.original, build, "original") if args.original else None
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    table = evaluate(models, forget=forget, retain=retain, test=test, reference=refs or None, metrics=metrics,
                     original=original, num_classes=num_classes, forget_classes=args.forget_classes or ())
    print(table)
    if args.csv:
        out = Path(args.csv)
        tmp = out.with_name(out.name + ".tmp")
        table.to_pandas().to_csv(tmp)
        tmp.replace(out)
        print(f"table: {out}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``evaluate`` to the CLI's subparsers; its ``func`` runs the evaluation."""
    e = subparsers.add_parser("evaluate", help="score existing checkpoints (FA/RA/TA/MIA, Avg. Gap, evaluators)",
                              description=__doc__.split("\n\n")[0])
    e.add_argument("checkpoints", nargs="+", type=_named, metavar="NAME=PATH",
                   help="state_dict files of the models to score")
    e.add_argument("--model", required=True, help="architecture name (forgetkit methods lists the models)")
    e.add_argument("--model-option", action="append", type=_option, metavar="KEY=VALUE",
                   help="architecture option, e.g. width=32 (repeatable)")
    e.add_argument("--reference", action="append", type=Path, metavar="PATH",
                   help="state_dict of a model retrained without the forget set (repeatable: several seeds)")
    e.add_argument("--original", type=Path, metavar="PATH", help="state_dict of the model before unlearning")
    e.add_argument("--train", type=Path, help="training data (.pt/.npz with x, y) the forget indices refer to")
    e.add_argument("--forget-indices", type=Path, help="forget indices into --train (.npy, .pt, .json or text)")
    e.add_argument("--forget", type=Path, help="forget set (.pt/.npz), instead of --train/--forget-indices")
    e.add_argument("--retain", type=Path, help="retain set (.pt/.npz), with --forget")
    e.add_argument("--test", type=Path, required=True, help="test data (.pt/.npz with x, y)")
    e.add_argument("--metrics", help="comma-separated metrics and evaluators (default FA,RA,TA,MIA, and "
                                     "AvgGap,deviation with a reference)")
    e.add_argument("--forget-classes", type=_ints, help="forgotten classes, for class evaluators (e.g. 3,5)")
    e.add_argument("--num-classes", type=int, help="number of classes (default: largest label + 1)")
    e.add_argument("--csv", help="also write the table to this CSV file")
    e.set_defaults(func=_cmd_evaluate)
    return e
