"""``forgetkit evaluate``: score checkpoints you already have, with forgetkit as the judge.

    forgetkit evaluate mine=unlearned.pt other=theirs.pt --reference retrained.pt \\
        --model resnet18 --train train.npz --forget-indices forget.npy --test test.npz

Checkpoints are ``state_dict`` files of the architecture ``--model`` names: a registered one, or
your own factory as ``package.module:function`` (``--model-option key=value`` for either); data
files are ``.pt`` or ``.npz`` holding ``x`` and ``y`` (:mod:`.loading`).
Everything is loaded and checked before any model is scored; ``--csv`` is written only at the end.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from .loading import add_model_arguments, load_checkpoint, load_data, load_indices, model_spec, normalize_option


def _named(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH (e.g. mine=unlearned.pt), got {text!r}")
    return name, Path(path)


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def evaluate(args) -> int:
    from ..api import evaluate as score
    from ..plugins import load_plugins

    load_plugins()
    csv = _csv_path(args.csv) if args.csv else None
    if args.train is not None and args.forget_indices is not None:
        if args.forget is not None or args.retain is not None:
            raise ValueError("give either --train with --forget-indices, or --forget with --retain, not both")
        from ..data.requests import validate_indices

        train = load_data(args.train, "train").split
        idx = validate_indices(load_indices(args.forget_indices), len(train))
        keep = np.setdiff1d(np.arange(len(train)), idx)
        forget, retain = train.subset(idx), train.subset(keep)
    elif args.forget is not None and args.retain is not None:
        forget, retain = load_data(args.forget, "forget").split, load_data(args.retain, "retain").split
    else:
        raise ValueError("the forget request is missing: give --train with --forget-indices, or --forget with --retain")
    test = load_data(args.test, "test").split
    num_classes = args.num_classes or int(torch.cat([forget.y, retain.y, test.y]).max()) + 1
    model = model_spec(args.model, args.model_option)
    in_shape = tuple(forget.x.shape[1:])
    normalize = normalize_option(args.normalize, in_shape) if args.normalize else None

    def load(path, what):
        return load_checkpoint(path, model, in_shape, num_classes, what)

    names = [n for n, _ in args.checkpoints]
    if len(set(names)) != len(names) or "reference" in names:
        raise ValueError(f"checkpoint names must be distinct and not 'reference', got {names}")
    models = {n: load(p, f"checkpoint {n!r}") for n, p in args.checkpoints}
    refs = [load(p, "reference") for p in args.reference or []]
    original = load(args.original, "original") if args.original else None
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    table = score(models, forget=(forget.x, forget.y), retain=(retain.x, retain.y), test=(test.x, test.y),
                  reference=refs or None, metrics=metrics, original=original, num_classes=num_classes,
                  forget_classes=args.forget_classes or (),
                  normalize=normalize)
    print(table)
    if csv is not None:
        from ..files import atomic_write

        atomic_write(csv, table.to_pandas().to_csv())
        print(f"table: {csv}")
    return 0


def _csv_path(text: str) -> Path:
    """``--csv``, checked before any model is scored: a file in an existing directory."""
    out = Path(text)
    if out.is_dir():
        raise ValueError(f"--csv {out} is a directory; give the CSV file to write, e.g. {out / 'table.csv'}")
    if not out.parent.is_dir():
        raise ValueError(f"--csv {out}: the directory {out.parent} does not exist")
    return out


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``evaluate`` to the CLI's subparsers; its ``func`` runs the evaluation."""
    e = subparsers.add_parser("evaluate", help="score existing checkpoints (FA/RA/TA/MIA, Avg. Gap, evaluators)",
                              description=__doc__.split("\n\n")[0])
    e.add_argument("checkpoints", nargs="+", type=_named, metavar="NAME=PATH",
                   help="state_dict files of the models to score")
    add_model_arguments(e, required=True, whose="the models")
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
    e.set_defaults(func=evaluate)
    return e
