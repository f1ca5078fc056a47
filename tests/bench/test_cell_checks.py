"""Regression tests for the benchmark defects found by the independent check (issue 11) and the
runner's share of "nothing silently wrong" (issue 12): each fails on the code before the fix."""
from __future__ import annotations

import copy
import sqlite3

import numpy as np
import pytest
import torch
from torch import nn

from forgetkit.bench.config import parse_config
from forgetkit.bench.executors import reference_jobs
from forgetkit.bench.grid import plan
from forgetkit.bench.report import load_run, verdict
from forgetkit.bench.runner import run_experiment
from forgetkit.bench.workspace import Workspace
from forgetkit.data.base import Split
from forgetkit.metrics.core import accuracy, mia_efficacy_of, predict_logits

TINY = {"name": "defects", "dataset": "digits", "device": "cpu", "threads": 1,
        "model": {"name": "mlp", "options": {"hidden": 32, "depth": 1}},
        "train": {"epochs": 3, "lr": 0.1, "batch_size": 64},
        "requests": [{"kind": "class", "classes": [3]}],
        "methods": [{"name": "ft", "options": {"epochs": 1}}], "seeds": [0]}


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cls") / "out"
    cfg = parse_config(TINY)
    summary = run_experiment(cfg, out, show_progress=False)
    return cfg, out, summary


def test_class_request_scores_ta_and_mia_without_the_forgotten_class(class_run):
    cfg, out, summary = class_run
    _, rows, _, _ = load_run(out)
    retrain = next(r for r in rows if r["method"] == "Retrain")
    ws = Workspace(cfg, out.parent / ".forgetkit-cache")
    model = ws.retrained(0, 0)[0]
    test = ws.bundle.test
    keep = test.y != 3
    by_hand = accuracy(predict_logits(model, test.x[keep], torch.device("cpu")), test.y[keep])
    full = accuracy(predict_logits(model, test.x, torch.device("cpu")), test.y)
    assert retrain["metrics"]["TA"] == pytest.approx(by_hand)
    assert retrain["metrics"]["n_test"] == int(keep.sum()) < len(test)
    assert by_hand > full + 5  # the class the reference never saw no longer drags TA down
    assert "without the forgotten classes" in summary.report.read_text()


def test_rows_record_their_thread_count(class_run):
    _, out, _ = class_run
    with sqlite3.connect(out / "results.sqlite") as db:
        threads = {p for (p,) in db.execute("SELECT json_extract(provenance, '$.threads') FROM results")}
    assert threads == {1}


def test_mia_efficacy_refuses_a_retain_set_smaller_than_the_test_set():
    x, y = torch.rand(30, 4), torch.arange(30) % 2
    model = nn.Linear(4, 2)
    split = lambda a, b: Split(x[a:b], y[a:b])  # noqa: E731
    with pytest.raises(ValueError, match="retain set has only 5"):
        mia_efficacy_of(model, split(0, 5), split(5, 10), split(10, 30), torch.device("cpu"))


