"""``forgetkit run CONFIG``: run an experiment (a grid of methods × requests × seeds) into a resumable store."""
from __future__ import annotations

import sys
from pathlib import Path


def run(args) -> int:
    from .. import influence  # noqa: F401  registers the soft-weighting experiment kind
    from ..bench.config import apply_overrides, load_raw
    from ..bench.experiments import kind_of
    from ..bench.store import check_output_paths
    from ..plugins import load_plugins

    load_plugins()
    raw = apply_overrides(load_raw(args.config), args.set or [])
    if args.recipe:
        from ..bench.tune import apply_recipe

        raw = apply_recipe(raw, args.recipe)
    kind = kind_of(raw)
    out = Path(args.out or Path("runs") / Path(args.config).stem)
    args.store = out / "results.sqlite"
    check_output_paths(out, raw.get("cache_dir"))
    with locked(out, args.wait):
        result = kind.run(raw, out, smoke=args.smoke, show_progress=progress_mode(args, raw), executor=args.executor,
                          executor_options={"address": args.address} if args.address else None)
    print(f"report: {result.report}")
    if result.failed:
        print(failure_summary(result.failed, result.cells), file=sys.stderr)
        return 1
    return 0


def progress_mode(args, raw: dict) -> bool | str:
    """``--quiet``: silent; ``--progress metrics`` (or the config's ``progress: metrics``): the bars plus
    a line per unlearning epoch with forget/retain accuracy; otherwise the bars."""
    from ..bench.progress import METRICS

    if args.quiet:
        if args.progress == METRICS:
            raise ValueError("--quiet and --progress metrics contradict each other; give one of them")
        return False
    return METRICS if (args.progress or raw.get("progress")) == METRICS else True


def failure_summary(failed: list[tuple[str, str]], cells: int) -> str:
    """``N of M cells failed: <label>: <first line of its error>; ...`` (one line)."""
    reasons = "; ".join(f"{label}: {error.splitlines()[0] if error else 'no message'}" for label, error in failed)
    return f"forgetkit: {len(failed)} of {cells} cells failed: {reasons}"


def locked(out: Path, wait: bool):
    """Exclusive use of ``out`` for this process (``run`` and ``tune`` share it)."""
    from ..locks import DirectoryLock, describe

    return DirectoryLock(out, wait=wait, on_wait=lambda holder: print(
        f"forgetkit: waiting for the run holding {out} ({describe(holder)})", file=sys.stderr, flush=True))


def add_parser(sub) -> None:
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
    r.set_defaults(func=run)
