"""Where cells run: in this process, or as Ray tasks on one machine or a cluster — one interface.

Cells need no other cell's row (gaps are derived afterwards), so the only ordering is that the
reference models the pending cells need (original per seed, retrained per (seed, request), and the
extra retrained references the evaluators declare) are trained first, each exactly once, into the
shared content-addressed cache. The driver alone writes the store: ``run`` hands each row to
``on_row`` as it arrives. Ray is an optional extra: nothing here imports it before it is needed.
"""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ..plugins import load_plugins
from .cell import execute_cell, extra_references
from .config import ExperimentConfig
from .grid import Cell
from .workspace import Workspace, extra_reference_seed, set_threads, threads_per_worker

EXECUTORS = ("local", "ray")
RAY_MISSING = "the ray executor needs Ray, which is not installed: pip install forgetkit[ray]"

OnRow = Callable[[Cell, dict], None]


def require_executor(name: str) -> None:
    """Fail before any work when an executor is unknown or its optional dependency is absent."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}")
    if name == "ray":
        _import_ray()


@contextmanager
def connected(name: str, options: dict | None = None) -> Iterator[dict]:
    """The executor's back end, reached before the run writes anything; yields the options left for
    :func:`build_executor`. Ray: joins ``address`` (or starts a local instance) unless Ray is already
    running in this process, and shuts down what it started; a cluster that cannot be reached is a
    ``ValueError``, so a run that cannot start leaves no run directory behind."""
    require_executor(name)
    options = dict(options or {})
    if name == "local":
        if options:
            hint = " (--address goes with --executor ray)" if "address" in options else ""
            raise ValueError(f"the local executor takes no options, got {sorted(options)}{hint}")
        yield options
        return
    ray = _import_ray()
    address = options.pop("address", None)
    check_ray_options(options)
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        except Exception as e:  # noqa: BLE001  Ray raises ConnectionError, RuntimeError, ValueError, ...
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ValueError(f"the ray executor cannot reach {where} ({type(e).__name__}: {reason}); nothing was "
                             "written. Check --address (`ray start --head` prints it; `ray status` on the head "
                             "checks it), or run with --executor local") from None
    try:
        yield options
    finally:
        if started:
            ray.shutdown()


RAY_OPTIONS = {"cpus_per_task": "a number > 0", "gpus_per_task": "a number >= 0",
               "max_retries": "an integer >= 0"}


def check_ray_options(options: dict) -> None:
    """The :class:`RayExecutor` options (besides ``address``), checked before Ray starts: an unknown
    or out-of-range one would otherwise fail only when the first task is submitted."""
    unknown = sorted(set(options) - set(RAY_OPTIONS))
    if unknown:
        raise ValueError(f"executor_options: unknown option(s) {unknown}; the ray executor takes address, "
                         f"{', '.join(RAY_OPTIONS)}")
    for name, value in options.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = number and (value > 0 if name == "cpus_per_task" else value >= 0)
        if name == "max_retries":
            ok = ok and isinstance(value, int)
        if name == "gpus_per_task" and value is None:
            ok = True
        if not ok:
            raise ValueError(f"executor_options.{name}: expected {RAY_OPTIONS[name]}, got {value!r}")


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError(RAY_MISSING) from None
    return ray


def reference_jobs(cfg: ExperimentConfig, todo: list[Cell]) -> list[tuple]:
    """Distinct reference models the pending cells need: ("original", seed) / ("retrain", seed, ri, model_seed)."""
    jobs: list[tuple] = []
    for cell in todo:
        extra = extra_references(cfg, cfg.requests[cell.request].kind)
        wanted = [("original", cell.seed), ("retrain", cell.seed, cell.request, None)]
        wanted += [("retrain", cell.seed, cell.request, extra_reference_seed(i)) for i in range(extra)]
        jobs += [j for j in wanted if j not in jobs]
    return jobs


def train_reference(ws: Workspace, job: tuple) -> None:
    if job[0] == "original":
        ws.original(job[1])
    else:
        ws.retrained(job[1], job[2], job[3])


class LocalExecutor:
    """Cells one after another in this process, with ``threads`` torch threads."""

    def __init__(self, ws: Workspace, prog, task):
        self.ws, self.prog, self.task = ws, prog, task

    def run(self, todo: list[Cell], on_row: OnRow) -> None:
        set_threads(threads_per_worker(self.ws.cfg.threads))
        self.ws.progress = self.prog.steps("training")
        for cell in todo:
            self.prog.describe(self.task, f"{cell.label} seed {cell.seed} request {cell.request}")
            on_row(cell, execute_cell(self.ws, cell, self.prog.steps("unlearning")))


# --- Ray: worker side ------------------------------------------------------------------------------

_WORKSPACES: dict[str, Workspace] = {}


def _workspace(cfg_json: str, dirs: tuple[str, str], threads: int) -> Workspace:
    """One Workspace per (config, cache, output) per worker process, so data is loaded once per worker."""
    key = hashlib.sha256((cfg_json + "\0".join(dirs)).encode()).hexdigest()
    if key not in _WORKSPACES:
        load_plugins()  # a worker is a fresh process: installed plug-in methods and evaluators too
        set_threads(threads)
        _WORKSPACES[key] = Workspace(ExperimentConfig.model_validate(json.loads(cfg_json)), Path(dirs[0]),
                                     out_dir=Path(dirs[1]))
    return _WORKSPACES[key]


def _ray_train(cfg_json: str, dirs: tuple[str, str], threads: int, job: tuple) -> None:
    train_reference(_workspace(cfg_json, dirs, threads), job)


def _ray_cell(cfg_json: str, dirs: tuple[str, str], threads: int, cell: Cell) -> dict:
    return execute_cell(_workspace(cfg_json, dirs, threads), cell)


# --- Ray: driver side ------------------------------------------------------------------------------

class RayExecutor:
    """Cells as Ray tasks. ``gpus_per_task`` defaults to 0.25 when CUDA is available (four small
    jobs packed per GPU) and 0 otherwise. Ray itself is started or joined by :func:`connected`. A
    task whose worker died is retried up to ``max_retries`` times, then stored as failed (and re-run
    next time)."""

    def __init__(self, ws: Workspace, prog, task, *, cpus_per_task: float = 1,
                 gpus_per_task: float | None = None, max_retries: int = 2):
        self.ws, self.prog, self.task = ws, prog, task
        self.cpus_per_task, self.gpus_per_task, self.max_retries = cpus_per_task, gpus_per_task, max_retries

    def run(self, todo: list[Cell], on_row: OnRow) -> None:
        self._sweep(_import_ray(), todo, on_row)

    def _sweep(self, ray, todo: list[Cell], on_row: OnRow) -> None:
        cfg = self.ws.cfg
        args = (json.dumps(cfg.model_dump()), (str(self.ws.cache.root), str(self.ws.out_dir)),
                threads_per_worker(cfg.threads))
        opts = {"num_cpus": self.cpus_per_task, "num_gpus": self._gpus(), "max_retries": self.max_retries}
        train, run_cell = ray.remote(**opts)(_ray_train), ray.remote(**opts)(_ray_cell)

        jobs = {train.remote(*args, job): job for job in reference_jobs(cfg, todo)}
        self.prog.describe(self.task, f"training {len(jobs)} reference models")
        failed: dict[tuple, str] = {}
        for job, error in self._drain(ray, jobs):
            if error is not None:
                failed[job] = error
        runnable = []
        for cell in todo:  # a cell whose reference could not be trained would only train it again
            missing = [failed[j] for j in reference_jobs(cfg, [cell]) if j in failed]
            if missing:
                on_row(cell, failed_row(self.ws, cell, f"reference model not trained: {missing[0]}"))
            else:
                runnable.append(cell)
        cells = {run_cell.remote(*args, cell): cell for cell in runnable}
        for cell, out in self._drain(ray, cells):
            on_row(cell, out if isinstance(out, dict) else failed_row(self.ws, cell, out))

    def _gpus(self) -> float:
        if self.gpus_per_task is not None:
            return float(self.gpus_per_task)
        import torch

        return 0.25 if torch.cuda.is_available() else 0.0

    @staticmethod
    def _drain(ray, pending: dict):
        """Yield (what, result or error string) as tasks finish, one at a time."""
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            what = pending.pop(ready[0])
            try:
                yield what, ray.get(ready[0])
            except ray.exceptions.RayError as e:
                yield what, f"worker lost: {type(e).__name__}: {str(e).splitlines()[0]}"


def failed_row(ws: Workspace, cell: Cell, error: str) -> dict:
    return {"key": cell.key, "experiment": ws.cfg.name, "method": cell.label, "weighting": cell.weighting,
            "request": ws.request(cell.seed, cell.request).name, "seed": cell.seed, "status": "failed",
            "metrics": {}, "params": {"base_label": cell.base_label}, "provenance": {}, "artifacts": {},
            "error": error}


def build_executor(name: str, ws: Workspace, prog, task, **options):
    """The executor inside :func:`connected` (which checked ``name`` and took the connection options)."""
    if name == "local":
        return LocalExecutor(ws, prog, task)
    return RayExecutor(ws, prog, task, **options)
