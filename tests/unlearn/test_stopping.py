"""The 'indistinguishable' stop rule: registry, its statistic, and a real engine run."""
import numpy as np
import pytest
import torch
from torch import nn

from forgetkit import unlearn
from forgetkit.data import DATASETS
from forgetkit.data.base import as_float
from forgetkit.audit import audit
from tiny_models import fit_tiny_mlp
from forgetkit.unlearn.context import UnlearnContext
from forgetkit.unlearn.stopping import STOP_RULES, Indistinguishable, build_stop_rule




@pytest.fixture(scope="module")
def case():
    tr = DATASETS.get("mnist5k")().train
    perm = np.random.default_rng(1).permutation(len(tr))[:1500]
    held, forget, retain = tr.subset(perm[:500]), tr.subset(perm[500:1000]), tr.subset(perm[1000:])
    return {"train": tr.subset(perm[500:]), "held": held, "forget": forget, "retain": retain,
            "memorised": fit_tiny_mlp(forget), "retrained": fit_tiny_mlp(retain), "original": fit_tiny_mlp(tr.subset(perm[500:])),
            "damaged": fit_tiny_mlp(retain.subset(np.arange(30)), 30)}


def _ctx(case, model, heldout="held"):
    return UnlearnContext(original=model, forget=case["forget"], retain=case["retain"],
                          heldout=case[heldout] if heldout else None, num_classes=10)


def test_registry_and_options():
    assert "indistinguishable" in STOP_RULES
    rule = build_stop_rule("indistinguishable", every=7, margin=0.02)
    assert isinstance(rule, Indistinguishable) and rule.every == 7 and rule.margin == 0.02
    with pytest.raises(ValueError, match="unknown stop rule 'never'"):
        build_stop_rule("never")
    with pytest.raises(ValueError, match="unexpected keyword"):
        build_stop_rule("indistinguishable", patience=3)
    with pytest.raises(ValueError, match="criterion"):
        build_stop_rule("indistinguishable", criterion="p-value")
    with pytest.raises(ValueError, match="every"):
        build_stop_rule("indistinguishable", every=0)


def test_needs_heldout_with_every_forget_class(case):
    rule = Indistinguishable()
    with pytest.raises(ValueError, match="needs a held-out split"):
        rule.setup(case["memorised"], _ctx(case, case["memorised"], heldout=None))
    h = case["held"]
    case = dict(case, no3=h.subset(np.flatnonzero(h.y.numpy() != 3)))
    with pytest.raises(ValueError, match=r"forget class\(es\) \[3\]"):
        rule.setup(case["memorised"], _ctx(case, case["memorised"], heldout="no3"))


@pytest.mark.parametrize("criterion", ["margin", "interval"])
def test_memorised_continues_and_retrained_stops(case, criterion):
    for name, expect in (("memorised", False), ("retrained", True)):
        rule = Indistinguishable(criterion=criterion)
        model = case[name]
        rule.setup(model, _ctx(case, model))
        assert rule.should_stop(model, _ctx(case, model), 50) is expect
        assert rule.history[-1]["step"] == 50 and (rule.stopped_at == 50) is expect


def test_statistic_is_the_audits_class_matched_auc(case):
    model = case["memorised"]
    rule = Indistinguishable(max_samples=10_000)
    rule.setup(model, _ctx(case, model))
    r = audit(model, case["forget"], case["held"], n_boot=20)
    assert rule.statistic(model)["auc"] == pytest.approx(r.overall.auc, abs=1e-12)


def test_class_removed_whole_waits_until_the_class_is_no_longer_predicted(case):
    tr = case["train"]
    f = tr.subset(np.flatnonzero(tr.y.numpy() == 3))
    h = case["held"]
    for model, expect in ((case["memorised"], False), (fit_tiny_mlp(tr.subset(np.flatnonzero(tr.y.numpy() != 3))), True)):
        ctx = UnlearnContext(original=model, forget=f, heldout=h, num_classes=10, forget_classes=(3,))
        rule = Indistinguishable(tolerance=0.03)
        rule.setup(model, ctx)
        assert rule.should_stop(model, ctx, 10) is expect
        assert np.isnan(rule.history[-1]["auc"]) and (rule.history[-1]["still_predicted"] <= 0.03) is expect


def test_subsamples_are_bounded_and_cover_every_class(case):
    rule = Indistinguishable(max_samples=100)
    rule.setup(case["memorised"], _ctx(case, case["memorised"]))
    assert len(rule._xf) == 100 and len(rule._xh) <= 100
    assert set(rule._ch.tolist()) == set(case["held"].y.tolist())


def test_min_steps_holds_the_rule_back(case):
    rule = Indistinguishable(min_steps=100)
    rule.setup(case["retrained"], _ctx(case, case["retrained"]))
    assert not rule.should_stop(case["retrained"], _ctx(case, case["retrained"]), 50) and not rule.history


