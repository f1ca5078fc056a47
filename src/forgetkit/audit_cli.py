"""``forgetkit audit``: the retrain-free deletion audit on a user's own checkpoint and data files, or
on every row of a finished run (``forgetkit audit RUN_DIR``).

A run keeps no unlearned checkpoints; with ``metrics.audit: true`` each row stores the per-sample
scores the audit needs (``audit_scores``: the row model's log-odds of the true class, right/wrong
and label, on the forget and held-out samples). ``forgetkit audit RUN_DIR`` re-audits every row from
them, with the Original row of the same request and seed as "before", without running any model.

Data files are ``.pt`` (``torch.save`` of ``{"x": ..., "y": ...}`` or an ``(x, y)`` pair) or ``.npz``
(arrays ``x`` and ``y``); either may carry ``indices`` (positions in the training pool), which are
then checked for overlap between forget and held-out. Checkpoints are ``state_dict`` files
(optionally wrapped as ``{"state_dict": ...}``) of a ``forgetkit.models`` architecture, loaded
with ``weights_only=True``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import yaml

from .data.base import Split


def load_data(path: str, name: str) -> tuple[Split, np.ndarray | None]:
    """(split, indices or None) from a .pt or .npz file; a bad file is a ValueError naming it."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{name} data file {p} does not exist")
    if p.suffix not in (".pt", ".npz"):
        raise ValueError(f"{name} data file {p} must end in .pt or .npz")
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                raw = {k: z[k] for k in z.files}
        else:
            raw = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or foreign file: say which and why
        raise ValueError(f"{name} data file {p} could not be read: {e}") from None
    if isinstance(raw, (tuple, list)) and len(raw) == 2:
        raw = {"x": raw[0], "y": raw[1]}
    if not isinstance(raw, dict) or "x" not in raw or "y" not in raw:
        raise ValueError(f"{name} data file {p} must hold x and y (a dict/npz with keys 'x' and 'y', or an (x, y) pair)")
    x, y = (torch.as_tensor(np.asarray(raw[k])) if not torch.is_tensor(raw[k]) else raw[k] for k in ("x", "y"))
    if y.dtype.is_floating_point:
        raise ValueError(f"{name} data file {p}: y must hold integer class labels, got {y.dtype}")
    try:
        split = Split(x, y.long())
    except ValueError as e:
        raise ValueError(f"{name} data file {p}: {e}") from None
    idx = raw.get("indices")
    return split, None if idx is None else np.asarray(idx).ravel()


def _options(pairs: list[str] | None) -> dict:
    out = {}
    for item in pairs or []:
        if "=" not in item:
            raise ValueError(f"--model-option must be KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def load_checkpoint(path: str, model_name: str, in_shape, num_classes: int, options: dict) -> torch.nn.Module:
    """A ``forgetkit.models`` architecture with the checkpoint's weights; any failure names the file."""
    from .models import MODELS, build_model

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"checkpoint {p} does not exist")
    if model_name not in MODELS:
        raise ValueError(f"unknown model {model_name!r}; known: {', '.join(MODELS.names())}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds (unpickling, zip, weights-only refusals)
        reason = (str(e).splitlines() or [""])[0]
        raise ValueError(f"checkpoint {p} does not load ({type(e).__name__}: {reason}); it must be a file "
                         "written by torch.save(model.state_dict(), path)") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {p} does not load: expected a state_dict, got {type(state).__name__}")
    model = build_model(model_name, in_shape, num_classes, **options)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"checkpoint {p} does not load into {model_name} with {num_classes} classes, input "
                         f"{tuple(in_shape)}, options {options}: {str(e).splitlines()[0]} "
                         "(check --model, --model-option and --num-classes)") from None
    return model.eval()