def test_logits_are_fp32_even_inside_a_callers_autocast():
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)), torch.rand(50, 64)
    exact = predict_logits(model, x, torch.device("cpu"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = predict_logits(model, x, torch.device("cpu"))
    assert torch.equal(exact, inside)


def test_extra_references_come_from_the_evaluators_declarations():
    raw = {**TINY, "metrics": {"extra": ["mia_nn"], "extra_options": {"mia_nn": {"references": 4}}}}
    cfg = parse_config(raw)
    jobs = reference_jobs(cfg, plan(cfg))
    assert sum(j[0] == "retrain" and j[3] is not None for j in jobs) == 4
    ulira = parse_config({**TINY, "metrics": {"extra": ["ulira"], "extra_options": {"ulira": {"shadows": 3}}}})
    assert sum(j[0] == "retrain" and j[3] is not None for j in reference_jobs(ulira, plan(ulira))) == 6


@pytest.mark.parametrize("metrics, message", [
    ({"extra": ["kodge_mia"]}, "evaluator 'kodge_mia' measures whole-class forgetting"),
    ({"extra": ["ulira"]}, "evaluator 'ulira' measures whole-class forgetting"),
])
def test_class_evaluators_on_a_random_request_fail_before_anything_is_written(tmp_path, metrics, message):
    raw = {**TINY, "requests": [{"kind": "random", "fraction": 0.1}], "metrics": metrics}
    with pytest.raises(ValueError, match=message):
        run_experiment(parse_config(raw), tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / ".forgetkit-cache").exists()


def test_ulira_with_too_few_shadows_fails_before_training(tmp_path):
    raw = {**TINY, "metrics": {"extra": ["ulira"], "extra_options": {"ulira": {"shadows": 2}}}}
    with pytest.raises(ValueError, match="shadows=2 is too few"):
        run_experiment(parse_config(raw), tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists()


def test_a_held_out_split_too_thin_for_falw_fails_before_training(tmp_path):
    raw = {**TINY, "heldout_fraction": 0.001, "requests": [{"kind": "random", "fraction": 0.1}],
           "methods": [{"name": "rl", "weightings": ["falw"], "options": {"epochs": 1}}]}
    with pytest.raises(ValueError, match="fewer than 2 held-out samples.*raise heldout_fraction"):
        run_experiment(parse_config(raw), tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists()


def test_a_diverging_reference_fails_its_rows_and_the_run_goes_on(tmp_path):
    raw = {**TINY, "train": {"epochs": 2, "lr": 1e9, "batch_size": 64}}
    summary = run_experiment(parse_config(raw), tmp_path / "out", show_progress=False)
    assert len(summary.failed) == summary.cells == 3
    assert all("reference model training diverged" in why for _, why in summary.failed)
    assert "Failed runs" in summary.report.read_text()


def _row(label, gap, ra=90.0):
    return {"method": label, "seed": 0, "request": "r", "params": {}, "metrics": {"AvgGap": gap, "RA": ra, "TA": ra}}


def test_verdict_names_the_closest_method_those_worse_than_original_and_collapses():
    by_label = {"Retrain": [_row("Retrain", 0.0)], "Original": [_row("Original", 2.0)],
                "RL": [_row("RL", 3.3)], "GA": [_row("GA", 1.2)], "SalUn": [_row("SalUn", 1.5, ra=12.0)]}
    text = "\n".join(verdict(by_label, 10))
    assert "Closest to Retrain: GA**, Avg. Gap 1.20 (n<2) (the untouched Original: 2.00 (n<2))" in text
    assert "Its lead: 0.30 below the next, SalUn; one seed, so no spread was measured" in text
    assert "Worse than not unlearning** (Original's Avg. Gap 2.00): RL (3.30)." in text
    assert "Collapsed** (RA or TA near chance): SalUn." in text


def test_two_processes_with_the_same_threads_give_identical_rows(tmp_path):
    """Same seed and thread count ⇒ the same metrics, in separate processes with separate caches."""
    import json
    import subprocess
    import sys

    script = ("import json, sys\nfrom forgetkit.bench.config import parse_config\n"
              "from forgetkit.bench.runner import run_experiment\n"
              "from forgetkit.bench.report import load_run\n"
              "run_experiment(parse_config(json.loads(sys.argv[1])), sys.argv[2], show_progress=False)\n"
              "print(json.dumps({r['key']: {k: v for k, v in r['metrics'].items() if 'time' not in k and k != 'speedup'}"
              " for r in load_run(sys.argv[2])[1]}, sort_keys=True))\n")
    raw = copy.deepcopy({**TINY, "threads": 2})
    outs = [subprocess.run([sys.executable, "-c", script, json.dumps(raw), str(tmp_path / d / "out")],
                           check=True, capture_output=True, text=True).stdout.splitlines()[-1] for d in "ab"]
    assert outs[0] == outs[1] and np.isfinite(list(json.loads(outs[0]).values())[0]["AvgGap"])


def test_reports_name_methods_as_their_papers_do():
    raw = {**TINY, "requests": [{"kind": "random", "fraction": 0.1}],
           "methods": [{"name": "rl", "weightings": ["uniform", "falw"]}, {"name": "salun", "weightings": ["falw"]},
                       {"name": "l1_sparse"}, {"name": "neggrad_plus"}, {"name": "ga", "label": "GA (tuned)"}]}
    labels = [c.label for c in plan(parse_config(raw))]
    assert labels == ["Original", "Retrain", "RL", "FaLW", "SalUn + FaLW", "ℓ1-sparse", "NegGrad+", "GA (tuned)"]


def test_every_registered_method_and_weighting_declares_its_paper_name():
    from forgetkit.methods import METHODS
    from forgetkit.unlearn.weightings import WEIGHTINGS

    ours = [(n, cls) for n, cls in METHODS.items() + WEIGHTINGS.items() if cls.__module__.startswith("forgetkit.")]
    missing = [n for n, cls in ours if not cls.paper_name]
    assert not missing, f"declare paper_name on: {missing}"


def test_metrics_audit_writes_a_report_per_row_and_stores_it(tmp_path):
    raw = {**TINY, "heldout_fraction": 0.2, "requests": [{"kind": "random", "fraction": 0.1}],
           "metrics": {"audit": True}}
    summary = run_experiment(parse_config(raw), tmp_path / "out", show_progress=False)
    assert not summary.failed
    _, rows, _, artifacts = load_run(tmp_path / "out", with_artifacts=True)
    assert {r["metrics"]["audit_verdict"] for r in rows} <= {"faithful", "under-forgotten", "over-forgotten",
                                                             "inconclusive"}
    assert all(artifacts[r["key"]]["audit"]["verdict"] == r["metrics"]["audit_verdict"] for r in rows)
    targets = {r["key"]: artifacts[r["key"]]["audit"]["target"] for r in rows}
    assert any(targets.values())  # the unlearned rows: forget under the model vs held-out under the original
    assert all(r["metrics"].get("audit_target_auc") == (t["overall"]["auc"] if t else None)
               for r in rows for t in [targets[r["key"]]])
    pages = sorted(p.parent.name for p in (tmp_path / "out" / "audits").glob("*/audit.md"))
    assert len(pages) == len(rows) == 3 and all((tmp_path / "out" / "audits" / p / "audit.html").exists() for p in pages)
    assert "Deletion audits" in summary.report.read_text()


def test_class_requests_do_not_flag_healthy_models_as_collapsed(class_run):
    """The report took the class count from the forget labels: 1 for a one-class request."""
    _, _, summary = class_run
    text = summary.report.read_text()
    assert "Collapsed** (RA or TA near chance): none." in text and "## Warnings" not in text


def test_rows_cite_the_recipe_they_used_and_smoke_recipes_say_so(tmp_path):
    import yaml

    from forgetkit.bench.tune import apply_recipe

    recipe = tmp_path / "FT-v1.yaml"
    recipe.write_text(yaml.safe_dump({"version": 1, "method": "ft", "label": "FT", "options": {"epochs": 1},
                                      "tuned": {"smoke": True, "rule": "avg_gap_on_validation"}}))
    raw = apply_recipe({**TINY, "methods": [{"name": "ft", "label": "FT"}]}, recipe)
    summary = run_experiment(parse_config(raw), tmp_path / "out", show_progress=False)
    _, rows, _, _ = load_run(tmp_path / "out")
    assert {r["params"].get("recipe") for r in rows if r["method"] == "FT"} == {"FT-v1.yaml (smoke-tuned: not a result)"}
    assert "Tuned recipes: `FT-v1.yaml (smoke-tuned: not a result)`" in summary.report.read_text()


def test_a_test_set_larger_than_the_retain_set_fails_before_training(tmp_path):
    """MIA-Efficacy would refuse it in every cell, after the references were trained."""
    raw = {**TINY, "train_size": 300, "requests": [{"kind": "random", "fraction": 0.5}]}
    with pytest.raises(ValueError, match=r"leaves 1\d\d retain samples, fewer than the \d+ test samples"):
        run_experiment(parse_config(raw), tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / ".forgetkit-cache").exists()
