"""A tuning study stopped at any moment (Ctrl-C inside a trial, or a killed process that leaves a
trial running) and resumed picks the same recipe, from the same trials, as one that ran straight
through. The trials are scored by a stand-in objective (a function of the sampled options), so the
test covers the study's bookkeeping in seconds; the real objective is covered in test_tune.py."""
from __future__ import annotations

import math

import optuna
import pytest
import yaml

import forgetkit.bench.runner as runner
import forgetkit.bench.tune as tune_module
from forgetkit.bench.tune import STUDY_FILE, tune

TRIALS = 13  # past TPE's ten random start-up trials, so its model-based draws are covered too

RAW = {"name": "tune-resume", "dataset": "digits", "heldout_fraction": 0.1, "device": "cpu",
       "model": {"name": "mlp"}, "train": {"epochs": 1},
       "requests": [{"kind": "random", "fraction": 0.1},
                    {"kind": "random", "fraction": 0.15, "role": "validation"}],
       "methods": [{"name": "ga"}], "seeds": [0],
       "tune": {"methods": "all", "trials": TRIALS}}


def _score(cfg, out_dir, rule="avg_gap_on_validation") -> float:
    """A bumpy function of the sampled options, with a tie between epochs 3 and 4."""
    options = cfg.methods[0].options
    return round(abs(math.log10(options["lr"]) + 3.2), 1) + abs(min(options["epochs"], 4) - 3.5)


@pytest.fixture()
def stand_in(monkeypatch):
    """Trials that train nothing; ``stand_in.stop_at = {k}`` raises Ctrl-C inside the k-th trial
    started (counted over the whole test)."""
    class StandIn:
        started = 0
        stop_at: set = set()

    def run_experiment(cfg, out_dir, **kwargs):
        StandIn.started += 1
        if StandIn.started in StandIn.stop_at:
            raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_experiment", run_experiment)
    monkeypatch.setattr(tune_module, "trial_score", _score)
    return StandIn


def _study(out):
    return optuna.load_study(study_name="tune-resume/ga", storage=f"sqlite:///{out / STUDY_FILE}")


def _outcome(out) -> tuple[list, dict]:
    done = [t for t in _study(out).trials if t.state == optuna.trial.TrialState.COMPLETE]
    recipe = yaml.safe_load((out / "recipes" / "ga-v1.yaml").read_text())
    del recipe["tuned"]["config_hash"]  # it covers the cache directory, which lies beside each test's output
    return [(t.params, t.value) for t in done], recipe


def _until_done(out, stand_in, stop_at: set[int], kill_after: int | None = None) -> int:
    """Tune, resuming after every interruption; ``kill_after``: after that many interruptions, leave a
    trial running as a killed process would. Returns the interruptions seen."""
    stand_in.stop_at, interruptions = stop_at, 0
    while True:
        try:
            tune(RAW, out)
            return interruptions
        except KeyboardInterrupt:
            interruptions += 1
            if interruptions == kill_after:
                _study(out).ask()  # a trial left RUNNING, never told


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "run_experiment", lambda cfg, out_dir, **kwargs: None)
        mp.setattr(tune_module, "trial_score", _score)
        out = tmp_path_factory.mktemp("straight")
        tune(RAW, out)
        return _outcome(out)


@pytest.mark.parametrize("stops", [{2}, {1, 7}, {5, 12, 14}, {11}], ids=str)
def test_stopped_and_resumed_study_picks_the_same_recipe(stops, straight, stand_in, tmp_path):
    out = tmp_path / "tune"
    assert _until_done(out, stand_in, stops, kill_after=1) == len(stops)
    trials, recipe = _outcome(out)
    assert trials == straight[0]  # the same draws, in the same order, each completed once
    assert recipe == straight[1]
    states = [t.state for t in _study(out).trials]
    assert states.count(optuna.trial.TrialState.FAIL) == len(stops) + 1  # the interrupted ones and the killed one
    assert not (out / "recipes" / "ga-v2.yaml").exists()


def test_ties_go_to_the_trial_asked_for_first(straight):
    trials, recipe = straight
    best = min(value for _, value in trials)
    first = next(params for params, value in trials if value == best)
    assert {k: recipe["options"][k] for k in first} == first


def test_ctrl_c_in_tune_is_one_line_and_exit_130(stand_in, tmp_path, capsys):
    from forgetkit.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(RAW))
    stand_in.stop_at = {2}
    assert main(["tune", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 130
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert lines == [f"forgetkit: interrupted: finished trials are kept in {tmp_path / 'out' / STUDY_FILE}; "
                     "re-run the same command to resume"], captured.err
    assert "Traceback" not in captured.out + captured.err
