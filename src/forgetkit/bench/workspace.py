"""What one process needs to run cells: data, forget requests and reference models, built lazily
and cached (models on disk by content hash), plus the provenance every row carries."""
from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..cache import ModelCache
from ..data import heldout_split, load_dataset
from ..data.base import DataBundle, Split, as_float
from ..data.requests import ForgetRequest, ShapeData
from ..inputs import resolve_device
from ..metrics.core import accuracy, predict_logits
from ..models import build_model, penultimate_features
from ..train import train_cached
from ..unlearn.context import UnlearnContext
from ..unlearn.engine import DivergenceError
from .config import ExperimentConfig
from .store import read_experiment


def threads_per_worker(threads: int | None) -> int:
    """torch threads for each worker process: the configured number, else ``OMP_NUM_THREADS`` when
    the environment sets it, else one.

    One, not cores ÷ workers: measured on the 2-core machine (``benchmarks/bench_threads.py``,
    ``docs/results/performance.md``) the demo alone took 133 s with one thread and 145 s with two, and two
    runs at once 55 s with one thread each against 89 s with two — small models gain nothing from
    intra-op threads, and processes that each take every core oversubscribe. Use the cores by
    running cells in parallel (``--executor ray``), or set ``threads`` for large models.
    """
    if threads is not None:
        return threads
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return 1


def set_threads(n: int) -> None:
    """Fix torch's intra-op threads for this process (results depend on it: reductions are split
    differently), and its inter-op threads where torch still allows it."""
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # already set, or parallel work already started in this process
        pass


def _stratified_subsample(y: torch.Tensor, n: int | None, seed: int) -> np.ndarray:
    if n is None or n >= len(y):
        return np.arange(len(y))
    _, picked = heldout_split(y, n / len(y), seed)
    return picked


class Workspace:
    """Per-process lazily built data, requests and reference models of one experiment."""

    def __init__(self, cfg: ExperimentConfig, cache_dir: Path, progress=None, out_dir: Path | None = None):
        self.cfg = cfg
        self.out_dir = out_dir
        """where per-row files (audit reports) go; None: nowhere"""
        self.cache = ModelCache(cache_dir)
        self.device = resolve_device(cfg.device)
        self.progress = progress
        self.recipe = cfg.train
        self._failed: dict[tuple, Exception] = {}
        self.models_trained = 0
        """models this process trained (not loaded from the cache): rows record their share"""

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
        keep, held = heldout_split(self.bundle.train.y, self.cfg.heldout_fraction, seed)
        return self.bundle.train.subset(keep), self.bundle.train.subset(held)

    @lru_cache(maxsize=None)
    def request(self, seed: int, ri: int) -> ForgetRequest:
        """Request ``ri`` on the seed's pool, built by its registered shape; a shape that reads the
        original's features gets them (and so trains or loads the original first). Its name in
        reports must differ from every earlier request's."""
        spec = self.cfg.requests[ri]
        shape = spec.shape()
        pool = self.pool(seed)[0]
        features = (lambda: self.pool_features(seed)) if shape.needs_features else None
        req = shape.build(ShapeData(pool.y.numpy(), self.bundle.num_classes, seed, pool.x, features))
        shown = spec.name or req.name
        for j in range(ri):  # rows carry this name: two requests under one would merge in every report
            if (self.cfg.requests[j].name or self.request(seed, j).name) == shown:
                raise ValueError(f"requests.{ri} is reported as {shown!r}, as requests.{j} is; give one of them "
                                 "another name (name: ...)")
        return req

    @lru_cache(maxsize=None)
    def pool_features(self, seed: int) -> np.ndarray:
        """The original model's penultimate features of the seed's pool (for feature-clustering shapes)."""
        model, x = self.original(seed)[0], self.pool(seed)[0].x
        return np.concatenate([penultimate_features(model, as_float(chunk), self.device) for chunk in x.split(4096)])

    def build(self):
        b = self.bundle
        return build_model(self.cfg.model.name, b.input_shape, b.num_classes, **self.cfg.model.options)

    def _train(self, pool_seed: int, idx: np.ndarray, model_seed: int):
        """A model trained on ``pool[idx]``: cached by data, indices, model, recipe and seed only,
        so any experiment asking for the same model reuses it."""
        pool = self.pool(pool_seed)[0]
        job = (pool_seed, model_seed, hash(np.asarray(idx).tobytes()))
        if job in self._failed:  # a reference that diverged once fails its dependants at once, not after retraining
            raise self._failed[job]
        def tick(step: int, total: int) -> None:
            if step == 1:
                self.models_trained += 1
            if self.progress is not None:
                self.progress(step, total)

        try:
            return train_cached(self.cache, self.build, pool, idx, self.recipe, model_seed, self.device,
                                self.bundle.num_classes, {"model": self.cfg.model.model_dump()}, tick)
        except DivergenceError as e:
            self._failed[job] = DivergenceError(f"reference model training diverged ({e.reason})", e.step)
            raise self._failed[job] from None

    @lru_cache(maxsize=None)
    def original(self, seed: int):
        return self._train(seed, np.arange(len(self.pool(seed)[0])), seed)

    @lru_cache(maxsize=None)
    def retrained(self, seed: int, ri: int, model_seed: int | None = None):
        """Retrained reference on D_r; ``model_seed`` varies the initialisation for extra references."""
        n = len(self.pool(seed)[0])
        retain_idx = np.setdiff1d(np.arange(n), self.request(seed, ri).indices)
        return self._train(seed, retain_idx, seed if model_seed is None else model_seed)

    @lru_cache(maxsize=None)
    def original_retain_accuracy(self, seed: int, ri: int) -> float:
        """The original's accuracy (%) on a request's retain set, once for all of the request's rows."""
        retain = self.splits(seed, ri)[1]
        return accuracy(predict_logits(self.original(seed)[0], retain.x, self.device), retain.y)

    def references(self, seed: int, ri: int, m: int) -> list:
        """``m`` extra retrained references with other initialisations (for attacks and U-LiRA)."""
        return [self.retrained(seed, ri, extra_reference_seed(i))[0] for i in range(m)]

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


def extra_reference_seed(i: int) -> int:
    """Initialisation seed of the i-th extra retrained reference (distinct from every run seed)."""
    return 1000 + i


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
    return {"commit": code_commit(),
            "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
            "threads": torch.get_num_threads(), "torch": torch.__version__, "dataset": ws.bundle.name,
            "source": ws.bundle.source, "num_classes": ws.bundle.num_classes,
            "n_train_pool": len(ws.pool(seed)[0]), "model": ws.cfg.model.name,
            "seed": seed}


def guard_output(out_dir: Path, cfg: ExperimentConfig) -> None:
    """Refuse to mix two experiments' results in one directory."""
    marker = out_dir / "experiment.json"
    if marker.exists():
        other = read_experiment(out_dir).get("name")
        if other != cfg.name:
            raise ValueError(f"{out_dir} holds results of experiment {other!r}; refusing to write "
                             f"{cfg.name!r} there (choose another --out)")
