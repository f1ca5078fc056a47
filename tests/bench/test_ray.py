"""The Ray executor gives exactly the local executor's rows, trains each reference once, and
retries a task whose worker died a bounded number of times."""
from __future__ import annotations

import copy
import json
import os
import sqlite3
import sys
from dataclasses import make_dataclass
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'forgetkit[ray]'")

from forgetkit.bench.config import parse_config  # noqa: E402
from forgetkit.bench.executors import reference_jobs  # noqa: E402
from forgetkit.bench.grid import plan  # noqa: E402
from forgetkit.bench.runner import run_experiment  # noqa: E402

TIMING = ("time_s", "retrain_time_s", "speedup")

RAW = {"name": "ray-smoke", "dataset": "digits", "heldout_fraction": 0.1, "device": "cpu",
       "model": {"name": "mlp"}, "train": {"epochs": 2, "lr": 0.05, "batch_size": 64},
       "requests": [{"kind": "random", "fraction": 0.1}],
       "methods": [{"name": "ft", "options": {"epochs": 1, "lr": 0.02}},
                   {"name": "ga", "options": {"epochs": 1, "lr": 1e-4}}],
       "seeds": [0]}


def _crash_unlearn(self, model, ctx, weighting=None, progress=None):
    seen = Path(self.counter).read_text().count("x") if Path(self.counter).exists() else 0
    if seen < self.crashes:
        with open(self.counter, "a") as f:
            f.write("x")
        os._exit(1)
    return copy.deepcopy(model), {}


def register_crash_method() -> None:
    """A method whose worker process dies (os._exit) on its first ``crashes`` attempts."""
    from forgetkit.methods import METHODS
    from forgetkit.methods.base import Method

    if "crash_worker" not in METHODS:
        cls = make_dataclass("CrashWorker", [("counter", str, ""), ("crashes", int, 1)],
                             bases=(Method,), namespace={"unlearn": _crash_unlearn})
        METHODS.register("crash_worker")(cls)


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the module; its workers know the test-only crashing method."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    register_crash_method()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": register_crash_method})
    yield ray
    ray.shutdown()


def _rows(out: Path) -> dict[str, tuple[str, dict]]:
    with sqlite3.connect(out / "results.sqlite") as db:
        return {k: (s, json.loads(m)) for k, s, m in db.execute("SELECT key, status, metrics FROM results")}


def _comparable(metrics: dict) -> dict:
    """Metrics without wall-clock timings; NaN (an absent head/mid/tail group) as a string."""
    return {k: ("nan" if v != v else v) for k, v in metrics.items() if k not in TIMING}


def test_ray_sweep_equals_local_sweep(ray_instance, tmp_path):
    cfg = parse_config(RAW)
    run_experiment(cfg, tmp_path / "local" / "out", show_progress=False)
    run_experiment(cfg, tmp_path / "ray" / "out", show_progress=False, executor="ray")
    local, distributed = _rows(tmp_path / "local" / "out"), _rows(tmp_path / "ray" / "out")
    assert set(local) == set(distributed) == {c.key for c in plan(cfg)}
    for key, (status, metrics) in local.items():
        assert status == distributed[key][0] == "ok"
        assert _comparable(metrics) == _comparable(distributed[key][1])
    # each reference model was trained once into the shared cache: one original + one retrained
    cached = list((tmp_path / "ray" / ".forgetkit-cache").glob("*.pt"))
    assert len(cached) == len(reference_jobs(cfg, plan(cfg))) == 2


def test_dead_worker_is_retried_then_stored_failed(ray_instance, tmp_path):
    raw = copy.deepcopy(RAW)
    raw["methods"] = [{"name": "crash_worker", "label": "once", "options": {"counter": str(tmp_path / "a")}},
                      {"name": "crash_worker", "label": "always",
                       "options": {"counter": str(tmp_path / "b"), "crashes": 99}}]
    cfg = parse_config(raw)
    run_experiment(cfg, tmp_path / "out", show_progress=False, executor="ray",
                   executor_options={"max_retries": 1})
    with sqlite3.connect(tmp_path / "out" / "results.sqlite") as db:
        rows = dict(db.execute("SELECT method, status FROM results"))
        error = db.execute("SELECT error FROM results WHERE method='always'").fetchone()[0]
    assert rows == {"Original": "ok", "Retrain": "ok", "once": "ok", "always": "failed"}
    assert "worker lost" in error
    assert (tmp_path / "a").read_text() == "x"  # died once, retried once
    assert (tmp_path / "b").read_text() == "xx"  # first try + max_retries=1, then given up


def test_ray_sweep_trains_each_reference_exactly_once(ray_instance, tmp_path):
    """Evaluators declare their extra references (MIA-NN: ``references``); the executor trains
    them up front, so no cell task trains a model itself."""
    raw = {**RAW, "requests": [{"kind": "class", "classes": [3]}],
           "metrics": {"extra": ["mia_nn"], "extra_options": {"mia_nn": {"references": 3}}}}
    cfg = parse_config(raw)
    run_experiment(cfg, tmp_path / "out", show_progress=False, executor="ray")
    with sqlite3.connect(tmp_path / "out" / "results.sqlite") as db:
        rows = db.execute("SELECT status, json_extract(provenance, '$.models_trained') FROM results").fetchall()
    assert len(rows) == len(plan(cfg)) and all(status == "ok" and trained == 0 for status, trained in rows)
    assert len(list((tmp_path / ".forgetkit-cache").glob("*.pt"))) == 1 + 1 + 3
