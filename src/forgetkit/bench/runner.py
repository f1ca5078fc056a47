"""Run an experiment: plan the grid, train references once, run cells, store one row per cell.

Cells are independent given the model cache, so an executor can run them anywhere
(:func:`execute_cell` rebuilds what it needs from the config); the driver alone writes the store.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import subprocess
import time
import traceback
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..data import class_request, heldout_split, load_dataset, longtail_request, random_request
from ..data.base import DataBundle, Split
from ..data.requests import ForgetRequest, class_groups
from ..methods import METHODS, build_method, check_requirements
from ..metrics.core import GAP_KEYS, avg_gap, evaluate_model, group_accuracy, unlearning_deviation
from ..models import build_model
from ..cache import ModelCache
from ..train import TrainRecipe, train_cached
from ..unlearn.context import UnlearnContext
from ..unlearn.engine import DivergenceError
from ..unlearn.weightings import WEIGHTINGS, build_weighting
from .config import ExperimentConfig, MethodSpec, RequestSpec
from ..metrics.evaluators import EVALUATORS, CellView
from .store import ResultStore

REFERENCE_METHODS = ("original", "retrain")


@dataclass(frozen=True)
class Cell:
    """One row of the result store: a method (or reference) × weighting × request × seed."""

    seed: int
    request: int
    method: int  # index into cfg.methods; -1 original, -2 retrain
    weighting: str
    key: str

    @property
    def is_reference(self) -> bool:
        return self.method < 0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda was asked for but no CUDA GPU is available")
    return torch.device(name)


def _stratified_subsample(y: torch.Tensor, n: int | None, seed: int) -> np.ndarray:
    if n is None or n >= len(y):
        return np.arange(len(y))
    frac = n / len(y)
    _, picked = heldout_split(y, frac, seed)
    return picked


def method_label(cfg: ExperimentConfig, cell: Cell) -> str:
    if cell.method < 0:
        return REFERENCE_METHODS[-cell.method - 1]
    return cfg.methods[cell.method].display


def weightings_for(cfg: ExperimentConfig, spec: MethodSpec) -> list[str]:
    cls = METHODS.get(spec.name)
    names = spec.weightings if spec.weightings is not None else cfg.weightings
    return names if cls.supports_weighting else ["uniform"]


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]


def plan(cfg: ExperimentConfig, roles: tuple[str, ...] = ("report",)) -> list[Cell]:
    """All cells of the grid for requests of the given roles; Retrain first, whose metrics the gaps need.

    Validation requests (``role: validation``) are for tuning only and are not run by ``run``.
    """
    base = cfg.model_dump(exclude={"methods", "requests", "seeds", "weightings", "cache_dir", "device"})
    cells = []
    for seed in cfg.seeds:
        for ri, req in enumerate(cfg.requests):
            common = {"base": base, "seed": seed, "request": req.model_dump()}
            if req.role not in roles:
                continue
            for m in (-2, -1):
                cells.append(Cell(seed, ri, m, "-", _hash({**common, "method": REFERENCE_METHODS[-m - 1]})))
            for mi, spec in enumerate(cfg.methods):
                for w in weightings_for(cfg, spec):
                    key = _hash({**common, "method": spec.model_dump(), "weighting": w,
                                 "weighting_options": spec.weighting_options.get(w, {})})
                    cells.append(Cell(seed, ri, mi, w, key))
    return cells


def preflight(cfg: ExperimentConfig) -> None:
    """Everything that can be checked before any work: names, options, data needs."""
    for spec in cfg.methods:
        method = build_method(spec.name, **spec.options)
        for w in weightings_for(cfg, spec):
            weighting = build_weighting(w, **spec.weighting_options.get(w, {}))
            needs = set(method.needs) | set(weighting.needs)
            if "heldout" in needs and cfg.heldout_fraction == 0:
                raise ValueError(f"{spec.name} with weighting {w!r} needs a held-out set, "
                                 "but heldout_fraction is 0")
        if method.class_only:
            bad = [r.kind for r in cfg.requests if r.kind != "class"]
            if bad:
                raise ValueError(f"method {spec.name!r} forgets whole classes but the config has "
                                 f"{bad[0]} requests; use kind: class")
    for w in cfg.weightings:
        WEIGHTINGS.get(w)
    for name in cfg.metrics.extra:
        EVALUATORS.get(name)


class Workspace:
    """Per-process lazily built data, requests and reference models of one experiment."""

    def __init__(self, cfg: ExperimentConfig, cache_dir: Path, progress=None):
        self.cfg = cfg
        self.cache = ModelCache(cache_dir)
        self.device = resolve_device(cfg.device)
        self.progress = progress
        self.recipe = TrainRecipe(**{**cfg.train.model_dump(), "milestones": tuple(cfg.train.milestones)})

    @property
    @lru_cache(maxsize=None)
    def bundle(self) -> DataBundle:
        b = load_dataset(self.cfg.dataset, self.cfg.data_dir)
        tr = _stratified_subsample(b.train.y, self.cfg.train_size, 0)
        te = _stratified_subsample(b.test.y, self.cfg.test_size, 0)
        return DataBundle(b.name, b.train.subset(tr), b.test.subset(te), b.num_classes, b.kind,
                          b.class_names, b.source)

    @lru_cache(maxsize=None)
    def pool(self, seed: int) -> tuple[Split, Split]:
        """(training pool, held-out unseen split) for a seed."""
        train = self.bundle.train
        keep, held = heldout_split(train.y, self.cfg.heldout_fraction, seed)
        return train.subset(keep), train.subset(held)

    @lru_cache(maxsize=None)
    def request(self, seed: int, ri: int) -> ForgetRequest:
        spec: RequestSpec = self.cfg.requests[ri]
        y = self.pool(seed)[0].y.numpy()
        nc = self.bundle.num_classes
        if spec.kind == "random":
            return random_request(y, spec.fraction, seed)
        if spec.kind == "class":
            return class_request(y, spec.classes, nc)
        return longtail_request(y, nc, spec.ratio, spec.gamma, seed, spec.natural_order, spec.keep_one)

    def build(self):
        b = self.bundle
        return build_model(self.cfg.model.name, b.input_shape, b.num_classes, **self.cfg.model.options)

    def _train(self, pool_seed: int, idx: np.ndarray, model_seed: int):
        """A model trained on ``pool[idx]``: cached by data, indices, model, recipe and seed only,
        so any experiment asking for the same model reuses it."""
        pool = self.pool(pool_seed)[0]
        return train_cached(self.cache, self.build, pool, idx, self.recipe, model_seed, self.device,
                            self.bundle.num_classes, {"model": self.cfg.model.model_dump()}, self.progress)

    @lru_cache(maxsize=None)
    def original(self, seed: int):
        return self._train(seed, np.arange(len(self.pool(seed)[0])), seed)

    @lru_cache(maxsize=None)
    def retrained(self, seed: int, ri: int, model_seed: int | None = None):
        """Retrained reference on D_r; ``model_seed`` varies the initialisation for extra references."""
        n = len(self.pool(seed)[0])
        retain_idx = np.setdiff1d(np.arange(n), self.request(seed, ri).indices)
        return self._train(seed, retain_idx, seed if model_seed is None else model_seed)

    def splits(self, seed: int, ri: int) -> tuple[Split, Split]:
        pool = self.pool(seed)[0]
        req = self.request(seed, ri)
        retain_idx = np.setdiff1d(np.arange(len(pool)), req.indices)
        return pool.subset(req.indices), pool.subset(retain_idx)

    def context(self, seed: int, ri: int) -> UnlearnContext:
        forget, retain = self.splits(seed, ri)
        held = self.pool(seed)[1]
        return UnlearnContext(original=self.original(seed)[0], forget=forget, retain=retain,
                              heldout=held if len(held) else None, num_classes=self.bundle.num_classes,
                              device=self.device, seed=seed, kind=self.bundle.kind,
                              forget_classes=self.request(seed, ri).classes)


@lru_cache(maxsize=1)
def code_commit() -> str:
    """The commit of the code this process runs (read once: later commits must not relabel rows),
    with ``+dirty`` when the package's source has uncommitted changes."""
    src = str(Path(__file__).resolve().parents[1])
    try:
        run = lambda *a: subprocess.run(["git", "-C", src, *a], capture_output=True, text=True, timeout=5).stdout.strip()  # noqa: E731
        commit = run("rev-parse", "--short", "HEAD") or "unknown"
        return commit + ("+dirty" if commit != "unknown" and run("status", "--porcelain", "--", src) else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(ws: Workspace, seed: int) -> dict:
    dev = ws.device
    return {"commit": code_commit(), "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
            "torch": torch.__version__, "dataset": ws.bundle.name, "source": ws.bundle.source,
            "n_train_pool": len(ws.pool(seed)[0]), "model": ws.cfg.model.name, "seed": seed}


def execute_cell(ws: Workspace, cell: Cell, reference_metrics: dict | None = None, progress=None) -> dict:
    """Run one cell and return the store row (status ok or failed, never raises for a method failure)."""
    cfg = ws.cfg
    forget, retain = ws.splits(cell.seed, cell.request)
    test = ws.bundle.test
    req = ws.request(cell.seed, cell.request)
    original, orig_seconds = ws.original(cell.seed)
    retrained, retrain_seconds = ws.retrained(cell.seed, cell.request)
    row = {"key": cell.key, "experiment": cfg.name, "method": method_label(cfg, cell),
           "weighting": cell.weighting, "request": req.name, "seed": cell.seed,
           "provenance": provenance(ws, cell.seed), "params": {}, "error": None}
    unlearn_fn = None
    try:
        if cell.is_reference:
            model = original if cell.method == -1 else retrained
            seconds = orig_seconds if cell.method == -1 else retrain_seconds
            info = {}
        else:
            spec = cfg.methods[cell.method]
            method = build_method(spec.name, **spec.options)
            weighting = build_weighting(cell.weighting, **spec.weighting_options.get(cell.weighting, {}))
            ctx = ws.context(cell.seed, cell.request)
            check_requirements(method, ctx, weighting)
            row["params"] = {"method": spec.name, **method.params(), "weighting": cell.weighting,
                             "label_only": spec.label is not None and len(weightings_for(cfg, spec)) == 1,
                             "weighting_options": spec.weighting_options.get(cell.weighting, {})}
            start = time.perf_counter()
            model, info = method.unlearn(original, ctx, weighting, progress)
            seconds = time.perf_counter() - start

            def unlearn_fn(m, _spec=spec, _ctx=ctx):
                fresh = build_method(_spec.name, **_spec.options)
                w = build_weighting(cell.weighting, **_spec.weighting_options.get(cell.weighting, {}))
                return fresh.unlearn(m, dataclasses.replace(_ctx, original=m), w)[0]
        ev = evaluate_model(model, forget, retain, test, ws.device)
        metrics = {k: ev[k] for k in GAP_KEYS}
        metrics["time_s"] = seconds
        metrics["retrain_time_s"] = retrain_seconds
        metrics["speedup"] = retrain_seconds / seconds if seconds > 0 else float("nan")
        groups = class_groups(forget.y.numpy(), ws.bundle.num_classes, cfg.metrics.groups)
        for g, v in group_accuracy(ev["forget_correct"], forget.y.numpy(), groups).items():
            metrics[f"FA_{g}"] = v
        artifacts = {"forget_probs": np.round(ev["forget_probs"], 5).tolist(), "groups": groups,
                     "forget_labels": forget.y.tolist()}
        if reference_metrics is not None:
            metrics["AvgGap"] = avg_gap(metrics, reference_metrics)
            for k in GAP_KEYS:
                metrics[f"gap_{k}"] = abs(metrics[k] - reference_metrics[k])
            for g in groups:
                metrics[f"dFA_{g}"] = metrics[f"FA_{g}"] - reference_metrics[f"FA_{g}"]
            metrics.update({f"dev_{k}": v for k, v in unlearning_deviation(
                ev["forget_probs"], reference_metrics["_forget_probs"], cfg.metrics.deviation_tau).items()})
        if info.get("history"):
            artifacts["history"] = info["history"]
        view = CellView(model, original, retrained, ws.bundle, forget, retain, test, req, cell.seed,
                        ws.device, lambda m: [ws.retrained(cell.seed, cell.request, 1000 + i)[0] for i in range(m)],
                        unlearn_fn)
        for name in cfg.metrics.extra:
            metrics.update(EVALUATORS.get(name)(view, **cfg.metrics.extra_options.get(name, {})))
        _check_finite(metrics)
        row.update(status="ok", metrics=metrics, artifacts=artifacts)
    except (DivergenceError, FloatingPointError, ValueError) as e:
        row.update(status="failed", metrics={}, artifacts={}, error=f"{type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001  a crashed method must not stop the sweep
        row.update(status="failed", metrics={}, artifacts={},
                   error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
    return row


def _check_finite(metrics: dict) -> None:
    for k, v in metrics.items():
        if isinstance(v, float) and not np.isfinite(v) and k not in ("speedup",) and not k.startswith(("FA_", "dFA_")):
            raise FloatingPointError(f"metric {k} is {v}")


def reference_metrics_of(row: dict, store_artifacts: dict) -> dict:
    ref = dict(row["metrics"])
    ref["_forget_probs"] = np.asarray(store_artifacts["forget_probs"])
    return ref


def guard_output(out_dir: Path, cfg: ExperimentConfig) -> None:
    """Refuse to mix two experiments' results in one directory."""
    marker = out_dir / "experiment.json"
    if marker.exists():
        other = json.loads(marker.read_text()).get("name")
        if other != cfg.name:
            raise ValueError(f"{out_dir} holds results of experiment {other!r}; refusing to write "
                             f"{cfg.name!r} there (choose another --out)")


def run_experiment(cfg: ExperimentConfig, out_dir: str | Path, *, show_progress: bool = True,
                   executor: str = "local", executor_options: dict | None = None) -> Path:
    """Run every cell not yet in the store, then write the report; returns the report path."""
    from .progress import Progress
    from .report import write_report

    out_dir = Path(out_dir)
    code_commit()  # pin the provenance commit to the code as it was when the run started
    preflight(cfg)
    guard_output(out_dir, cfg)
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else out_dir.parent / ".forgetkit-cache"
    check = Workspace(cfg, cache_dir)
    for seed in cfg.seeds:  # load data and build every request now: bad input fails before any write
        for ri in range(len(cfg.requests)):
            check.request(seed, ri)
    check.build()  # an unknown architecture or bad model option fails before any write
    if executor != "local":
        from .executors import require_executor

        require_executor(executor)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "experiment.json").write_text(json.dumps({"name": cfg.name, "config": cfg.model_dump()}, indent=1))
    cells = plan(cfg)
    with ResultStore(out_dir / "results.sqlite") as store, Progress(show_progress) as prog:
        todo = [c for c in cells if not store.has(c.key)]
        if executor == "local":
            ws = check
            ws.progress = prog.steps("training")
            task = prog.overall(len(cells), len(cells) - len(todo))
            for cell in todo:
                ref = _reference_for(store, cells, cell)
                prog.describe(task, f"{method_label(cfg, cell)}/{cell.weighting} seed {cell.seed} req {cell.request}")
                row = execute_cell(ws, cell, ref, prog.steps("unlearning"))
                store.put(**row)
                prog.advance(task)
        else:
            from .executors import run_cells

            run_cells(executor, cfg, cache_dir, todo, cells, store, prog, **(executor_options or {}))
    return write_report(out_dir)


def _reference_for(store: ResultStore, cells: list[Cell], cell: Cell) -> dict | None:
    """Metrics of the retrained reference of ``cell``'s request and seed (None for the reference itself)."""
    if cell.method == -2:
        return None
    ref = next(c for c in cells if c.seed == cell.seed and c.request == cell.request and c.method == -2)
    rows = [r for r in store.rows(status="ok") if r["key"] == ref.key]
    if not rows:
        return None
    return reference_metrics_of(rows[0], store.artifacts(ref.key))
