"""Command line: ``forgetkit run | tune | report | merge | methods | evaluate | audit``."""
from __future__ import annotations

import argparse
import errno
import sqlite3
import sys
from pathlib import Path


def _cmd_run(args) -> int:
    from . import influence  # noqa: F401  registers the soft-weighting experiment kind
    from .bench.config import apply_overrides, load_raw
    from .bench.experiments import kind_of
    from .bench.store import check_output_paths
    from .plugins import load_plugins

    load_plugins()
    raw = apply_overrides(load_raw(args.config), args.set or [])
    if args.recipe:
        from .bench.tune import apply_recipe

        raw = apply_recipe(raw, args.recipe)
    kind = kind_of(raw)
    out = Path(args.out or Path("runs") / Path(args.config).stem)
    args.store = out / "results.sqlite"
    check_output_paths(out, raw.get("cache_dir"))
    with _locked(out, args.wait):
        result = kind.run(raw, out, smoke=args.smoke, show_progress=_progress_mode(args, raw), executor=args.executor,
                          executor_options={"address": args.address} if args.address else None)
    print(f"report: {result.report}")
    if result.failed:
        print(failure_summary(result.failed, result.cells), file=sys.stderr)
        return 1
    return 0


def _progress_mode(args, raw: dict) -> bool | str:
    """``--quiet``: silent; ``--progress metrics`` (or the config's ``progress: metrics``): the bars plus
    a line per unlearning epoch with forget/retain accuracy; otherwise the bars."""
    from .bench.progress import METRICS

    if args.quiet:
        if args.progress == METRICS:
            raise ValueError("--quiet and --progress metrics contradict each other; give one of them")
        return False
    return METRICS if (args.progress or raw.get("progress")) == METRICS else True


def failure_summary(failed: list[tuple[str, str]], cells: int) -> str:
    """``N of M cells failed: <label>: <first line of its error>; ...`` (one line)."""
    reasons = "; ".join(f"{label}: {error.splitlines()[0] if error else 'no message'}" for label, error in failed)
    return f"forgetkit: {len(failed)} of {cells} cells failed: {reasons}"


def _locked(out: Path, wait: bool):
    from .locks import DirectoryLock, describe

    return DirectoryLock(out, wait=wait, on_wait=lambda holder: print(
        f"forgetkit: waiting for the run holding {out} ({describe(holder)})", file=sys.stderr, flush=True))


def _cmd_tune(args) -> int:
    from .bench.config import apply_overrides, load_raw
    from .bench.store import check_output_paths
    from .bench.tune import tune
    from .plugins import load_plugins

    load_plugins()
    if args.trials is not None and args.trials < 1:
        raise ValueError(f"--trials must be a positive number of trials, got {args.trials}")
    raw = apply_overrides(load_raw(args.config), args.set or [])
    out = Path(args.out or Path("runs") / f"tune-{Path(args.config).stem}")
    args.store = out / "tune.sqlite"
    check_output_paths(out, raw.get("cache_dir") or out / ".forgetkit-cache")
    with _locked(out, args.wait):
        report = tune(raw, out, n_trials=args.trials, smoke=args.smoke, show_progress=not args.quiet,
                      only=args.methods.split(",") if args.methods else None)
    print(f"report: {report}")
    return 0


def _cmd_report(args) -> int:
    from . import influence  # noqa: F401  registers the soft-weighting experiment kind
    from .bench.experiments import kind_of_run

    if args.leaderboard:
        from .bench.leaderboard import write_leaderboard

        if args.dir:
            raise ValueError(f"report: give either a run directory ({args.dir}) or --leaderboard RUN_DIR ..., not both")
        print(f"leaderboard: {write_leaderboard(args.leaderboard, Path(args.out or LEADERBOARD_OUT), reading=args.reading)}")
        return 0
    if not args.dir:
        raise ValueError("report: give a run directory, or --leaderboard RUN_DIR [RUN_DIR ...] for docs/leaderboard.md")
    if args.reading or args.out:
        raise ValueError("report: --out and --reading belong to --leaderboard; a run's report is always <dir>/report.md")
    print(f"report: {kind_of_run(Path(args.dir)).rebuild_report(Path(args.dir))}")
    return 0


LEADERBOARD_OUT = "docs/leaderboard.md"


def _cmd_merge(args) -> int:
    from . import influence  # noqa: F401  registers the soft-weighting experiment kind
    from .bench.experiments import kind_of_run
    from .bench.merge import merge_runs

    copied, planned = merge_runs(args.out, args.sources)
    print(f"merged {copied} rows into {args.out} ({planned} cells planned)")
    print(f"report: {kind_of_run(Path(args.out)).rebuild_report(Path(args.out))}")
    return 0


