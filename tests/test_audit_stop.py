"""The stop rule's ``recovered`` condition: stop only once held-out accuracy is back near the original's."""
import numpy as np
import pytest
import torch
from torch import nn

from forgetkit.data import DATASETS
from forgetkit.data.base import Split, as_float
from forgetkit.models import build_model
from forgetkit.unlearn.context import UnlearnContext
from forgetkit.unlearn.stopping import Indistinguishable, build_stop_rule


def _fit(split: Split, steps: int = 200) -> nn.Module:
    torch.manual_seed(0)
    m = build_model("mlp", tuple(split.x.shape[1:]), 10, hidden=64, depth=1)
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(m(as_float(split.x)), split.y).backward()
        opt.step()
    return m.eval()


@pytest.fixture(scope="module")
def case():
    tr = DATASETS.get("mnist5k")().train
    perm = np.random.default_rng(1).permutation(len(tr))[:1500]
    held, forget, retain = tr.subset(perm[:500]), tr.subset(perm[500:1000]), tr.subset(perm[1000:])
    return {"held": held, "forget": forget, "retain": retain, "original": _fit(tr.subset(perm[500:])),
            "retrained": _fit(retain), "damaged": _fit(retain.subset(np.arange(30)), 30)}


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
