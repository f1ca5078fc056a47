"""Files, stores, executors and signals (docs/errors.md, "Files, stores, executors and signals"): a
file that is not what forgetkit wrote is refused with one line naming it and the field or table
at fault, and left byte for byte as it was; nothing is written after a refusal."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from forgetkit.cli import main

TINY = {"name": "files", "dataset": "digits", "train_size": 200, "test_size": 100, "heldout_fraction": 0.1,
        "device": "cpu", "model": {"name": "mlp", "options": {"hidden": 16, "depth": 1}},
        "train": {"epochs": 1, "batch_size": 64}, "requests": [{"kind": "random", "fraction": 0.1}],
        "methods": [{"name": "ga", "options": {"epochs": 1, "lr": 1e-3}}], "seeds": [0]}


def _config(tmp_path, raw=None) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw or TINY))
    return str(path)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line(capsys, fragment: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("forgetkit: "), err
    assert fragment in lines[0], err
    assert "Traceback" not in err and "\x1b[" not in err
    return lines[0]


def _foreign_db(path: Path, wal: bool = False) -> None:
    db = sqlite3.connect(path)
    if wal:
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE photos (id INTEGER, caption TEXT)")
    db.execute("INSERT INTO photos VALUES (1, 'beach')")
    db.commit()
    db.close()


def _run_dir(tmp_path, meta=None) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "experiment.json").write_text(json.dumps(meta or {"name": "x", "config": {}, "planned_keys": []}))
    return run


# -- stores ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, fragment", [
    ("zero-bytes", "is an empty SQLite file, not a results store (it has no table)"),
    ("no-tables", "is an empty SQLite file, not a results store (it has no table)"),
    ("foreign", "is not a forgetkit results store: it holds the table(s) ['photos'], not ['results']"),
    ("foreign-wal", "is not a forgetkit results store: it holds the table(s) ['photos'], not ['results']"),
    ("results-other-columns", "is not a forgetkit results store: its table 'results' lacks the column(s) ['key', 'experiment'"),
])
def test_report_refuses_a_store_it_did_not_write_and_writes_nothing(kind, fragment, tmp_path, capsys):
    run = _run_dir(tmp_path)
    db_path = run / "results.sqlite"
    if kind == "zero-bytes":
        db_path.write_bytes(b"")
    elif kind == "no-tables":
        sqlite3.connect(db_path).execute("PRAGMA user_version = 7").connection.close()
    elif kind == "results-other-columns":
        sqlite3.connect(db_path).execute("CREATE TABLE results (id INTEGER)").connection.close()
    else:
        _foreign_db(db_path, wal=kind == "foreign-wal")
    before = _snapshot(tmp_path)
    assert main(["report", str(run)]) == 2
    _one_line(capsys, f"{db_path} {fragment}")
    assert _snapshot(tmp_path) == before  # no tables added, no report.md, no -wal/-shm beside it


def test_run_refuses_a_foreign_store_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    _foreign_db(out / "results.sqlite")
    cfg = _config(tmp_path)
    before = _snapshot(tmp_path)
    assert main(["run", cfg, "--out", str(out), "--quiet"]) == 2
    _one_line(capsys, "is not a forgetkit results store")
    assert _snapshot(tmp_path) == before  # no experiment.json either


def test_merge_refuses_a_source_whose_store_is_foreign(tmp_path, capsys):
    src = _run_dir(tmp_path)
    _foreign_db(src / "results.sqlite")
    before = _snapshot(tmp_path)
    assert main(["merge", str(tmp_path / "merged"), str(src)]) == 2
    _one_line(capsys, "is not a forgetkit results store")
    assert _snapshot(tmp_path) == before and not (tmp_path / "merged").exists()


def test_tune_refuses_a_foreign_study_file(tmp_path, capsys):
    raw = {**TINY, "requests": TINY["requests"] + [{"kind": "random", "fraction": 0.15, "role": "validation"}],
           "tune": {"methods": "all", "trials": 1}}
    out = tmp_path / "out"
    out.mkdir()
    _foreign_db(out / "tune.sqlite")
    cfg = _config(tmp_path, raw)
    before = _snapshot(tmp_path)
    assert main(["tune", cfg, "--out", str(out), "--quiet"]) == 2
    _one_line(capsys, f"{out / 'tune.sqlite'} is not a forgetkit tuning store (Optuna studies)")
    assert _snapshot(tmp_path) == before


# -- experiment.json ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, fragment", [
    ("{not json", " is not valid JSON (Expecting property name enclosed in double quotes at line 1, column 2)"),
    (json.dumps({"config": {}}), " lacks the field 'name'"),
    (json.dumps(["x"]), " must hold a JSON object, got list"),
    (json.dumps({"name": "x", "config": []}), ": the field 'config' must be a JSON object, got list"),
    (b"\xff\xfe{", " is not valid JSON (it is not UTF-8 text)"),
], ids=["not-json", "no-name", "a-list", "config-not-object", "not-utf8"])
def test_a_broken_experiment_json_is_named_with_its_field(text, fragment, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    path = run / "experiment.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    sqlite3.connect(run / "results.sqlite").close()
    before = _snapshot(tmp_path)
    assert main(["report", str(run)]) == 2
    _one_line(capsys, f"{path}{fragment}")
    assert _snapshot(tmp_path) == before


def test_leaderboard_names_a_broken_experiment_json(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "experiment.json").write_text("{")
    assert main(["report", "--leaderboard", str(run), "--out", str(tmp_path / "lb.md")]) == 2
    _one_line(capsys, f"{run / 'experiment.json'} is not valid JSON")
    assert not (tmp_path / "lb.md").exists()


def test_run_into_a_directory_with_a_broken_experiment_json(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "experiment.json").write_text('{"name": "files", "config": ')
    assert main(["run", _config(tmp_path), "--out", str(out), "--quiet"]) == 2
    _one_line(capsys, f"{out / 'experiment.json'} is not valid JSON")
    assert sorted(p.name for p in out.iterdir()) == ["experiment.json"]


# -- executors ------------------------------------------------------------------------------------

def _unreachable_ray(monkeypatch):
    fake = types.ModuleType("ray")
    fake.is_initialized = lambda: False

    def init(address=None, **kwargs):
        raise ConnectionError(f"Could not connect to the GCS at {address}\nretried 10 times")

    fake.init = init
    monkeypatch.setitem(sys.modules, "ray", fake)


def test_ray_that_cannot_connect_writes_no_run_directory(tmp_path, capsys, monkeypatch):
    _unreachable_ray(monkeypatch)
    out = tmp_path / "out"
    args = ["run", _config(tmp_path), "--out", str(out), "--quiet", "--executor", "ray", "--address", "10.0.0.9:6379"]
    assert main(args) == 2
    line = _one_line(capsys, "the ray executor cannot reach the Ray cluster at 10.0.0.9:6379 (ConnectionError: "
                             "Could not connect to the GCS at 10.0.0.9:6379); nothing was written")
    assert "retried" not in line
    assert not out.exists() and _snapshot(tmp_path).keys() == {"c.yaml"}


def test_address_without_the_ray_executor_is_refused_before_writing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", _config(tmp_path), "--out", str(out), "--quiet", "--address", "10.0.0.9:6379"]) == 2
    _one_line(capsys, "the local executor takes no options, got ['address'] (--address goes with --executor ray)")
    assert not out.exists()


# -- signals --------------------------------------------------------------------------------------

def _cli(tmp_path, *args, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-m", "forgetkit.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


def test_sigterm_mid_run_is_one_line_and_exit_143(tmp_path):
    raw = {**TINY, "seeds": list(range(3)), "methods": [{"name": "ft", "options": {"epochs": 30}}]}
    out = tmp_path / "out"
    p = _cli(tmp_path, "run", _config(tmp_path, raw), "--out", str(out))
    try:
        line = ""
        while not line.startswith("[1/"):
            line = p.stdout.readline()
            assert line, f"run ended before its first cell: {p.stderr.read()}"
        p.terminate()
        _, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 143, err
    assert err.strip().splitlines() == [f"forgetkit: terminated: finished rows are kept in {out / 'results.sqlite'}; "
                                        "re-run the same command to resume"]


def test_real_sigint_during_tune_is_one_line_and_the_trial_is_stored_failed(tmp_path):
    """The case Optuna used to answer with a long logged traceback: Ctrl-C inside a trial."""
    raw = {**TINY, "requests": TINY["requests"] + [{"kind": "random", "fraction": 0.15, "role": "validation"}],
           "methods": [{"name": "ft", "options": {"epochs": 60}}], "tune": {"methods": "all", "trials": 2}}
    out = tmp_path / "out"
    p = _cli(tmp_path, "tune", _config(tmp_path, raw), "--out", str(out))
    try:
        line = ""
        while not line.startswith("[1/"):  # a trial's first reference model is done: the trial is running
            line = p.stdout.readline()
            assert line, f"tune ended before its first trial: {p.stderr.read()}"
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert err.strip().splitlines() == [f"forgetkit: interrupted: finished trials are kept in {out / 'tune.sqlite'}; "
                                        "re-run the same command to resume"]
    states = [s for (s,) in sqlite3.connect(out / "tune.sqlite").execute("SELECT state FROM trials")]
    assert states == ["FAIL"]


def test_a_reader_that_leaves_the_pipe_gets_no_traceback(tmp_path):
    p = _cli(tmp_path, "methods")
    p.stdout.close()  # `forgetkit methods | head -0`: the reader is gone before the first line
    err = p.stderr.read()
    p.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err and err.strip() == "", err


def test_a_reader_never_creates_a_store(tmp_path):
    from forgetkit.bench.store import ResultStore

    with pytest.raises(FileNotFoundError, match="no results store at"):
        ResultStore(tmp_path / "run" / "results.sqlite", create=False)
    (tmp_path / "empty.sqlite").write_bytes(b"")
    with pytest.raises(ValueError, match="is an empty SQLite file, not a results store"):
        ResultStore(tmp_path / "empty.sqlite", create=False)
    assert _snapshot(tmp_path) == {"empty.sqlite": b""} and not (tmp_path / "run").exists()
    _foreign_db(tmp_path / "theirs.sqlite")
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match="is not a forgetkit results store"):
        ResultStore(tmp_path / "theirs.sqlite")  # a writer too
    assert _snapshot(tmp_path) == before


def test_a_directory_where_a_file_belongs(tmp_path, capsys):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "run" / "experiment.json").mkdir(parents=True)
    assert main(["report", str(tmp_path / "run")]) == 2
    _one_line(capsys, f"{tmp_path / 'run' / 'experiment.json'} is a directory, not a file; give the file")
    args = ["evaluate", f"m={tmp_path / 'cfg'}", "--model", "mlp", "--forget", str(tmp_path / "cfg"),
            "--retain", str(tmp_path / "cfg"), "--test", str(tmp_path / "cfg")]
    assert main(args) == 2
    _one_line(capsys, f"forget file '{tmp_path / 'cfg'}' is a directory; give the file itself")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["cfg", "run", "run/experiment.json"]


@pytest.mark.parametrize("sig, status, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGHUP, 129, "terminated"),
                                               (signal.SIGINT, 130, "interrupted")], ids=["term", "hup", "int"])
def test_signals_end_a_command_with_one_line(sig, status, word, monkeypatch, capsys):
    import forgetkit.cli.methods as methods

    def signalled(args):
        os.kill(os.getpid(), sig)
        pytest.fail("the signal did not interrupt the command")

    monkeypatch.setattr(methods, "methods", signalled)
    assert main(["methods"]) == status
    _one_line(capsys, f"forgetkit: {word}: nothing was left half-written; re-run the same command to resume")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored after the command


def test_an_ignored_hangup_stays_ignored(monkeypatch):
    import forgetkit.cli.methods as methods

    monkeypatch.setattr(methods, "methods", lambda args: os.kill(os.getpid(), signal.SIGHUP) or 0)
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        assert main(["methods"]) == 0
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_store_held_by_another_process_says_so():
    from forgetkit.cli import error_message

    text = error_message(sqlite3.OperationalError("database is locked"), Path("out/results.sqlite"))
    assert text == ("the store out/results.sqlite is held by another process (database is locked); wait for it to "
                    "finish and re-run")


def test_a_damaged_row_is_named_by_store_and_key(tmp_path, capsys):
    from forgetkit.bench.store import ResultStore

    run = _run_dir(tmp_path, {"name": "x", "config": {}, "planned_keys": ["k1"]})
    with ResultStore(run / "results.sqlite") as store:
        store.put(key="k1", experiment="x", method="GA", weighting="uniform", request="r", seed=0, status="ok",
                  metrics={"FA": 1.0}, params={}, provenance={})
    db = sqlite3.connect(run / "results.sqlite")
    db.execute("UPDATE results SET metrics = '{\"FA\": 1.' WHERE key = 'k1'")
    db.commit()
    db.close()
    assert main(["report", str(run)]) == 2
    _one_line(capsys, f"{run / 'results.sqlite'}: the metrics of row k1 is damaged (not JSON: ")
    assert not (run / "report.md").exists()


def test_tune_checks_its_recipes_directory_before_the_trials(tmp_path, capsys):
    (tmp_path / "recipes").write_text("a file")
    raw = {**TINY, "requests": TINY["requests"] + [{"kind": "random", "fraction": 0.15, "role": "validation"}],
           "tune": {"methods": "all", "trials": 1, "recipes": str(tmp_path / "recipes")}}
    cfg = _config(tmp_path, raw)
    assert main(["tune", cfg, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    _one_line(capsys, f"tune.recipes {tmp_path / 'recipes'} is a file, not a directory")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("options, fragment", [
    ({"gpu_per_task": 1}, "executor_options: unknown option(s) ['gpu_per_task']; the ray executor takes address, "
                          "cpus_per_task, gpus_per_task, max_retries"),
    ({"cpus_per_task": 0}, "executor_options.cpus_per_task: expected a number > 0, got 0"),
    ({"max_retries": 1.5}, "executor_options.max_retries: expected an integer >= 0, got 1.5"),
], ids=["unknown", "zero-cpus", "fractional-retries"])
def test_ray_options_are_checked_before_anything_is_written(options, fragment, tmp_path, monkeypatch):
    from forgetkit.bench.config import parse_config
    from forgetkit.bench.runner import run_experiment

    _unreachable_ray(monkeypatch)  # never reached: the options are refused first
    with pytest.raises(ValueError) as err:
        run_experiment(parse_config(TINY), tmp_path / "out", show_progress=False, executor="ray",
                       executor_options=options)
    assert fragment in str(err.value)
    assert list(tmp_path.iterdir()) == []