def _cmd_methods(args) -> int:
    from .plugins import load_plugins

    load_plugins()
    from .metrics.evaluators import EVALUATORS
    from .data import DATASETS
    from .methods import METHODS
    from .unlearn.weightings import WEIGHTINGS

    print("Methods (retrain is the reference every run trains):")
    for name, cls in METHODS.items():
        needs = ",".join(sorted(cls.needs))
        tags = [t for t, on in (("weightable", cls.supports_weighting), ("images only", cls.image_only),
                                ("class requests", cls.class_only)) if on]
        print(f"  {name:<14} {cls.description}  [needs: {needs}{'; ' + ', '.join(tags) if tags else ''}]")
    print("Weightings (for weightable methods):")
    for name, cls in WEIGHTINGS.items():
        print(f"  {name:<14} {cls.description}")
    print("Evaluators (metrics.extra):")
    for name, fn in EVALUATORS.items():
        print(f"  {name:<14} {(fn.__doc__ or '').strip().splitlines()[0] if fn.__doc__ else ''}")
    print("Datasets:")
    for name, fn in DATASETS.items():
        print(f"  {name:<14} {(fn.__doc__ or '').strip().splitlines()[0] if fn.__doc__ else ''}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="forgetkit", description="Machine unlearning benchmark and toolkit.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run an experiment from a YAML config")
    r.add_argument("config")
    r.add_argument("--out", help="output directory (default runs/<config name>)")
    r.add_argument("--smoke", action="store_true", help="shrink data and epochs (about a minute on CPU)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field, e.g. train.epochs=3")
    r.add_argument("--executor", default="local", choices=["local", "ray"], help="where cells run")
    r.add_argument("--address", help="Ray cluster address to join (with --executor ray)")
    r.add_argument("--recipe", help="a tuned recipe YAML (from `forgetkit tune`) to apply to its method")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--progress", choices=["bars", "metrics"],
                   help="bars (default), or metrics: also a line per unlearning epoch with forget/retain "
                        "accuracy (overrides the config's progress:)")
    r.add_argument("--wait", action="store_true", help="if another run holds --out, wait for it instead of refusing")
    r.set_defaults(func=_cmd_run)
    t = sub.add_parser("tune", help="search a method's hyper-parameters on validation requests (config `tune:`)")
    t.add_argument("config")
    t.add_argument("--out", help="output directory (default runs/tune-<config name>)")
    t.add_argument("--trials", type=int, help="total trials of the study (default: tune.trials)")
    t.add_argument("--methods", help="comma-separated labels: tune only these of a `methods:` section "
                                     "(to split the studies between processes)")
    t.add_argument("--smoke", action="store_true", help="shrink data and epochs")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.add_argument("--wait", action="store_true", help="if another process holds --out, wait for it instead of refusing")
    t.set_defaults(func=_cmd_tune)
    rep = sub.add_parser("report", help="rebuild report.md and plots from a run directory's store, or the leaderboard")
    rep.add_argument("dir", nargs="?")
    rep.add_argument("--leaderboard", nargs="+", metavar="RUN_DIR",
                     help="build the leaderboard (one run directory per data/model setting) instead")
    rep.add_argument("--out", help=f"leaderboard Markdown (default {LEADERBOARD_OUT}); "
                     "its Pareto plot goes beside it")
    rep.add_argument("--reading", help="Markdown included verbatim as the leaderboard's closing section "
                     "(default: a factual summary computed from the numbers)")
    rep.set_defaults(func=_cmd_report)
    mg = sub.add_parser("merge", help="merge runs of one config split by seed (--set seeds=[k]) into one run directory")
    mg.add_argument("out", help="the merged run directory (created, or an existing run of the same config)")
    mg.add_argument("sources", nargs="+", metavar="RUN_DIR", help="run directories to merge into OUT")
    mg.set_defaults(func=_cmd_merge)
    m = sub.add_parser("methods", help="list methods, weightings, evaluators and datasets")
    m.set_defaults(func=_cmd_methods)
    from . import audit_cli, evaluate_cli

    evaluate_cli.add_parser(sub)
    audit_cli.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run a command; every expected failure is one line ``forgetkit: error: ...`` (exit 2), a
    failed cell exits 1, Ctrl-C exits 130 — never a traceback for these."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        store = getattr(args, "store", None)
        kept = f"finished rows are kept in {store}" if store else "nothing was left half-written"
        print(f"forgetkit: interrupted: {kept}; re-run the same command to resume", file=sys.stderr)
        return 130
    except (ValueError, KeyError, OSError, sqlite3.DatabaseError) as e:
        print(f"forgetkit: error: {error_message(e, getattr(args, 'store', None))}", file=sys.stderr)
        return 2


def error_message(e: BaseException, store: Path | None = None) -> str:
    """One line for an expected failure: the message a user can act on."""
    if isinstance(e, KeyError):
        return str(e.args[0]) if e.args else "missing key"
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        where = e.filename or store or "the output"
        kept = "finished rows are kept" if store is None or Path(store).exists() else "nothing was lost"
        return f"disk full while writing {where}; {kept}; free space and re-run"
    if isinstance(e, sqlite3.DatabaseError):
        return (f"the results store {store} cannot be read ({e}); it was left untouched: give another --out "
                "or move the file away, and re-run")
    if isinstance(e, OSError) and not isinstance(e, FileNotFoundError) and e.strerror:
        where = f" {e.filename}" if e.filename else ""
        return f"cannot write{where}: {e.strerror}; check the path and its permissions"
    return str(e)


if __name__ == "__main__":
    sys.exit(main())