def audit_run(run_dir, *, out=None, store: bool = True, **options) -> list[dict]:
    """Re-audit every stored row of a run from its audit data (:func:`forgetkit.audit.runs.reaudit_rows`;
    ``options`` as there); write ``<out>/<row>/audit.*`` (default ``RUN_DIR/audits``) and, with
    ``store``, one audit record per row in the run's store while holding the run's lock (the rows
    themselves are never rewritten).

    Every audit is computed before anything is written. Returns one dict per row: key, method,
    request, seed, result and paths, or skipped: the reason.
    """
    from contextlib import nullcontext

    from .audit.report import write_files
    from .audit.runs import audit_record, reaudit_rows, render_row
    from .bench.grid import ORIGINAL
    from .bench.store import ResultStore
    from .locks import DirectoryBusy, DirectoryLock

    run = Path(run_dir)
    db = run / "results.sqlite"
    if not run.is_dir() or not db.is_file():
        raise ValueError(f"{run} is not a run directory (no results.sqlite in it); give the --out of a forgetkit run")
    out_dir = Path(out) if out else run / "audits"
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file, not a directory")
    with ResultStore(db) as st:
        rows = st.rows(status="ok")
        arts = {r["key"]: st.artifacts(r["key"]) for r in rows}
    if not rows:
        raise ValueError(f"{db} holds no finished rows to audit")
    try:
        done = reaudit_rows(rows, arts, original_label=ORIGINAL, **options)
    except ValueError as e:
        raise ValueError(str(e).replace("no row has", f"no row of {run} has")) from None
    originals = {(r["request"], r["seed"]): r["key"] for r in rows if r["method"] == ORIGINAL}
    by_key = {r["key"]: r for r in rows}
    audited = [d for d in done if "result" in d]
    pages = {}
    for d in audited:
        r = by_key[d["key"]]
        orig = originals.get((r["request"], r["seed"]))
        pages[d["key"]] = render_row(r, arts[d["key"]], None if orig is None else arts[orig], result=d["result"])
    # the run's lock first: a run still writing its store is refused before any report is written
    lock = DirectoryLock(run) if store else nullcontext()
    try:
        lock.__enter__()
    except DirectoryBusy as e:
        raise ValueError(f"{str(e).split(';')[0]}; audit it once the run is finished, or pass --no-store to write "
                         "the reports only") from None
    try:
        for d in audited:
            d["paths"] = write_files(out_dir / d["page"], pages[d["key"]])
        if store:
            with ResultStore(db) as st:
                for d in audited:
                    st.put_audit(d["key"], audit_record(d["result"]))
    finally:
        lock.__exit__(None, None, None)
    return done


def run_audit_dir(args) -> int:
    """``forgetkit audit RUN_DIR``: re-audit every row of a run and print one line per row."""
    for name in ("checkpoint", "model", "forget", "heldout", "original", "retain", "test"):
        if getattr(args, name):
            raise ValueError(f"--{name} is for auditing a checkpoint; with RUN_DIR the rows' stored scores are used")
    done = audit_run(args.run_dir, out=args.out, store=not args.no_store, alpha=args.alpha, margin=args.margin,
                     target_margin=args.target_margin, target_margin_below=args.target_margin_below,
                     retrain_slope=args.retrain_slope, min_samples=args.min_samples, n_boot=args.n_boot)
    for d in done:
        head = f"{d['method']} / {d['request']} / seed {d['seed']}"
        if "skipped" in d:
            print(f"{head}: skipped, {d['skipped']}")
        else:
            res = d["result"]
            o = (res.target or res.after).overall  # the AUC behind the verdict
            print(f"{head}: {res.verdict} ({'target ' if res.target else ''}AUC {o.auc:.3f} "
                  f"[{o.ci_low:.3f}, {o.ci_high:.3f}])")
    audited = [d for d in done if "paths" in d]
    print(f"{len(audited)} rows audited; reports under {Path(audited[0]['paths']['audit.md']).parent.parent}"
          + ("" if args.no_store else "; audit records stored in the run's results.sqlite"))
    return 0


