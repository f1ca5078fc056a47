"""``tune`` selects on the validation request only, picks the best trial's settings, states the rule,
space and trial count, and saves a recipe that ``run`` can apply."""
from __future__ import annotations

import math

import optuna
import pytest
import yaml

from forgetkit.bench.config import parse_config
from forgetkit.bench.grid import plan
from forgetkit.bench.store import ResultStore
from forgetkit.bench.tune import apply_recipe, prepare, split_tune, trial_score, tune, validation_config

RAW = {"name": "tune-test", "dataset": "digits", "heldout_fraction": 0.1, "device": "cpu",
       "model": {"name": "mlp"}, "train": {"epochs": 2, "lr": 0.05, "batch_size": 64},
       "requests": [{"kind": "random", "fraction": 0.1},
                    {"kind": "random", "fraction": 0.15, "role": "validation"}],
       "methods": [{"name": "ga", "options": {"epochs": 1, "lr": 1e-4}}],
       "seeds": [0],
       "tune": {"method": "ga", "space": {"lr": {"low": 1e-5, "high": 1e-2, "log": True},
                                          "epochs": {"choices": [1, 2]}}, "trials": 3}}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("tune")
    return out, tune(RAW, out, smoke=True)


def test_selection_never_sees_the_reported_request(tuned):
    out, _ = tuned
    with ResultStore(out / "trials" / "results.sqlite") as store:
        assert {r["request"] for r in store.rows()} == {"random0.15"}
    with ResultStore(out / "final" / "results.sqlite") as store:
        assert {r["request"] for r in store.rows()} == {"random0.1"}


def test_chosen_params_are_the_best_trials(tuned):
    out, _ = tuned
    study = optuna.load_study(study_name="tune-test/ga", storage=f"sqlite:///{out / 'tune.sqlite'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3
    _, raw, mi = prepare(RAW, out, smoke=True)
    for t in done:  # each trial's value is the rule recomputed from its stored validation rows
        assert math.isclose(trial_score(validation_config(raw, mi, t.params), out / "trials"), t.value)
    best = min(done, key=lambda t: t.value)
    with ResultStore(out / "final" / "results.sqlite") as store:
        ga = [r for r in store.rows() if r["method"] == "GA"]
    assert len(ga) == 1 and ga[0]["status"] == "ok"
    assert {k: ga[0]["params"][k] for k in best.params} == best.params


def test_report_and_recipe(tuned):
    out, report = tuned
    text = report.read_text()
    assert "avg_gap_on_validation" in text and '"lr"' in text and "Trials: 3 completed" in text
    recipe = yaml.safe_load((out / "recipes" / "ga-v1.yaml").read_text())
    assert recipe["version"] == 1 and recipe["tuned"]["trials"] == 3
    assert recipe["tuned"]["rule"] == "avg_gap_on_validation" and len(recipe["tuned"]["config_hash"]) == 16
    _, raw = split_tune(RAW)
    applied = parse_config(apply_recipe(raw, out / "recipes" / "ga-v1.yaml"))
    assert applied.methods[0].options == recipe["options"]


def test_resume_adds_only_missing_trials(tuned):
    out, _ = tuned
    tune(RAW, out, n_trials=4, smoke=True)
    study = optuna.load_study(study_name="tune-test/ga", storage=f"sqlite:///{out / 'tune.sqlite'}")
    assert len(study.trials) == 4
    assert not (out / "recipes" / "ga-v3.yaml").exists()


def test_bad_tune_sections(tmp_path):
    for bad, fragment in [({"method": "nope", "space": {"lr": {"low": 1, "high": 2}}}, "is not a method label"),
                          ({"method": "ga", "space": {"nope": {"low": 1, "high": 2}}}, "has no such option"),
                          ({"method": "ga", "space": {"lr": {"low": 1e-4, "high": 1e-2}}, "rule": "x"}, "unknown rule"),
                          ({"method": "ga", "space": {"lr": {"low": 1e-4, "high": 1e-2}}, "budget": 3}, "unknown field")]:
        with pytest.raises(ValueError, match=fragment):
            tune({**RAW, "tune": bad}, tmp_path / "out")
    no_validation = {**RAW, "requests": RAW["requests"][:1]}
    with pytest.raises(ValueError, match="role: validation"):
        tune(no_validation, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert {c.request for c in plan(parse_config(split_tune(RAW)[1]))} == {0}  # run skips validation
