"""Run an experiment: check everything that can be checked, plan the grid, run the cells that are
not in the store yet on an executor, write each row as it arrives, then the report.

The pieces: :mod:`.grid` (cells and labels), :mod:`.workspace` (data, requests, reference models),
:mod:`.cell` (one row), :mod:`.executors` (local or Ray), :mod:`.derived` (gaps from stored rows),
:mod:`.report` (store → Markdown).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..inputs import MIN_HELDOUT_PER_CLASS
from ..methods import build_method
from ..metrics.core import without_classes
from ..metrics.evaluators import EVALUATORS
from ..unlearn.weightings import build_weighting
from .cell import evaluator_options, method_params
from .config import ExperimentConfig
from ..files import atomic_write
from .executors import build_executor, connected, require_executor
from .grid import Cell, plan, weightings_for
from .store import ResultStore, check_output_paths, check_store_file, resolve_cache_dir
from .workspace import Workspace, code_commit, guard_output

@dataclass
class RunSummary:
    """What a run produced: the report, how many cells it planned, and every failed cell."""

    report: Path | None
    """report.md; None when the run was asked for no report (tuning trials)"""
    cells: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(row label with request and seed, first line of its error)"""
    rerun: list[str] = field(default_factory=list)
    """finished rows run again because their hyper-parameters were not the ones the code resolves now
    (:func:`stale_cells`): label with request, seed and what changed"""


def preflight(cfg: ExperimentConfig) -> None:
    """Everything that can be checked from the config alone, before any data is loaded."""
    class_requests = any(r.kind == "class" for r in cfg.requests)
    for spec in cfg.methods:
        method = build_method(spec.name, **spec.options)
        for w in weightings_for(cfg, spec):
            weighting = build_weighting(w, **spec.weighting_options.get(w, {}))
            if "heldout" in set(method.needs) | set(weighting.needs) and cfg.heldout_fraction == 0:
                raise ValueError(f"{spec.name} with weighting {w!r} needs a held-out set, but heldout_fraction is 0")
        if method.class_only and not class_requests:
            raise ValueError(f"method {spec.name!r} forgets whole classes but the config has no class "
                             "request; add one (kind: class) — it runs on the class requests only")
    for name, options in evaluator_options(cfg):
        evaluator = EVALUATORS.get(name)
        if evaluator.class_requests_only and not class_requests:
            raise ValueError(f"evaluator {name!r} measures whole-class forgetting, but the config has no class "
                             "request; add one (kind: class) — it scores class requests only — or drop it "
                             "from metrics.extra")
        evaluator.check(options)


def _needs_heldout(cfg: ExperimentConfig) -> list[str]:
    out = []
    for spec in cfg.methods:
        for w in weightings_for(cfg, spec):
            weighting = build_weighting(w, **spec.weighting_options.get(w, {}))
            if "heldout" in set(build_method(spec.name, **spec.options).needs) | set(weighting.needs):
                out.append(f"{spec.display} with weighting {w!r}")
    return out


def check_data(ws: Workspace) -> None:
    """Checks that need the data: every request can be built, the model builds, and a held-out
    split that a method needs has enough samples of every class."""
    cfg = ws.cfg
    for seed in cfg.seeds:
        for ri in range(len(cfg.requests)):
            ws.request(seed, ri)
    ws.build()
    for seed in cfg.seeds:  # MIA-Efficacy's shadow members are the first |test| retain samples
        for ri, spec in enumerate(cfg.requests):
            retain = len(ws.splits(seed, ri)[1])
            test = len(without_classes(ws.bundle.test, spec.classes if spec.kind == "class" else ()))
            if retain < test:
                raise ValueError(f"request {ri} leaves {retain} retain samples, fewer than the {test} test samples "
                                 "MIA-Efficacy takes as many shadow members from (SalUn's protocol); set "
                                 f"test_size <= {retain} or a larger train_size")
    users = _needs_heldout(cfg)
    if users:
        for seed in cfg.seeds:
            counts = np.bincount(ws.pool(seed)[1].y.numpy(), minlength=ws.bundle.num_classes)
            thin = [c for c in range(ws.bundle.num_classes) if counts[c] < MIN_HELDOUT_PER_CLASS]
            if thin:
                raise ValueError(f"heldout_fraction {cfg.heldout_fraction} leaves classes {thin} with fewer than "
                                 f"{MIN_HELDOUT_PER_CLASS} held-out samples (seed {seed}); {users[0]} needs "
                                 "per-class statistics: raise heldout_fraction")


