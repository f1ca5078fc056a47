"""Experiment kinds: the one driver interface ``forgetkit run`` and ``forgetkit report`` use.

A kind turns a raw config into a run (store, rows, report) and rebuilds its report from the
store. ``forget`` (image and tabular unlearning grids) lives here; other packages register their
own (``soft-weighting`` in :mod:`forgetkit.influence`), so the CLI never branches on a kind's name.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..registry import Registry
from .runner import RunSummary

EXPERIMENT_KINDS: Registry = Registry("experiment kind")


@dataclass(frozen=True)
class ExperimentKind:
    """How one kind of experiment is run, shrunk for ``--smoke`` and reported."""

    run: Callable[..., RunSummary]
    """``run(raw, out, *, smoke, show_progress, executor, executor_options) -> RunSummary``;
    ``smoke`` shrinks the experiment so that it runs in a minute or two (a check, not a result)"""
    rebuild_report: Callable[[Path], Path]
    """``rebuild_report(out) -> report path``, from the store and the saved config only"""


def register_kind(name: str, kind: ExperimentKind) -> None:
    EXPERIMENT_KINDS.register(name)(kind)


def kind_of(raw: dict) -> ExperimentKind:
    """The kind a config declares (``experiment_type``, default ``forget``)."""
    return EXPERIMENT_KINDS.get(raw.get("experiment_type", "forget"))


def kind_of_run(out_dir: Path) -> ExperimentKind:
    """The kind of the run stored in ``out_dir`` (from its ``experiment.json``)."""
    marker = Path(out_dir) / "experiment.json"
    if not marker.exists():
        raise FileNotFoundError(f"{out_dir} holds no run (no experiment.json); run an experiment with --out {out_dir}")
    from .store import read_experiment

    return EXPERIMENT_KINDS.get(read_experiment(out_dir, ()).get("experiment_type") or "forget")


def _run_forget(raw: dict, out: Path, *, smoke: bool = False, show_progress: bool = True, executor: str = "local",
                executor_options: dict | None = None) -> RunSummary:
    from .config import parse_config, smoke as shrink
    from .papers import save_paper, split_paper
    from .report import write_report
    from .runner import run_experiment
    from .tune import with_tuned_rows

    paper, raw = split_paper(raw)  # a paper preset's published numbers: for the report, not the run
    raw = with_tuned_rows(raw)
    summary = run_experiment(parse_config(shrink(raw) if smoke else raw), out, show_progress=show_progress,
                             executor=executor, executor_options=executor_options, report=False)
    save_paper(out, paper)
    return replace(summary, report=write_report(out))


def _forget_report(out: Path) -> Path:
    from .report import write_report

    return write_report(out)


register_kind("forget", ExperimentKind(_run_forget, _forget_report))
