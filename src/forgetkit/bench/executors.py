"""Executors beyond the in-process loop: run grid cells as Ray tasks on one machine or a cluster.

Order of work (so no model is trained twice, and gaps have their reference):

1. every reference model the pending cells need (original per seed, retrained per (seed, request),
   extra seeded references for evaluators) is one Ray task, trained into the shared
   content-addressed cache; distinct tasks have distinct cache keys, so none is trained twice
   concurrently;
2. the Retrain rows, whose metrics the other cells of their (seed, request) need for gaps;
3. every other cell, submitted as soon as its Retrain row is known.

Results stream back with ``ray.wait``; the driver alone writes the store. Ray retries a task whose
worker died up to ``max_retries`` times; after that the row is stored as failed (and re-run next time).
Ray is an optional extra: nothing here imports it before it is needed.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .config import ExperimentConfig
from .runner import Cell, Workspace, execute_cell, method_label, reference_metrics_of
from .store import ResultStore

EXECUTORS = ("local", "ray")
RAY_MISSING = "the ray executor needs Ray, which is not installed: pip install forgetkit[ray]"


def require_executor(name: str) -> None:
    """Fail before any work when an executor is unknown or its optional dependency is absent."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}")
    if name == "ray":
        _import_ray()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError(RAY_MISSING) from None
    return ray


def extra_reference_count(cfg: ExperimentConfig) -> int:
    """Seeded extra references the configured evaluators ask for (option or attribute ``n_references``)."""
    from ..metrics.evaluators import EVALUATORS

    counts = [int(cfg.metrics.extra_options.get(name, {}).get(
        "n_references", getattr(EVALUATORS.get(name), "n_references", 0))) for name in cfg.metrics.extra]
    return max(counts, default=0)


def reference_jobs(cfg: ExperimentConfig, todo: list[Cell]) -> list[tuple]:
    """Distinct reference models the pending cells need: ("original", seed) / ("retrain", seed, ri, model_seed)."""
    extra = extra_reference_count(cfg)
    jobs: list[tuple] = []
    for cell in todo:
        wanted = [("original", cell.seed), ("retrain", cell.seed, cell.request, None)]
        wanted += [("retrain", cell.seed, cell.request, 1000 + i) for i in range(extra)]
        jobs += [j for j in wanted if j not in jobs]
    return jobs


# --- worker side ---------------------------------------------------------------------------------

_WORKSPACES: dict[str, Workspace] = {}


def _workspace(cfg_json: str, cache_dir: str) -> Workspace:
    """One Workspace per (config, cache) per worker process, so data is loaded once per worker."""
    key = hashlib.sha256((cfg_json + cache_dir).encode()).hexdigest()
    if key not in _WORKSPACES:
        cfg = ExperimentConfig.model_validate(json.loads(cfg_json))
        _WORKSPACES[key] = Workspace(cfg, Path(cache_dir))
    return _WORKSPACES[key]


def _train_reference(cfg_json: str, cache_dir: str, job: tuple) -> None:
    ws = _workspace(cfg_json, cache_dir)
    if job[0] == "original":
        ws.original(job[1])
    else:
        ws.retrained(job[1], job[2], job[3])


def _run_cell(cfg_json: str, cache_dir: str, cell: Cell, reference: dict | None) -> dict:
    return execute_cell(_workspace(cfg_json, cache_dir), cell, reference)


# --- driver side ---------------------------------------------------------------------------------

def run_cells(executor: str, cfg: ExperimentConfig, cache_dir: Path, todo: list[Cell], cells: list[Cell],
              store: ResultStore, prog, *, address: str | None = None, cpus_per_task: float = 1,
              gpus_per_task: float | None = None, max_retries: int = 2) -> None:
    """Run ``todo`` with ``executor`` and write each row to ``store`` as it arrives.

    ``gpus_per_task`` defaults to 0.25 when CUDA is available (four small jobs packed per GPU) and
    0 otherwise. Without ``address`` a local Ray instance is started (or the one already running
    in this process is used); with it the driver joins that cluster.
    """
    require_executor(executor)
    if executor == "local":
        raise ValueError("the local executor runs inside run_experiment, not through run_cells")
    ray = _import_ray()
    started = _connect(ray, address)
    try:
        _RaySweep(ray, cfg, cache_dir, cells, store, prog, cpus_per_task=cpus_per_task,
                  gpus_per_task=_default_gpus(gpus_per_task), max_retries=max_retries).run(todo)
    finally:
        if started:
            ray.shutdown()


def _connect(ray, address: str | None) -> bool:
    """Join ``address`` or start a local instance; True when this call started it (and must stop it)."""
    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    return True


def _default_gpus(gpus_per_task: float | None) -> float:
    if gpus_per_task is not None:
        return float(gpus_per_task)
    import torch

    return 0.25 if torch.cuda.is_available() else 0.0


