"""RA-Targets: whole/partial detection and the target math against per-sample loops."""
import math

import pytest
import torch

from forgetkit.data.base import Split
from forgetkit.methods import build_method
from forgetkit.methods.request_aware import (heldout_quantiles, partial_targets,
                                             request_aware_targets, retain_log_ratio, retain_targets,
                                             whole_and_partial)
from forgetkit.methods.trw import output_similarity, tilted_targets
from forgetkit.models import build_model
from forgetkit.unlearn.context import UnlearnContext
from forgetkit.unlearn.objectives import RetainSoftCE


def test_whole_and_partial_by_retain_membership():
    forget_y = torch.tensor([0, 0, 1, 2, 2])
    retain_y = torch.tensor([1, 3, 3, 2])
    assert whole_and_partial(forget_y, retain_y) == ((0,), (1, 2))
    # random request: every class keeps retain samples
    assert whole_and_partial(forget_y, torch.tensor([0, 1, 2, 3])) == ((), (0, 1, 2))
    # class request: named classes are whole even if mislabelled copies were left in the retain set
    assert whole_and_partial(forget_y, torch.tensor([0, 1, 2, 3]), forget_classes=(2,)) == ((2,), (0, 1))
    # no retain set: nothing is kept
    assert whole_and_partial(forget_y, None) == ((0, 1, 2), ())


def slow_quantile(values, level):
    """Linear-interpolation quantile, written out (position level·(m − 1) in the sorted values)."""
    v = sorted(values)
    pos = level * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (pos - lo) * (v[hi] - v[lo])


def test_heldout_quantiles_match_a_per_sample_loop():
    g = torch.Generator().manual_seed(0)
    y_f = torch.tensor([0, 1, 0, 0, 1, 2, 0])
    p_f = torch.tensor([0.9, 0.2, 0.5, 0.5, 0.8, 0.7, 0.1])  # a tie inside class 0
    y_h = torch.randint(0, 3, (40,), generator=g)
    p_h = torch.rand(40, generator=g)
    q = heldout_quantiles(p_f, y_f, p_h, y_h)
    for i in range(len(y_f)):
        same = [j for j in range(len(y_f)) if y_f[j] == y_f[i]]
        # rank: samples of the class with smaller p, or equal p and an earlier position
        rank = sum(1 for j in same if p_f[j] < p_f[i] or (p_f[j] == p_f[i] and j < i))
        held = [p_h[j].item() for j in range(40) if y_h[j] == y_f[i]]
        assert q[i].item() == pytest.approx(slow_quantile(held, (rank + 0.5) / len(same)), abs=1e-6)
    # the original's ordering is kept: within a class, a lower p never gets a higher q
    for c in range(3):
        m = y_f == c
        order = torch.argsort(p_f[m], stable=True)
        assert torch.all(q[m][order].diff() >= 0)


def test_heldout_quantiles_refuse_a_class_without_heldout_samples():
    with pytest.raises(ValueError, match="no samples of class 2"):
        heldout_quantiles(torch.tensor([0.5]), torch.tensor([2]), torch.tensor([0.4]), torch.tensor([1]))


def test_partial_targets_match_a_per_sample_loop():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 5, generator=g) * 3
    y = torch.tensor([0, 1, 1, 3, 4, 0])
    q = torch.rand(6, generator=g)
    t = partial_targets(logits, y, q, excluded=(2,))
    for i in range(6):
        p = torch.softmax(logits[i].double(), 0)
        others = [k for k in range(5) if k != y[i] and k != 2]
        total = sum(p[k] for k in others)
        for k in range(5):
            want = q[i].item() if k == y[i] else 0.0 if k == 2 else (1 - q[i].item()) * (p[k] / total).item()
            assert t[i, k].item() == pytest.approx(want, abs=1e-6)
    assert torch.allclose(t.sum(1), torch.ones(6))


def test_partial_targets_are_finite_when_the_original_is_saturated():
    t = partial_targets(torch.tensor([[200.0, 0.0, -5.0]]), torch.tensor([0]), torch.tensor([0.7]))
    assert torch.isfinite(t).all() and t[0, 0].item() == pytest.approx(0.7)
    assert t[0, 1].item() > t[0, 2].item()


