"""``forgetkit audit``: the retrain-free deletion audit of a user's own checkpoint and data files, or
of every row of a finished run (``forgetkit audit RUN_DIR``).

A run keeps no unlearned checkpoints; with ``metrics.audit: true`` each row stores the per-sample
scores the audit needs (the row model's log-odds of the true class, right/wrong and label, on the
forget and held-out samples). ``forgetkit audit RUN_DIR`` re-audits every row from them, with the
Original row of the same request and seed as "before", without running any model.

A checkpoint is audited with the architecture ``--model`` names (a registered one, or
``package.module:function``) and files read by :mod:`.loading`; data files may carry ``indices``
(positions in the training pool), which are then checked for overlap between forget and held-out.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .loading import add_model_arguments, load_checkpoint, load_data, model_spec, normalize_option


def audit_run(run_dir, *, out=None, store: bool = True, **options) -> list[dict]:
    """Re-audit every stored row of a run from its audit data (:func:`forgetkit.audit.runs.reaudit_rows`;
    ``options`` as there); write ``<out>/<row>/audit.*`` (default ``RUN_DIR/audits``) and, with
    ``store``, one audit record per row in the run's store while holding the run's lock (the rows
    themselves are never rewritten).

    Every audit is computed before anything is written. Returns one dict per row: key, method,
    request, seed, result and paths, or skipped: the reason.
    """
    from contextlib import nullcontext

    from ..audit.report import write_files
    from ..audit.runs import audit_record, reaudit_rows, render_row
    from ..bench.grid import ORIGINAL
    from ..bench.store import ResultStore
    from ..locks import DirectoryBusy, DirectoryLock

    run = Path(run_dir)
    db = run / "results.sqlite"
    if not run.is_dir() or not db.is_file():
        raise ValueError(f"{run} is not a run directory (no results.sqlite in it); give the --out of a forgetkit run")
    out_dir = Path(out) if out else run / "audits"
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file, not a directory")
    with ResultStore(db, create=False) as st:
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
    from ..audit.report import decision_summary

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
            print(f"{head}: {decision_summary(d['result'])}")
    audited = [d for d in done if "paths" in d]
    print(f"{len(audited)} rows audited; reports under {Path(audited[0]['paths']['audit.md']).parent.parent}"
          + ("" if args.no_store else "; audit records stored in the run's results.sqlite"))
    return 0


def run_audit(args) -> int:
    """The ``forgetkit audit`` command: load, audit, write the report, print the verdict."""
    from ..audit import audit, write_audit_report
    from ..audit.report import decision_summary
    from ..inputs.models import normalised
    from ..plugins import load_plugins

    if args.run_dir:
        return run_audit_dir(args)
    missing = [f"--{n}" for n in ("checkpoint", "model", "forget", "heldout") if not getattr(args, n)]
    if missing:
        raise ValueError(f"give RUN_DIR (a run's --out) or a checkpoint to audit: {', '.join(missing)} missing")

    load_plugins()
    forget_file, heldout_file = load_data(args.forget, "forget"), load_data(args.heldout, "heldout")
    forget, fi = forget_file.split, forget_file.indices
    heldout, hi = heldout_file.split, heldout_file.indices
    extra = {k: load_data(getattr(args, k), k).split for k in ("retain", "test") if getattr(args, k)}
    num_classes = args.num_classes or int(max(int(s.y.max()) for s in [forget, heldout, *extra.values()] if len(s))) + 1
    model_of = model_spec(args.model, args.model_option)
    in_shape = tuple(forget.x.shape[1:])
    transform = normalize_option(args.normalize, in_shape) if args.normalize else None
    model = normalised(load_checkpoint(args.checkpoint, model_of, in_shape, num_classes), transform)
    original = normalised(load_checkpoint(args.original, model_of, in_shape, num_classes, "original checkpoint"),
                          transform) if args.original else None
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
    d = result.decision
    print(f"verdict: {decision_summary(result)} ({d.n_forget} forget vs {d.n_heldout} held-out samples)")
    for e in result.class_decisions:
        print(f"  class {e.cls}: {e.verdict} (decided by {e.decided_by or '–'}; n = {e.n_forget} / {e.n_heldout})")
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
    add_model_arguments(a, required=False, whose="the model")
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
