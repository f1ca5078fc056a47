"""Influence vs leave-one-out, soft-weight constraints, QP agreement, errors, and the runner."""
import numpy as np
import pytest
import torch
import yaml

from forgetkit.influence import (InfeasibleTargetError, LinearInfluence, SingularHessianError,
                                 compute_weights, fit_logistic, hard_weights, make_task, orient,
                                 qp_weights, soft_weights_2_0, soft_weights_2_3, utility_loss)
from forgetkit.influence.core import as_tensor
from forgetkit.influence.experiment import run_config
from forgetkit.influence.targets import value_and_grad
from forgetkit.bench.store import ResultStore


def synthetic(n=200, d=8, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.randn(n, d)
    s = (rng.rand(n) < 0.5).astype(int)
    x[:, 0] += s
    y = (x @ rng.randn(d) + 0.5 * rng.randn(n) > 0).astype(int)
    return x, y, s


@pytest.fixture(scope="module")
def fitted():
    x, y, s = synthetic(200)
    xv, yv, sv = synthetic(400, seed=1)
    l2 = 10.0
    theta = fit_logistic(x, y, l2)
    return dict(x=x, y=y, xv=xv, yv=yv, sv=sv, l2=l2, theta=theta,
                infl=LinearInfluence(l2).fit(theta, x, y))


def test_influence_matches_leave_one_out(fitted):
    f = fitted
    fn = lambda t: utility_loss(t, as_tensor(f["xv"]), as_tensor(f["yv"]))  # noqa: E731
    f0, g = value_and_grad(fn, f["theta"])
    pred = f["infl"].influence(g)
    actual = [float(fn(as_tensor(fit_logistic(np.delete(f["x"], j, 0), np.delete(f["y"], j),
                                              f["l2"], theta0=f["theta"])))) - f0
              for j in range(len(f["y"]))]
    assert np.corrcoef(pred, actual)[0, 1] >= 0.95


def test_cg_matches_exact(fitted):
    f = fitted
    cg = LinearInfluence(f["l2"], method="cg").fit(f["theta"], f["x"], f["y"])
    v = np.arange(f["x"].shape[1], dtype=float)
    np.testing.assert_allclose(cg.inverse_hvp(v), f["infl"].inverse_hvp(v), rtol=1e-6, atol=1e-10)


def test_soft_2_3_constraints_and_newton_prediction(fitted):
    f = fitted
    task = make_task("dp", f["theta"], f["xv"], f["yv"], f["sv"])
    f0, g_task = value_and_grad(task, f["theta"])
    _, g_util = value_and_grad(lambda t: utility_loss(t, as_tensor(f["xv"]), as_tensor(f["yv"])),
                               f["theta"])
    i_task, i_util = f["infl"].influence(g_task), f["infl"].influence(g_util)
    eps = compute_weights("soft-2.3", i_task, i_util, f0)
    assert -eps @ i_task == pytest.approx(-f0, rel=1e-8)          # first-order target: F → 0
    assert abs(eps @ i_util) <= 1e-8 * np.abs(i_util).sum()        # no first-order utility change
    # the Newton update's actual first-order change equals the prediction (small step check)
    theta_new = f["infl"].newton_update(1e-3 * eps)
    actual = float(task(as_tensor(theta_new))) - f0
    assert actual == pytest.approx(-1e-3 * f0, rel=0.05)


def test_sign_of_negative_gap_is_handled():
    rng = np.random.RandomState(0)
    i_task, i_util = rng.randn(50), rng.randn(50)
    for f0 in (0.3, -0.3):
        eps = compute_weights("soft-2.3", i_task, i_util, f0)
        assert f0 + (-eps @ i_task) == pytest.approx(0.0, abs=1e-10)  # gap driven to 0, not 2·f0
    hard_pos = compute_weights("hard", i_task, i_util, 0.3, hard_fraction=0.1)
    hard_neg = compute_weights("hard", i_task, i_util, -0.3, hard_fraction=0.1)
    assert -hard_pos @ i_task < 0 < -hard_neg @ i_task  # both move the gap towards zero
    assert orient(i_task, -0.3)[1] == 0.3


def test_hard_removes_exactly_k():
    infl = np.random.RandomState(1).randn(1000)
    eps = hard_weights(infl, 0.2)
    assert (eps == -1).sum() == 200 and set(np.unique(eps)) == {-1.0, 0.0}
    assert infl[eps == -1].max() <= infl[eps == 0].min()


def test_qp_matches_closed_forms():
    rng = np.random.RandomState(2)
    i_task = rng.randn(60)
    i_util = rng.randn(60) - 0.8 * i_task
    assert i_task @ i_util < 0  # the min-norm target step would raise the loss: constraint binds
    delta = 0.7
    # both constraints active: min-norm QP = soft-2.3
    np.testing.assert_allclose(qp_weights(i_task, i_util, delta), soft_weights_2_3(i_task, i_util, delta),
                               atol=1e-6)
    # inactive constraints: min λ‖ε‖² − εᵀI = soft-2.0 (I/(2λ))
    lam = 0.01
    np.testing.assert_allclose(qp_weights(i_task, 1.1 * i_task, delta, lam=lam, task_weight=1.0,
                                          solver="OSQP"),
                               soft_weights_2_0(i_task, lam), rtol=1e-3, atol=1e-3)


def test_infeasible_qp_and_collinear_closed_form():
    i_task = np.ones(10)
    with pytest.raises(InfeasibleTargetError, match="no weights reach"):
        qp_weights(i_task, np.ones(10), delta=5.0, lower=-0.1, upper=0.1)
    with pytest.raises(InfeasibleTargetError, match="collinear"):
        soft_weights_2_3(i_task, -2 * i_task, 1.0)


def test_singular_hessian():
    x, y, _ = synthetic(50, d=4)
    x = np.hstack([x, x[:, :1]])  # duplicated column → singular Hessian when l2 = 0
    theta = fit_logistic(x, y, 1e-3)
    with pytest.raises(SingularHessianError, match="singular"):
        LinearInfluence(l2_reg=0.0, auto_damping=False).fit(theta, x, y)
    with pytest.warns(RuntimeWarning, match="damping"):
        infl = LinearInfluence(l2_reg=0.0).fit(theta, x, y)
    assert infl.damping_ > 0 and np.all(np.isfinite(infl.influence(np.ones(5))))


CONFIG = """
experiment_type: soft-weighting
name: test-soft
task: dp
datasets: [german]
models: [logreg, mlp]
unlearners: [influence, retrain, finetune, ga]
seeds: [0]
"""


def test_run_config_smoke_and_resume(tmp_path):
    raw = yaml.safe_load(CONFIG)
    report = run_config(raw, tmp_path, smoke=True)
    text = report.read_text()
    assert "| german | logreg | influence | soft |" in text and (tmp_path / "scatter.png").exists()
    with ResultStore(tmp_path / "results.sqlite") as store:
        rows = store.rows(experiment="test-soft")
    assert len(rows) == 16 and all(r["status"] == "ok" for r in rows)
    assert rows[0]["provenance"]["torch"] == torch.__version__
    run_config(raw, tmp_path, smoke=True)  # resumes: nothing new is written
    with ResultStore(tmp_path / "results.sqlite") as store:
        again = store.rows(experiment="test-soft")
    assert [r["created"] for r in again] == [r["created"] for r in rows]


def test_bad_field_is_named(tmp_path):
    raw = yaml.safe_load(CONFIG)
    raw["hard_fracton"] = 0.1
    with pytest.raises(ValueError, match="hard_fracton"):
        run_config(raw, tmp_path, smoke=True)
    raw = yaml.safe_load(CONFIG)
    raw["finetune"] = {"epochz": 3}
    with pytest.raises(ValueError, match="epochz"):
        run_config(raw, tmp_path, smoke=True)
    assert not (tmp_path / "experiment.json").exists()  # nothing written for a bad config


def test_hard_fraction_floors_like_the_reference():
    infl = np.arange(14, dtype=float)
    assert (hard_weights(infl, 0.25) == -1).sum() == 3  # int(14 * 0.25) = 3, round would give 4