def stale_cells(cfg: ExperimentConfig, cells: list[Cell], stored: dict[str, dict]) -> dict[Cell, str]:
    """Finished method cells whose stored hyper-parameters differ from what the code resolves now,
    each named as the failure list names rows, with what changed (``... / seed 0: beta 10 -> 2``).

    A cell's key hashes its config, not the module defaults the config leaves out, so a default
    changed since a row ran would otherwise keep that row silently. ``stored``: key → stored row."""
    out = {}
    for c in cells:
        row = stored.get(c.key)
        if c.is_reference or row is None:
            continue
        now = json.loads(json.dumps(method_params(cfg, c), default=str))
        diff = [f"{k} {row['params'].get(k)!r} -> {v!r}" for k, v in now.items() if row["params"].get(k) != v]
        if diff:
            out[c] = f"{row['method']} / {row['request']} / seed {row['seed']}: {', '.join(diff)}"
    return out


def run_experiment(cfg: ExperimentConfig, out_dir: str | Path, *, show_progress: bool = True,
                   executor: str = "local", executor_options: dict | None = None, report: bool = True) -> RunSummary:
    """Run every cell not yet in the store, then write the report (unless ``report`` is False).

    Everything that can refuse the run is checked before the first file is written: the config,
    the executor (Ray reached), the output paths, a store already there, the data."""
    from .report import write_report

    out_dir = Path(out_dir)
    code_commit()  # pin the provenance commit to the code as it was when the run started
    preflight(cfg)
    require_executor(executor)
    check_output_paths(out_dir, cfg.cache_dir)
    guard_output(out_dir, cfg)
    check_store_file(out_dir / "results.sqlite")
    ws = Workspace(cfg, resolve_cache_dir(out_dir, cfg.cache_dir), out_dir=out_dir)
    check_data(ws)
    cells = plan(cfg)
    with connected(executor, executor_options) as options:  # a cluster that cannot be reached: nothing written
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(out_dir / "experiment.json", json.dumps(
            {"name": cfg.name, "experiment_type": cfg.experiment_type, "config": cfg.model_dump(),
             "planned_keys": [c.key for c in cells]}, indent=1))
        rerun, failed = _run_cells(cfg, cells, ws, out_dir, show_progress, executor, options)
    return RunSummary(write_report(out_dir) if report else None, len(cells), failed, rerun)


def _run_cells(cfg: ExperimentConfig, cells: list[Cell], ws: Workspace, out_dir: Path, show_progress,
               executor: str, options: dict) -> tuple[list[str], list[tuple[str, str]]]:
    """Run the cells the store lacks (or holds with stale hyper-parameters); (rows re-run, failed rows)."""
    from .progress import Progress

    with ResultStore(out_dir / "results.sqlite") as store, Progress(show_progress) as prog:
        stale = stale_cells(cfg, cells, {r["key"]: r for r in store.rows(status="ok")})
        rerun = list(stale.values())
        if rerun:
            print(f"forgetkit: running {len(rerun)} finished rows again: they ran with other hyper-parameters "
                  f"than the code resolves now (a default changed since): {'; '.join(rerun)}", file=sys.stderr)
        todo = [c for c in cells if not store.has(c.key) or c in stale]
        task = prog.overall(len(cells), len(cells) - len(todo))

        def on_row(cell, row):
            store.put(**row)
            prog.advance(task)

        build_executor(executor, ws, prog, task, **options).run(todo, on_row)
        failed = [(f"{r['method']} / {r['request']} / seed {r['seed']}", str(r["error"]).splitlines()[0])
                  for r in store.rows(status="failed") if r["key"] in {c.key for c in cells}]
    return rerun, failed
