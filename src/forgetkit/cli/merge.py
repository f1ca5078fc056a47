"""``forgetkit merge OUT RUN_DIR ...``: one run directory from runs of one config split by seed."""
from __future__ import annotations

from pathlib import Path


def merge(args) -> int:
    from .. import influence  # noqa: F401  registers the soft-weighting experiment kind
    from ..bench.experiments import kind_of_run
    from ..bench.merge import merge_runs

    copied, planned = merge_runs(args.out, args.sources)
    print(f"merged {copied} rows into {args.out} ({planned} cells planned)")
    print(f"report: {kind_of_run(Path(args.out)).rebuild_report(Path(args.out))}")
    return 0


def add_parser(sub) -> None:
    mg = sub.add_parser("merge", help="merge runs of one config split by seed (--set seeds=[k]) into one run directory")
    mg.add_argument("out", help="the merged run directory (created, or an existing run of the same config)")
    mg.add_argument("sources", nargs="+", metavar="RUN_DIR", help="run directories to merge into OUT")
    mg.set_defaults(func=merge)
