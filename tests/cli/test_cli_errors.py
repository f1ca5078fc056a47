"""What the command line prints when things go wrong (docs/errors.md, "Command line"): one line
``forgetkit: error: ...`` and exit 2 for a bad input or a fault, exit 1 when cells failed, 130 on
Ctrl-C — never a traceback — and nothing written before the check that refuses."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

from forgetkit.cli import main

TINY = {"name": "cli", "dataset": "digits", "train_size": 200, "test_size": 100, "heldout_fraction": 0.1,
        "device": "cpu", "model": {"name": "mlp", "options": {"hidden": 16, "depth": 1}},
        "train": {"epochs": 1, "batch_size": 64}, "requests": [{"kind": "random", "fraction": 0.1}],
        "methods": [{"name": "ga", "options": {"epochs": 1, "lr": 1e-3}}], "seeds": [0]}


def _config(tmp_path, raw=None, name="c.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw or TINY))
    return str(path)


def _files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _one_error_line(capsys, fragment: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("forgetkit: "), err
    assert fragment in lines[0], err
    assert "Traceback" not in err
    return lines[0]


# -- where results go -------------------------------------------------------------------------------

def test_out_that_is_a_file(tmp_path, capsys):
    cfg = _config(tmp_path)
    (tmp_path / "out").write_text("mine")
    assert main(["run", cfg, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    _one_error_line(capsys, f"--out {tmp_path / 'out'} is a file, not a directory")
    assert _files(tmp_path) == ["c.yaml", "out"] and (tmp_path / "out").read_text() == "mine"


def test_out_under_a_file(tmp_path, capsys):
    cfg = _config(tmp_path)
    (tmp_path / "f").write_text("")
    assert main(["run", cfg, "--out", str(tmp_path / "f" / "run"), "--quiet"]) == 2
    _one_error_line(capsys, f"cannot be created: {tmp_path / 'f'} is a file")
    assert _files(tmp_path) == ["c.yaml", "f"]


def test_cache_dir_that_is_a_file_fails_before_experiment_json(tmp_path, capsys):
    (tmp_path / "cache").write_text("")
    cfg = _config(tmp_path, {**TINY, "cache_dir": str(tmp_path / "cache")})
    assert main(["run", cfg, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    _one_error_line(capsys, f"cache_dir {tmp_path / 'cache'} is a file, not a directory")
    assert _files(tmp_path) == ["c.yaml", "cache"]


_UNPRIVILEGED = """
import sys
from forgetkit.bench.store import check_output_paths
try:
    check_output_paths(sys.argv[1], None)
except ValueError as e:
    print(e)
"""


def test_read_only_out(tmp_path):
    """Without root's capabilities (root may write anywhere), so the permission bits apply."""
    import shutil

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv to drop capabilities")
        prefix = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    out = subprocess.run([*prefix, sys.executable, "-c", _UNPRIVILEGED, str(ro / "run")], capture_output=True,
                         text=True, timeout=120)
    assert f"--out {ro / 'run'} is read-only (its nearest existing parent {ro} is not writable)" in out.stdout, out
    assert list(ro.iterdir()) == []


# -- faults while running ---------------------------------------------------------------------------

def test_full_disk_is_one_line_and_finished_rows_are_kept(tmp_path, capsys, monkeypatch):
    """SQLite's real "database or disk is full" after the first row (a page limit stands in for the disk)."""
    from forgetkit.bench.store import ResultStore

    real_put = ResultStore.put
    calls = []

    def put_then_fill(self, **row):
        real_put(self, **row)
        calls.append(row["key"])
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        self._db.execute(f"PRAGMA max_page_count={pages}")  # the disk is now full

    monkeypatch.setattr(ResultStore, "put", put_then_fill)
    raw = {**TINY, "train_size": 1000, "requests": [{"kind": "random", "fraction": 0.3}]}  # rows of ~20 kB
    out = tmp_path / "out"
    code = main(["run", _config(tmp_path, raw), "--out", str(out), "--quiet"])
    assert code == 2
    _one_error_line(capsys, f"disk full while writing {out / 'results.sqlite'}; finished rows are kept; "
                            "free space and re-run")
    monkeypatch.undo()
    kept = sqlite3.connect(out / "results.sqlite").execute("SELECT key FROM results").fetchall()
    assert [k for (k,) in kept] == calls[:1]


