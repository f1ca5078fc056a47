"""``forgetkit merge``: runs of one config split by seed give the directory a run of all seeds would
have left — the same rows, the same planned cells — and incompatible runs are refused untouched."""
from __future__ import annotations

import json
import sqlite3

import pytest

from forgetkit.bench.config import parse_config
from forgetkit.bench.grid import plan
from forgetkit.bench.merge import merge_runs
from forgetkit.bench.report import load_run
from forgetkit.bench.runner import run_experiment
from forgetkit.cli import main

RAW = {"name": "merge", "dataset": "digits", "heldout_fraction": 0.1, "device": "cpu", "threads": 1,
       "train_size": 600, "test_size": 200,
       "model": {"name": "mlp"}, "train": {"epochs": 1, "lr": 0.05, "batch_size": 64},
       "requests": [{"kind": "random", "fraction": 0.1}],
       "methods": [{"name": "rl", "options": {"epochs": 1}}, {"name": "ga", "options": {"epochs": 1}}],
       "metrics": {"audit": True}}


def _run(tmp_path, name: str, seeds: list[int]):
    out = tmp_path / name
    run_experiment(parse_config({**RAW, "seeds": seeds, "cache_dir": str(tmp_path / "cache")}), out,
                   show_progress=False, report=False)
    return out


def _copy_run(src, dst, **meta_changes):
    """A run directory holding ``src``'s rows under an edited ``experiment.json``."""
    dst.mkdir()
    with sqlite3.connect(src / "results.sqlite") as a, sqlite3.connect(dst / "results.sqlite") as b:
        a.backup(b)
    meta = json.loads((src / "experiment.json").read_text())
    (dst / "experiment.json").write_text(json.dumps({**meta, **meta_changes}))
    return dst


def _rows(out):
    with sqlite3.connect(out / "results.sqlite") as c:
        return {k: (m, s, json.loads(me).get("avg_gap"))
                for k, m, s, me in c.execute("select key, method, seed, metrics from results")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("merge")
    return tmp, _run(tmp, "s0", [0]), _run(tmp, "s1", [1])


def test_merged_runs_equal_one_run_of_all_seeds(runs, capsys):
    tmp, s0, s1 = runs
    merged = tmp / "merged"
    assert main(["merge", str(merged), str(s0), str(s1)]) == 0
    assert "merged 8 rows" in capsys.readouterr().out  # Original, Retrain, RL, GA × 2 seeds
    assert _rows(merged) == {**_rows(s0), **_rows(s1)} and len(_rows(merged)) == 8
    meta = json.loads((merged / "experiment.json").read_text())
    all_seeds = plan(parse_config({**RAW, "seeds": [0, 1]}))
    assert meta["config"]["seeds"] == [0, 1] and sorted(meta["planned_keys"]) == sorted(c.key for c in all_seeds)
    assert len(load_run(merged)[1]) == 8
    # cells store audit data only; the merged run's report step renders one page per row from its store
    assert not (s0 / "audits").exists() and len({p.parent.name for p in (merged / "audits").glob("*/audit.md")}) == 8
    assert "seeds [0, 1]" in (merged / "report.md").read_text()
    # merging again copies nothing and keeps every row once
    assert merge_runs(merged, [s0, s1]) == (0, 8)
    assert len(_rows(merged)) == 8


def test_a_failed_row_never_replaces_a_finished_one(runs, tmp_path):
    _, s0, _ = runs
    broken = _copy_run(s0, tmp_path / "broken")
    with sqlite3.connect(broken / "results.sqlite") as c:
        c.execute("update results set status='failed', error='boom'")
    merged = tmp_path / "m"
    merge_runs(merged, [s0, broken])
    assert set(v for (v,) in sqlite3.connect(merged / "results.sqlite").execute("select status from results")) == {"ok"}


def test_incompatible_runs_are_refused_and_nothing_is_written(runs, tmp_path):
    _, s0, _ = runs
    meta = json.loads((s0 / "experiment.json").read_text())
    other = _copy_run(s0, tmp_path / "lr", config={**meta["config"], "train": {**meta["config"]["train"], "lr": 0.1}})
    merged = tmp_path / "m"
    with pytest.raises(ValueError, match="differ in train"):
        merge_runs(merged, [s0, other])
    assert not merged.exists()
    with pytest.raises(ValueError, match="not a run directory"):
        merge_runs(merged, [s0, tmp_path / "nothing"])
    with pytest.raises(ValueError, match="the output directory itself"):
        merge_runs(s0, [s0])
    renamed = _copy_run(s0, tmp_path / "renamed", name="another")
    with pytest.raises(ValueError, match="holds experiment 'another'"):
        merge_runs(merged, [s0, renamed])
    assert not merged.exists()