def test_engine_run_stops_and_records_the_step(case):
    """RL on the memorised model: it stops at a check once the forget set looks unseen, before the
    epochs run out, and the step it stopped at is recorded."""
    train, n_f = case["train"], len(case["forget"])
    kw = dict(method="rl", heldout=case["held"], num_classes=10, epochs=4, lr=0.05, batch_size=128)
    full = unlearn(case["memorised"], train, np.arange(n_f), **kw)
    early = unlearn(case["memorised"], train, np.arange(n_f), stop={"when": "indistinguishable", "every": 2}, **kw)
    assert full.info["stopped_at"] is None
    stopped = early.info["stopped_at"]
    assert stopped is not None and stopped % 2 == 0 and stopped < full.info["steps"]
    after = audit(early.model, case["forget"], case["held"], n_boot=20)
    assert after.overall.auc <= 0.55


# ---- the rule's `recovered` and `prob_tolerance` conditions ------------------------------------

def _rule_on(case, model, **kw):
    ctx = UnlearnContext(original=case["original"], forget=case["forget"], retain=case["retain"],
                         heldout=case["held"], num_classes=10)
    rule = Indistinguishable(margin=0.05, **kw)
    rule.setup(model, ctx)
    return rule, rule.should_stop(model, ctx, 10)


def test_a_damaged_model_that_looks_forgotten_is_not_stopped_when_recovery_is_asked(case):
    # the damaged model is as unfamiliar with forget as with held-out samples, and much less accurate
    rule, stop = _rule_on(case, case["damaged"])
    assert stop and rule.history[-1]["auc"] <= 0.55
    rule, stop = _rule_on(case, case["damaged"], recovered=2.0)
    assert not stop and rule.history[-1]["heldout_acc"] < rule._acc_before - 2.0


def test_the_retrained_model_has_recovered(case):
    rule, stop = _rule_on(case, case["retrained"], recovered=5.0)
    assert stop and rule.stopped_at == 10
    acc = 100 * np.mean([(case["original"](as_float(x[None])).argmax(1) == y).item()
                         for x, y in zip(rule._xh, rule._yh)])
    assert rule._acc_before == pytest.approx(acc)  # the original's accuracy on the same sampled held-out images


def test_recovered_is_validated():
    with pytest.raises(ValueError, match="recovered"):
        build_stop_rule("indistinguishable", recovered=-1.0)


def test_prob_tolerance_waits_until_a_removed_class_keeps_hardly_any_probability(case):
    """A class removed whole that is never predicted but still gets probability: the rule with
    prob_tolerance waits, the plain rule stops."""
    forget = case["forget"].subset(np.flatnonzero(case["forget"].y.numpy() == 3))
    ctx = UnlearnContext(original=case["original"], forget=forget, heldout=case["held"], num_classes=10,
                         forget_classes=(3,))

    class Faint(nn.Module):  # class 3's logit 3 below the best other: never predicted, p about 0.04
        def forward(self, x):
            z = case["original"](x)
            others = z.clone()
            others[:, 3] = -1e9
            z = z.clone()
            z[:, 3] = others.max(1).values - 3.0
            return z

    for kw, expect in (({"prob_tolerance": None}, True), ({}, False)):  # the default waits (0.02)
        rule = Indistinguishable(**kw)
        rule.setup(Faint(), ctx)
        assert rule.should_stop(Faint(), ctx, 10) is expect
        assert 0.02 < rule.history[-1]["removed_prob"] < 0.1 and rule.history[-1]["still_predicted"] == 0.0
    with pytest.raises(ValueError, match="prob_tolerance"):
        build_stop_rule("indistinguishable", prob_tolerance=1.5)


def test_the_probability_criterion_stops_on_the_audits_verdict_statistic(case):
    """``criterion: probability``: the class-matched mean true-class probability difference (forget
    − held-out), the statistic whose sign is the audit's verdict direction, within its margin."""
    from scipy.special import expit

    from forgetkit import stats

    decisions = {}
    for name in ("memorised", "retrained"):
        rule = build_stop_rule("indistinguishable", criterion="probability", every=1)
        rule.setup(case[name], _ctx(case, case[name]))
        s = rule.statistic(case[name])
        decisions[name] = (s["prob_diff"], rule.should_stop(case[name], _ctx(case, case[name]), 1))
    assert decisions["memorised"][0] > 0.03 and not decisions["memorised"][1]
    assert decisions["retrained"][1] == (decisions["retrained"][0] <= 0.03)
    assert stats.matched_mean_difference(expit(np.r_[3.0, 3.0]), [0, 0], expit(np.r_[0.0, 0.0]), [0, 0], [0])[0] > 0