def test_full_disk_from_any_writer_names_its_file(tmp_path, capsys, monkeypatch):
    import errno

    import forgetkit.bench.runner as runner

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "report.md"))

    monkeypatch.setattr(runner, "run_experiment", full)
    assert main(["run", _config(tmp_path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    _one_error_line(capsys, f"disk full while writing {tmp_path / 'out' / 'report.md'}")


def test_corrupted_results_store(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.sqlite").write_bytes(os.urandom(3000))
    before = (out / "results.sqlite").read_bytes()
    assert main(["run", _config(tmp_path), "--out", str(out), "--quiet"]) == 2
    _one_error_line(capsys, f"{out / 'results.sqlite'} is not a readable results store")
    assert (out / "results.sqlite").read_bytes() == before


def test_ctrl_c_is_one_line_and_a_rerun_resumes(tmp_path, capsys, monkeypatch):
    from forgetkit.bench.store import ResultStore

    real_put = ResultStore.put

    def put_then_interrupt(self, **row):
        real_put(self, **row)
        raise KeyboardInterrupt

    monkeypatch.setattr(ResultStore, "put", put_then_interrupt)
    out, cfg = tmp_path / "out", _config(tmp_path)
    assert main(["run", cfg, "--out", str(out), "--quiet"]) == 130
    _one_error_line(capsys, f"interrupted: finished rows are kept in {out / 'results.sqlite'}; "
                            "re-run the same command to resume")
    monkeypatch.undo()
    assert main(["run", cfg, "--out", str(out), "--quiet"]) == 0
    keys = [k for (k,) in sqlite3.connect(out / "results.sqlite").execute("SELECT key FROM results")]
    assert len(keys) == len(set(keys)) == 3  # retrain, original, ga: each exactly once


def test_failed_cells_exit_1_with_a_summary(tmp_path, capsys):
    raw = {**TINY, "methods": [{"name": "ga", "label": "GA-explode", "options": {"epochs": 1, "lr": 1e12}}]}
    assert main(["run", _config(tmp_path, raw), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "report: " in captured.out
    summary = [line for line in captured.err.splitlines() if "cells failed" in line]
    assert len(summary) == 1 and summary[0].startswith("forgetkit: 1 of 3 cells failed: GA-explode")
    assert "diverged" in summary[0]


# -- tune --trials ----------------------------------------------------------------------------------

@pytest.mark.parametrize("trials", ["0", "-3"])
def test_tune_trials_must_be_positive(tmp_path, capsys, trials):
    raw = {**TINY, "requests": TINY["requests"] + [{"kind": "random", "fraction": 0.1, "role": "validation"}],
           "tune": {"method": "ga", "space": {"lr": {"low": 1e-4, "high": 1e-2}}, "trials": 2}}
    assert main(["tune", _config(tmp_path, raw), "--out", str(tmp_path / "t"), "--trials", trials, "--quiet"]) == 2
    _one_error_line(capsys, f"--trials must be a positive number of trials, got {trials}")
    assert _files(tmp_path) == ["c.yaml"]  # no tune.sqlite, no output directory


def test_tune_api_refuses_zero_trials_before_writing(tmp_path):
    from forgetkit.bench.tune import tune

    with pytest.raises(ValueError, match="--trials must be a positive number of trials, got 0"):
        tune({}, tmp_path / "t", n_trials=0)
    assert not (tmp_path / "t").exists()


# -- config mistakes seen from the command line -----------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["--set", "methods.4.options.lr=1"], "--set methods.4.options.lr: methods has 1 entries"),
    (["--set", "train.epochs.lr=1"], "train.epochs is 1 (int), not a mapping"),
    (["--set", "methods.lr=1"], "methods is a list; pick an entry by its index"),
    (["--set", "methods.0.options.lr=fast"], "methods.0.options.lr: expected float, got 'fast' (str)"),
    (["--set", "model.options.depth=-1"], "model.options.depth: mlp needs an integer >= 0, got -1"),
], ids=["set-index-out-of-range", "set-key-into-number", "set-word-key-into-list", "set-wrong-type",
        "negative-depth"])
def test_cli_config_errors(tmp_path, capsys, args, fragment):
    assert main(["run", _config(tmp_path), "--out", str(tmp_path / "out"), "--quiet", *args]) == 2
    _one_error_line(capsys, fragment)
    assert not (tmp_path / "out").exists()


def test_cli_duplicate_key(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(TINY) + "seeds: [1]\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    _one_error_line(capsys, "duplicate key 'seeds' at line")


# -- one run per output directory -------------------------------------------------------------------

_HOLDER = ("import sys, time\nfrom forgetkit.locks import DirectoryLock\n"
           "with DirectoryLock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(float(sys.argv[2]))\n")


def _holder(out, seconds: float) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_second_run_on_the_same_out_refuses_naming_the_first(tmp_path, capsys):
    out = tmp_path / "out"
    holder = _holder(out, 60)
    try:
        start = time.perf_counter()
        assert main(["run", _config(tmp_path), "--out", str(out), "--quiet"]) == 2
        assert time.perf_counter() - start < 30
        line = _one_error_line(capsys, f"{out} is in use by another forgetkit run (pid {holder.pid}, started ")
        assert "command: " in line and "--wait" in line
        assert not (out / "results.sqlite").exists() and not (out / "experiment.json").exists()
    finally:
        holder.kill()
        holder.wait()


def test_wait_starts_when_the_holder_finishes(tmp_path):
    from forgetkit.locks import DirectoryLock

    out = tmp_path / "out"
    holder = _holder(out, 1.0)
    seen = []
    start = time.perf_counter()
    with DirectoryLock(out, wait=True, on_wait=seen.append):
        assert time.perf_counter() - start > 0.5  # blocked until the holder let go
        assert json.loads((out / ".forgetkit.lock").read_text())["pid"] == os.getpid()
    holder.wait()
    assert seen and seen[0]["pid"] == holder.pid
    assert not out.exists()  # an empty directory made only for the lock is removed


def test_cli_wait_flag_runs_after_the_holder(tmp_path, capsys):
    out = tmp_path / "out"
    holder = _holder(out, 1.0)
    assert main(["run", _config(tmp_path), "--out", str(out), "--quiet", "--wait"]) == 0
    assert f"waiting for the run holding {out} (pid {holder.pid}" in capsys.readouterr().err
    holder.wait()
    assert (out / "results.sqlite").exists() and not (out / ".forgetkit.lock").exists()


def test_lock_of_a_killed_run_is_taken_over(tmp_path):
    from forgetkit.locks import DirectoryLock

    out = tmp_path / "out"
    holder = _holder(out, 60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    stale = json.loads((out / ".forgetkit.lock").read_text())
    assert stale["pid"] == holder.pid  # the dead run's record is still there
    with DirectoryLock(out):
        assert json.loads((out / ".forgetkit.lock").read_text())["pid"] == os.getpid()
    assert not (out / ".forgetkit.lock").exists()


# -- progress off a terminal ------------------------------------------------------------------------

def test_plain_progress_lines_when_not_a_tty(capsys):
    from forgetkit.bench.progress import Progress

    with Progress(True, tty=False) as prog:
        task = prog.overall(2)
        train = prog.steps("training")
        prog.describe(task, "Retrain seed 0")
        for s in range(1, 4):
            train(s, 3)
        prog.advance(task)
        prog.note("model trained in 0.1 s")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "2 cells, 0 already in the store"
    assert lines[1].startswith("  training: 3 steps in ") and lines[1].endswith(" s")
    assert lines[2].startswith("[1/2] Retrain seed 0: finished in ")
    assert lines[3] == "model trained in 0.1 s"


def test_quiet_progress_prints_nothing(capsys):
    from forgetkit.bench.progress import Progress

    with Progress(False, tty=False) as prog:
        task = prog.overall(2)
        prog.advance(task)
        assert prog.steps("x") is None
    assert capsys.readouterr().out == ""


def test_real_sigint_mid_run_is_one_line_and_plain_progress_reached_the_pipe(tmp_path):
    """A real ``forgetkit run`` with stdout a pipe: plain progress lines arrive as cells finish, and
    SIGINT after the first one ends it with the one-line message and status 130."""
    raw = {**TINY, "seeds": list(range(3)), "methods": [{"name": "ga", "options": {"epochs": 3}},
                                                         {"name": "ft", "options": {"epochs": 30}}]}
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # pytest-xdist workers ignore SIGINT, and a child inherits that (Python then installs no
    # KeyboardInterrupt handler): restore the default, as in a user's shell
    p = subprocess.Popen([sys.executable, "-m", "forgetkit.cli", "run", _config(tmp_path, raw), "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines = []
        while not any(line.startswith("[1/") for line in lines):
            line = p.stdout.readline()
            assert line, f"run ended before its first cell: {p.stderr.read()}"
            lines.append(line)
        p.send_signal(signal.SIGINT)
        rest, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert err.strip().splitlines() == [f"forgetkit: interrupted: finished rows are kept in {out / 'results.sqlite'}; "
                                        "re-run the same command to resume"]
    assert lines[0].startswith("12 cells, 0 already in the store")
    n = sqlite3.connect(out / "results.sqlite").execute("SELECT count(*) FROM results").fetchone()[0]
    assert 1 <= n < 12


@pytest.mark.parametrize("recipe, fragment", [
    (None, "recipe {dir}/r.yaml does not exist"),
    ("method: ga\noptions: {lr: 0.1}\n", "recipe {dir}/r.yaml lacks the field(s) ['label']"),
    ("method: ga\nlabel: ga\noptions: 3\n", "options must be a mapping, got 3"),
    ("method: ga\nlabel: GA-tuned\noptions: {lr: 0.1}\n", "the config has no method labelled 'GA-tuned'"),
    ("method: ga\nlabel: ga\noptions: {lr: fast}\n", "methods.0.options.lr: expected float, got 'fast' (str)"),
], ids=["recipe-missing", "recipe-without-label", "recipe-options-not-mapping", "recipe-label-not-in-config",
        "recipe-option-wrong-type"])
def test_bad_recipe(tmp_path, capsys, recipe, fragment):
    if recipe is not None:
        (tmp_path / "r.yaml").write_text(recipe)
    args = ["run", _config(tmp_path), "--out", str(tmp_path / "out"), "--quiet", "--recipe", str(tmp_path / "r.yaml")]
    assert main(args) == 2
    _one_error_line(capsys, fragment.format(dir=tmp_path))
    assert not (tmp_path / "out").exists()