def masked_true_probs(logits, y, excluded):
    """Per sample, the softmax over the classes not excluded, at the sample's own class (a loop)."""
    out = []
    for z, c in zip(logits.tolist(), y.tolist()):
        e = [math.exp(v) if k not in excluded else 0.0 for k, v in enumerate(z)]
        out.append(e[c] / sum(e))
    return torch.tensor(out)


@pytest.mark.parametrize("shift", [None, torch.tensor([0.0, -1.5, -0.2, 0.0])])
def test_mixed_request_gets_trw_targets_for_whole_and_quantile_targets_for_partial_classes(shift):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(8, 4, generator=g) * 2
    y = torch.tensor([0, 0, 0, 1, 1, 2, 0, 1])
    held_logits = torch.randn(30, 4, generator=g) * 2
    held_y = torch.randint(0, 4, (30,), generator=g)
    t = request_aware_targets(logits, y, held_logits, held_y, whole=(0,), partial=(1, 2), beta=5.0, shift=shift)
    z, zh = (logits, held_logits) if shift is None else (logits + shift, held_logits + shift)
    w = y == 0
    scores = output_similarity(z[w], y[w], (0,), 4)
    assert torch.allclose(t[w], tilted_targets(z[w], y[w], scores, (0,), beta=5.0))
    assert torch.all(t[:, 0] == 0)  # the class removed whole is never a target, not even for partial samples
    q = heldout_quantiles(masked_true_probs(z[~w], y[~w], {0}), y[~w], masked_true_probs(zh, held_y, {0}), held_y)
    assert torch.allclose(t[~w], partial_targets(z[~w], y[~w], q, excluded=(0,)), atol=1e-6)
    assert torch.allclose(t.sum(1), torch.ones(8))


def test_retain_log_ratio_matches_counts():
    forget_y = torch.tensor([0, 0, 0, 1, 2, 2])
    retain_y = torch.tensor([1, 1, 1, 2, 2, 3])
    r = retain_log_ratio(forget_y, retain_y, 5)
    want = [float("-inf"), math.log(3 / 4), math.log(2 / 4), 0.0, 0.0]  # class 4: in neither split
    assert r.tolist() == pytest.approx(want)


def test_prior_correction_lowers_the_target_of_a_class_that_keeps_few_samples():
    """Class 1 keeps 1 of 10 samples, class 2 keeps 9 of 10: only class 1's targets drop."""
    g = torch.Generator().manual_seed(4)
    y = torch.tensor([1] * 9 + [2])
    logits = torch.randn(10, 3, generator=g) + 3 * torch.nn.functional.one_hot(y, 3)
    held_y = torch.tensor([1, 2] * 10)
    held_logits = torch.randn(20, 3, generator=g) + 3 * torch.nn.functional.one_hot(held_y, 3)
    shift = retain_log_ratio(y, torch.tensor([0] * 10 + [1] + [2] * 9), 3)
    plain = request_aware_targets(logits, y, held_logits, held_y, (), (1, 2), beta=0.0)
    moved = request_aware_targets(logits, y, held_logits, held_y, (), (1, 2), beta=0.0, shift=2 * shift)
    ones = y == 1
    assert torch.all(moved[ones, 1] < plain[ones, 1] - 0.05)
    assert torch.all((moved[~ones, 2] - plain[~ones, 2]).abs() < 0.05)


def test_partial_classes_without_heldout_split_are_refused():
    with pytest.raises(ValueError, match="held-out split"):
        request_aware_targets(torch.zeros(2, 3), torch.tensor([0, 1]), None, None, whole=(), partial=(0, 1), beta=1.0)


def _tiny_context(data_seed: int):
    """A 3-class MLP on 4×4 images and its context: 6 forget, 14 retain, 10 held-out samples."""
    torch.manual_seed(0)
    model = build_model("mlp", (1, 4, 4), 3, hidden=8)
    g = torch.Generator().manual_seed(data_seed)
    x = torch.randint(0, 255, (30, 1, 4, 4), generator=g, dtype=torch.uint8)
    y = torch.arange(30) % 3
    return model, UnlearnContext(original=model, forget=Split(x[:6], y[:6]), retain=Split(x[6:20], y[6:20]),
                                 heldout=Split(x[20:], y[20:]), num_classes=3)