def run_audit(args) -> int:
    """The ``forgetkit audit`` command: load, audit, write the report, print the verdict."""
    from .audit import audit, write_audit_report

    if args.run_dir:
        return run_audit_dir(args)
    missing = [f"--{n}" for n in ("checkpoint", "model", "forget", "heldout") if not getattr(args, n)]
    if missing:
        raise ValueError(f"give RUN_DIR (a run's --out) or a checkpoint to audit: {', '.join(missing)} missing")

    forget, fi = load_data(args.forget, "forget")
    heldout, hi = load_data(args.heldout, "heldout")
    extra = {k: load_data(getattr(args, k), k)[0] for k in ("retain", "test") if getattr(args, k)}
    num_classes = args.num_classes or int(max(int(s.y.max()) for s in [forget, heldout, *extra.values()] if len(s))) + 1
    options = _options(args.model_option)
    in_shape = tuple(forget.x.shape[1:])
    model = load_checkpoint(args.checkpoint, args.model, in_shape, num_classes, options)
    original = load_checkpoint(args.original, args.model, in_shape, num_classes, options) if args.original else None
    try:
        removed = [int(c) for c in args.forget_classes.split(",")] if args.forget_classes else []
    except ValueError:
        raise ValueError(f"--forget-classes must be comma-separated class numbers, got {args.forget_classes!r}") from None
    both = fi is not None and hi is not None
    result = audit(model, forget, heldout, original=original, num_classes=num_classes, device=args.device,
                   forget_indices=fi if both else None, heldout_indices=hi if both else None, forget_classes=removed,
                   check_duplicates=not args.allow_duplicates, alpha=args.alpha, margin=args.margin,
                   min_samples=args.min_samples, n_boot=args.n_boot, seed=args.seed, **extra,
                   **{k: v for k, v in (("target_margin", args.target_margin),
                                        ("target_margin_below", args.target_margin_below),
                                        ("retrain_slope", args.retrain_slope)) if v is not None})
    out = Path(args.out or f"audit-{Path(args.checkpoint).stem}")
    names = args.class_names.split(",") if args.class_names else None
    if names is not None and len(names) != num_classes:
        raise ValueError(f"--class-names has {len(names)} names for {num_classes} classes")
    paths = write_audit_report(result, out, method=args.method, class_names=names,
                               unlearn_seconds=args.unlearn_seconds)
    head = result.target or result.after  # the comparison behind the verdict
    o = head.overall
    print(f"verdict: {result.verdict} ({'target ' if result.target else ''}AUC {o.auc:.3f}, 95% interval "
          f"[{o.ci_low:.3f}, {o.ci_high:.3f}], {o.n_forget} forget vs {o.n_heldout} held-out samples)")
    for e in head.per_class:
        print(f"  class {e.cls}: {e.verdict} (AUC {e.auc:.3f}, n = {e.n_forget} / {e.n_heldout})")
    print(f"report: {paths['audit.md']}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``audit`` to the ``forgetkit`` command's subparsers."""
    a = subparsers.add_parser("audit", help="retrain-free deletion audit: every row of a run (RUN_DIR), or a "
                              "checkpoint on forget vs held-out data")
    a.add_argument("run_dir", nargs="?", metavar="RUN_DIR",
                   help="a run's --out: re-audit every row from its stored scores (needs metrics.audit: true)")
    a.add_argument("--no-store", action="store_true", help="with RUN_DIR: write the reports only, leave the store "
                   "untouched (works while the run is still going)")
    a.add_argument("--checkpoint", help="state_dict of the model after unlearning (.pt)")
    a.add_argument("--model", help="forgetkit architecture name (see forgetkit.models), e.g. mlp")
    a.add_argument("--model-option", action="append", metavar="KEY=VALUE", help="architecture option, e.g. hidden=256")
    a.add_argument("--forget", help="forget samples (.pt or .npz with x, y[, indices])")
    a.add_argument("--heldout", help="held-out samples never trained on (.pt or .npz)")
    a.add_argument("--original", help="state_dict of the model before unlearning: adds the 'before' column")
    a.add_argument("--retain", help="retain samples, for accuracy before/after")
    a.add_argument("--test", help="test samples, for accuracy before/after")
    a.add_argument("--num-classes", type=int, help="model outputs (default: largest label + 1)")
    a.add_argument("--forget-classes", help="comma-separated classes removed whole (all their training samples are in --forget)")
    a.add_argument("--class-names", help="comma-separated class names for the report")
    a.add_argument("--method", help="unlearning method used, for the report")
    a.add_argument("--unlearn-seconds", type=float, help="time the unlearning took, for the report")
    a.add_argument("--out", help="report directory (default audit-<checkpoint name>; with RUN_DIR: RUN_DIR/audits)")
    a.add_argument("--alpha", type=float, default=0.05, help="family-wise false-alarm rate over all classes")
    a.add_argument("--margin", type=float, default=0.02, help="AUC distance from 0.5 that matters (same-model comparison)")
    a.add_argument("--target-margin", type=float, help="target comparison: AUC above 0.5 flagged under-forgotten (default 0.02)")
    a.add_argument("--target-margin-below", type=float,
                   help="target comparison: AUC below 0.5 flagged over-forgotten (default 0.10)")
    a.add_argument("--retrain-slope", type=float,
                   help="target comparison: the unseen reference of each class kept in part is lowered by "
                        "K·log(retained share of the class) in log-odds, where a retrained model would put it "
                        "(needs --retain or a run's counts; default in docs/audit.md; 0 turns it off)")
    a.add_argument("--min-samples", type=int, default=20, help="forget and held-out samples a class needs for a verdict")
    a.add_argument("--n-boot", type=int, default=300, help="bootstrap resamples per class")
    a.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the cross-fitting")
    a.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    a.add_argument("--allow-duplicates", action="store_true",
                   help="accept held-out samples byte-identical to forget samples (only if truly distinct)")
    a.set_defaults(func=run_audit)
    return a
