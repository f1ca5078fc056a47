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
    _, raw, spaces = prepare(RAW, out, smoke=True)
    (mi,) = spaces
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
    assert "## ga" in text and "final/report.md" in text
    recipe = yaml.safe_load((out / "recipes" / "ga-v1.yaml").read_text())
    assert recipe["version"] == 1 and recipe["tuned"]["trials"] == 3
    assert recipe["tuned"]["rule"] == "avg_gap_on_validation" and len(recipe["tuned"]["config_hash"]) == 16
    validation = [{k: v for k, v in r.items() if k not in ("name", "role")} for r in RAW["requests"]
                  if r.get("role") == "validation"]
    assert [{k: r[k] for k in v} for r, v in zip(recipe["tuned"]["validation_requests"], validation)] == validation
    assert all("role" not in r for r in recipe["tuned"]["validation_requests"])
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
                          ({"method": "ga", "space": {"lr": {"low": 1e-4, "high": 1e-2}}, "budget": 3}, "unknown field"),
                          ({"methods": "all", "method": "ga"}, "either 'method'"),
                          ({"methods": ["nope"]}, "are not method labels"),
                          ({"methods": "all", "space": {"lr": {"low": 1, "high": 2}}}, "goes with a single"),
                          ({"methods": "all", "seeds": [0]}, "also reported seeds"),
                          ({"methods": "all", "seeds": "x"}, "list of integer seeds")]:
        with pytest.raises(ValueError, match=fragment):
            tune({**RAW, "tune": bad}, tmp_path / "out")
    no_validation = {**RAW, "requests": RAW["requests"][:1]}
    with pytest.raises(ValueError, match="role: validation"):
        tune(no_validation, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert {c.request for c in plan(parse_config(split_tune(RAW)[1]))} == {0}  # run skips validation


LEADERBOARD = {**{k: v for k, v in RAW.items() if k != "tune"},
               "name": "lb-test",
               "requests": [{"kind": "random", "fraction": 0.1, "name": "random 10 %"},
                            {"kind": "class", "classes": [1], "name": "one class"},
                            {"kind": "random", "fraction": 0.15, "role": "validation"},
                            {"kind": "class", "classes": [2], "role": "validation"}],
               "methods": [{"name": "ga", "options": {"epochs": 1}}, {"name": "svd"}],
               "metrics": {"extra": ["mia_nn", "js_divergence"], "extra_options": {"mia_nn": {"references": 2}},
                           "audit": True},
               "seeds": [0]}


def test_every_method_gets_the_same_budget_and_a_tuned_row(tmp_path):
    recipes = tmp_path / "recipes"
    raw = {**LEADERBOARD, "tune": {"methods": "all", "trials": 2, "seeds": [100], "recipes": str(recipes),
                                   "rule": "avg_gap_and_mia_nn_on_validation"}}
    report = tune(raw, tmp_path / "tune", n_trials=2)
    text = report.read_text()
    assert "## ga" in text and "## svd" in text and text.count("Trials: 2 completed") == 2
    assert sorted(p.name for p in recipes.iterdir()) == ["ga-v1.yaml", "svd-v1.yaml"]
    assert set(yaml.safe_load((recipes / "ga-v1.yaml").read_text())["options"]) >= {"lr", "epochs"}
    with ResultStore(tmp_path / "tune" / "trials" / "results.sqlite") as store:
        trial_rows = store.rows()
    assert {r["seed"] for r in trial_rows} == {100}
    assert {r["request"] for r in trial_rows if r["method"] == "SVD"} == {"class2"}
    assert {r["request"] for r in trial_rows} & {"random 10 %", "one class"} == set()
    methods = [r for r in trial_rows if r["method"] in ("GA", "SVD")]
    assert all("MIA_NN_gap" in r["metrics"] for r in methods if r["request"].startswith("class"))
    assert not any("JS_retrain" in r["metrics"] for r in methods)  # trials compute what the rule reads
    assert not (tmp_path / "tune" / "trials" / "audits").exists()

    from forgetkit.bench.tune import with_tuned_rows
    labels = [m["label"] for m in with_tuned_rows(raw)["methods"] if "label" in m]
    assert labels == ["GA-tuned", "SVD-tuned"]
    assert "tune" not in with_tuned_rows(raw)


def test_trial_score_adds_the_mia_nn_gap_on_class_requests():
    from forgetkit.bench.tune import row_score

    assert row_score({"AvgGap": 2.0, "MIA_NN_gap": 7.0}, "class", "avg_gap_and_mia_nn_on_validation") == 3.0
    assert row_score({"AvgGap": 2.0, "MIA_NN_gap": 7.0}, "random", "avg_gap_and_mia_nn_on_validation") == 2.0
    assert row_score({"AvgGap": 2.0, "MIA_NN_gap": 7.0}, "class", "avg_gap_on_validation") == 2.0
    assert math.isinf(row_score({"AvgGap": 2.0}, "class", "avg_gap_and_mia_nn_on_validation"))


def test_integer_ranges_are_sampled_as_integers_on_a_log_scale_too():
    from forgetkit.bench.tune import _suggest

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    value = _suggest(trial, "n_iters", {"low": 100, "high": 1500, "log": True})
    assert isinstance(value, int) and 100 <= value <= 1500
    assert isinstance(_suggest(trial, "lr", {"low": 1e-3, "high": 1e-1, "log": True}), float)


def test_a_recipe_is_refused_once_a_default_it_did_not_pin_has_changed(tmp_path):
    from forgetkit.bench.tune import method_defaults, save_recipe
    from forgetkit.methods.ga import GA

    recipe_path = save_recipe(tmp_path, {"name": "ga", "options": {"epochs": 1}}, {"lr": 1e-3}, {"rule": "x"})
    recipe = yaml.safe_load(recipe_path.read_text())
    assert recipe["tuned"]["method_defaults"] == method_defaults("ga")
    assert recipe["tuned"]["method_defaults"]["epochs"] == GA.epochs
    _, raw = split_tune(RAW)
    assert parse_config(apply_recipe(raw, recipe_path)).methods[0].options == {"epochs": 1, "lr": 1e-3}
    # the code's default of an option the recipe pins may change: the recipe says what to use
    recipe["tuned"]["method_defaults"]["lr"] = 0.5
    recipe_path.write_text(yaml.safe_dump(recipe))
    apply_recipe(raw, recipe_path)
    # one it does not pin may not: the trials chose their values beside the old default
    recipe["tuned"]["method_defaults"]["sfron_mode"] = not GA.sfron_mode
    recipe_path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(ValueError, match=r"defaults were different \(sfron_mode True -> False\).*Re-tune"):
        apply_recipe(raw, recipe_path)