def test_a_collapsed_model_cannot_move_the_targets():
    """Targets come from the original in the context: the model being unlearned does not enter."""
    model, ctx = _tiny_context(3)
    method = build_method("request_aware", epochs=1)
    objective = method.parts(model, ctx).forget
    objective.setup(ctx)
    before = objective._t.clone()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    objective.setup(ctx)
    assert torch.equal(before, objective._t)


@pytest.mark.parametrize("options, field", [({"prior_power": -1.0}, "prior_power"), ({"deflate": -0.5}, "deflate"),
                                            ({"combine": "sum"}, "combine"), ({"retain_mix": 1.5}, "retain_mix"),
                                            ({"retain_mix": -0.1}, "retain_mix")])
def test_bad_options_name_the_field(options, field):
    with pytest.raises(ValueError, match=field):
        build_method("request_aware", **options)


def test_deflated_moves_down_in_log_odds():
    from forgetkit.methods.request_aware import deflated

    q = torch.tensor([0.5, 0.9, 0.999, 0.01])
    out = deflated(q, 1.5)
    for a, b in zip(q.tolist(), out.tolist()):
        assert b == pytest.approx(1 / (1 + math.exp(-(math.log(a / (1 - a)) - 1.5))), rel=1e-5)
    assert torch.equal(deflated(q, 0.0), q)


@pytest.mark.parametrize("mix", [0.0, 0.3, 1.0])
def test_retain_targets_match_a_per_sample_loop(mix):
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(7, 4, generator=g) * 3
    y = torch.tensor([0, 1, 3, 3, 1, 0, 1])
    t = retain_targets(logits, y, whole=(2,), mix=mix)
    for i in range(7):
        e = [math.exp(v) if k != 2 else 0.0 for k, v in enumerate(logits[i].tolist())]
        for k in range(4):
            want = (1 - mix) * (1.0 if k == y[i] else 0.0) + mix * e[k] / sum(e)
            assert t[i, k].item() == pytest.approx(want, abs=1e-6)
    assert torch.all(t[:, 2] == 0)  # a class removed whole is never a retain target
    with pytest.raises(ValueError, match="retain_mix"):
        retain_targets(logits, y, whole=(), mix=1.2)


def test_retain_soft_ce_is_the_mix_of_label_ce_and_teacher_ce():
    """Soft CE to (1 − s)·one-hot + s·p_o = (1 − s)·CE(y) + s·CE(p_o), sample by sample, at the
    batch's positions in the retain split."""
    from forgetkit.unlearn.objectives import Batch

    g = torch.Generator().manual_seed(6)
    teacher = torch.randn(10, 3, generator=g)
    y = torch.randint(0, 3, (10,), generator=g)
    s = 0.4
    objective = RetainSoftCE(retain_targets(teacher, y, whole=(), mix=s))
    pos = torch.tensor([7, 2, 5])
    student = torch.randn(3, 3, generator=g)
    got = objective(student, Batch(None, y[pos], pos), None)
    for row, i in enumerate(pos.tolist()):
        log_p = torch.log_softmax(student[row].double(), 0)
        p_o = torch.softmax(teacher[i].double(), 0)
        want = -(1 - s) * log_p[y[i]] - s * (p_o * log_p).sum()
        assert got[row].item() == pytest.approx(want.item(), abs=1e-5)


def test_retain_mix_picks_the_retain_term_and_reads_the_original():
    from forgetkit.unlearn.objectives import RetainCE

    model, ctx = _tiny_context(7)
    assert isinstance(build_method("request_aware", retain_mix=0.0).parts(model, ctx).retain, RetainCE)
    retain = build_method("request_aware", retain_mix=0.5).parts(model, ctx).retain
    assert isinstance(retain, RetainSoftCE)
    with torch.no_grad():
        p_o = torch.softmax(model(ctx.retain.x.float() / 255), 1)
    want = 0.5 * torch.nn.functional.one_hot(ctx.retain.y, 3) + 0.5 * p_o
    assert torch.allclose(retain.targets, want, atol=1e-5)
