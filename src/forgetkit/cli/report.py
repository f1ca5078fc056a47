"""``forgetkit report DIR`` (a run's report.md and plots, from its store) or ``--leaderboard RUN_DIR ...``."""
from __future__ import annotations

from pathlib import Path

LEADERBOARD_OUT = "docs/leaderboard.md"


def report(args) -> int:
    from .. import influence  # noqa: F401  registers the soft-weighting experiment kind
    from ..bench.experiments import kind_of_run

    if args.leaderboard:
        from ..bench.leaderboard import write_leaderboard

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


def add_parser(sub) -> None:
    rep = sub.add_parser("report", help="rebuild report.md and plots from a run directory's store, or the leaderboard")
    rep.add_argument("dir", nargs="?")
    rep.add_argument("--leaderboard", nargs="+", metavar="RUN_DIR",
                     help="build the leaderboard (one run directory per data/model setting) instead")
    rep.add_argument("--out", help=f"leaderboard Markdown (default {LEADERBOARD_OUT}); "
                     "its Pareto plot goes beside it")
    rep.add_argument("--reading", help="Markdown included verbatim as the leaderboard's closing section "
                     "(default: a factual summary computed from the numbers)")
    rep.set_defaults(func=report)
