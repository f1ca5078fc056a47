"""``forgetkit tune CONFIG``: search methods' hyper-parameters on validation requests (the config's ``tune:``)."""
from __future__ import annotations

from pathlib import Path

from .run import locked


def tune(args) -> int:
    from ..bench.config import apply_overrides, load_raw
    from ..bench.store import check_output_paths
    from ..bench.tune import tune as run_tune
    from ..plugins import load_plugins

    load_plugins()
    if args.trials is not None and args.trials < 1:
        raise ValueError(f"--trials must be a positive number of trials, got {args.trials}")
    raw = apply_overrides(load_raw(args.config), args.set or [])
    out = Path(args.out or Path("runs") / f"tune-{Path(args.config).stem}")
    args.store, args.kept = out / "tune.sqlite", "trials"
    check_output_paths(out, raw.get("cache_dir") or out / ".forgetkit-cache")
    with locked(out, args.wait):
        report = run_tune(raw, out, n_trials=args.trials, smoke=args.smoke, show_progress=not args.quiet,
                          only=args.methods.split(",") if args.methods else None)
    print(f"report: {report}")
    return 0


def add_parser(sub) -> None:
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
    t.set_defaults(func=tune)
