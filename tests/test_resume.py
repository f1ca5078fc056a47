"""A real sweep killed with SIGKILL at several points finishes, once restarted, with no lost or
duplicated row and no corrupt cache entry; a diverging run is a failed row and the sweep goes on."""
from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from forgetkit.bench.config import parse_config, smoke
from forgetkit.bench.runner import plan, run_experiment

RAW = {"name": "resume", "dataset": "digits", "heldout_fraction": 0.1, "device": "cpu",
       "model": {"name": "mlp"}, "train": {"epochs": 2, "lr": 0.05, "batch_size": 32},
       "requests": [{"kind": "random", "fraction": 0.1}, {"kind": "class", "classes": [3]}],
       "methods": [{"name": "ft", "options": {"epochs": 1, "lr": 0.02}},
                   {"name": "rl", "options": {"epochs": 1, "lr": 0.01}}],
       "seeds": [0]}


def _row_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet
        return 0


def _run_until(cfg_path: Path, out: Path, cache: Path, stop) -> int:
    """Start ``forgetkit run --smoke``; SIGKILL it as soon as ``stop()`` is true. Returns the exit code."""
    proc = subprocess.Popen([sys.executable, "-m", "forgetkit.cli", "run", str(cfg_path), "--smoke",
                             "--out", str(out), "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while proc.poll() is None:
        if stop is not None and stop():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read().decode()[-2000:]
    return proc.returncode


def test_sigkill_at_several_points_then_resume(tmp_path):
    cfg_path, out, cache = tmp_path / "sweep.yaml", tmp_path / "out", tmp_path / ".forgetkit-cache"
    cfg_path.write_text(yaml.safe_dump(RAW))
    db = out / "results.sqlite"
    deadline = random.Random(7).uniform(0.5, 2.0)
    started = {}

    kill_points = [
        # during reference training: the original is cached, the retrained models are not yet
        lambda: len(list(cache.glob("*.pt"))) >= 1 and _row_count(db) == 0,
        # after a few rows
        lambda: _row_count(db) >= 2,
        # a seeded random moment once rows flow again
        lambda: _row_count(db) >= 3 and time.monotonic() - started.setdefault("t", time.monotonic()) > deadline,
    ]
    codes = [_run_until(cfg_path, out, cache, stop) for stop in kill_points]
    assert codes[0] == -signal.SIGKILL, "the first run should have been killed while training"
    assert _run_until(cfg_path, out, cache, None) == 0

    expected = {c.key for c in plan(parse_config(smoke(RAW)))}
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        keys = [k for (k,) in con.execute("SELECT key FROM results")]
        statuses = {s for (s,) in con.execute("SELECT status FROM results")}
        orphans = con.execute("SELECT COUNT(*) FROM artifacts WHERE key NOT IN (SELECT key FROM results)").fetchone()[0]
    assert len(keys) == len(set(keys)), "duplicated rows"
    assert set(keys) == expected, "lost or extra rows"
    assert statuses == {"ok"} and orphans == 0
    checkpoints = list(cache.glob("*.pt"))
    assert len(checkpoints) == 3  # original + one retrained per request
    for p in checkpoints:
        assert torch.load(p, map_location="cpu", weights_only=True), p


def test_divergence_is_a_failed_row_and_the_sweep_continues(tmp_path):
    raw = {**smoke(RAW), "name": "diverge", "requests": RAW["requests"][:1],
           "methods": [{"name": "ga", "label": "ga-absurd", "options": {"epochs": 3, "lr": 1.0e9, "batch_size": 16}},
                       {"name": "ft", "options": {"epochs": 1, "lr": 0.02}}]}
    run_experiment(parse_config(raw), tmp_path / "out", show_progress=False)
    with sqlite3.connect(tmp_path / "out" / "results.sqlite") as con:
        rows = {m: (s, e) for m, s, e in con.execute("SELECT method, status, error FROM results")}
    assert rows["ga-absurd"][0] == "failed"
    assert rows["ga-absurd"][1].startswith("DivergenceError: diverged at step ")
    assert {m: s for m, (s, _) in rows.items() if m != "ga-absurd"} == {"original": "ok", "retrain": "ok", "ft": "ok"}