class _RaySweep:
    """Driver state of one Ray sweep: which tasks are in flight and what each one is."""

    def __init__(self, ray, cfg, cache_dir, cells, store, prog, *, cpus_per_task, gpus_per_task, max_retries):
        self.ray, self.cfg, self.store, self.prog, self.cells = ray, cfg, store, prog, cells
        self.cfg_json = json.dumps(cfg.model_dump())
        self.cache_dir = str(cache_dir)
        opts = {"num_cpus": cpus_per_task, "num_gpus": gpus_per_task, "max_retries": max_retries}
        self.train_task = ray.remote(**opts)(_train_reference)
        self.cell_task = ray.remote(**opts)(_run_cell)
        self.pending: dict = {}  # ObjectRef -> Cell (or reference job tuple)

    def run(self, todo: list[Cell]) -> None:
        task = self.prog.overall(len(self.cells), len(self.cells) - len(todo))
        for job in reference_jobs(self.cfg, todo):
            self.pending[self.train_task.remote(self.cfg_json, self.cache_dir, job)] = job
        self.prog.describe(task, f"training {len(self.pending)} reference models")
        failed_jobs: dict[tuple, dict] = {}
        self._drain(lambda job, out: failed_jobs.update({job: out}) if out is not None else None)
        todo = self._fail_without_references(todo, failed_jobs, task)

        waiting = [c for c in todo if c.method != -2]
        for cell in todo:
            if cell.method == -2:
                self._submit(cell, None)
        for cell in [c for c in waiting if self._retrain_done(c)]:
            self._submit(cell, self._reference_for(cell))
            waiting.remove(cell)

        def on_row(cell, row):
            self.prog.describe(task, f"{method_label(self.cfg, cell)}/{cell.weighting} seed {cell.seed}")
            self.store.put(**row)
            self.prog.advance(task)
            if cell.method == -2:
                for other in [c for c in waiting if (c.seed, c.request) == (cell.seed, cell.request)]:
                    self._submit(other, self._reference_for(other))
                    waiting.remove(other)

        self._drain(on_row)

    def _submit(self, cell: Cell, reference: dict | None) -> None:
        self.pending[self.cell_task.remote(self.cfg_json, self.cache_dir, cell, reference)] = cell

    def _drain(self, on_result) -> None:
        """Wait for every pending task (and those ``on_result`` submits), one result at a time."""
        while self.pending:
            ready, _ = self.ray.wait(list(self.pending), num_returns=1)
            ref = ready[0]
            what = self.pending[ref]
            try:
                out = self.ray.get(ref)
            except self.ray.exceptions.RayError as e:
                out = self._lost(what, e)
            del self.pending[ref]
            on_result(what, out)

    def _fail_without_references(self, todo: list[Cell], failed_jobs: dict, task) -> list[Cell]:
        """Store a failed row for every cell whose reference could not be trained; return the rest.

        Those cells are not run: they would each train the missing model again, concurrently.
        """
        runnable = []
        for cell in todo:
            missing = [failed_jobs[j] for j in reference_jobs(self.cfg, [cell]) if j in failed_jobs]
            if not missing:
                runnable.append(cell)
                continue
            self.store.put(**self._failed_row(cell, f"reference model not trained: {missing[0]['error']}"))
            self.prog.advance(task)
        return runnable

    def _lost(self, what, error: Exception) -> dict:
        """A task that raised, or whose worker died more than ``max_retries`` times: a failed row, never a lost one."""
        reason = f"worker lost: {type(error).__name__}: {str(error).splitlines()[0]}"
        return self._failed_row(what, reason) if isinstance(what, Cell) else {"error": reason}

    def _failed_row(self, what: Cell, error: str) -> dict:
        return {"key": what.key, "experiment": self.cfg.name, "method": method_label(self.cfg, what),
                "weighting": what.weighting, "request": self._request_name(what), "seed": what.seed,
                "status": "failed", "metrics": {}, "params": {}, "provenance": {"executor": "ray"},
                "artifacts": {}, "error": error}

    def _request_name(self, cell: Cell) -> str:
        return _workspace(self.cfg_json, self.cache_dir).request(cell.seed, cell.request).name

    def _retrain_done(self, cell: Cell) -> bool:
        return self.store.has(self._retrain_cell(cell).key)

    def _retrain_cell(self, cell: Cell) -> Cell:
        return next(c for c in self.cells if (c.seed, c.request, c.method) == (cell.seed, cell.request, -2))

    def _reference_for(self, cell: Cell) -> dict | None:
        ref = self._retrain_cell(cell)
        rows = [r for r in self.store.rows(status="ok") if r["key"] == ref.key]
        return reference_metrics_of(rows[0], self.store.artifacts(ref.key)) if rows else None
