"""SSD, Bad Teacher and UNSIR: the math of each against explicit computations, then the methods on digits.

The registry-wide contract (input untouched, reproducible, declared needs) is in test_method_conformance.py.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from forgetkit.data.base import Split, as_float
from forgetkit.methods import METHODS, build_method
from forgetkit.methods.bad_teacher import CompetentTeacherKL, IncompetentTeacherKL, distill_kl
from forgetkit.methods.ssd import dampening_factors, importance
from forgetkit.methods.unsir import learn_noise, noise_loss
from forgetkit.models import build_model
from forgetkit.train import TrainRecipe, train_classifier
from forgetkit.unlearn.context import UnlearnContext
from forgetkit.unlearn.objectives import Batch

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    """An MLP on sklearn digits; classes 0 and 1 are the forget classes of the multi-class test."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(np.round(d.images * 255 / 16), dtype=torch.uint8).unsqueeze(1)
    y = torch.tensor(d.target)
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, hidden=32)
    train_classifier(model, Split(x[:1500], y[:1500]), TrainRecipe(epochs=6, lr=0.1, batch_size=64), 0, CPU, 10)
    return model.eval(), Split(x[:1500], y[:1500])


def ctx_for(model, data, classes):
    is_f = torch.isin(data.y, torch.tensor(classes))
    return UnlearnContext(original=model, forget=data.subset(torch.where(is_f)[0]),
                          retain=data.subset(torch.where(~is_f)[0]), num_classes=10, forget_classes=tuple(classes))


def acc(model, split):
    with torch.no_grad():
        return (model.eval()(as_float(split.x)).argmax(1) == split.y).float().mean().item()


def test_registered_with_honest_declarations():
    assert {"ssd", "bad_teacher", "unsir"} <= set(METHODS.names())
    ssd, bt, un = (METHODS.get(n) for n in ("ssd", "bad_teacher", "unsir"))
    assert ssd.needs == bt.needs == un.needs == {"forget", "retain"}
    assert bt.supports_weighting and not ssd.supports_weighting and not un.supports_weighting
    assert un.class_only and not ssd.class_only and not bt.class_only
    assert all(m.description for m in (ssd, bt, un))


@pytest.mark.parametrize("name, bad", [("ssd", {"alpha": 0}), ("ssd", {"lam": "1"}), ("ssd", {"batch_size": 0}),
                                       ("bad_teacher", {"retain_fraction": 0}),
                                       ("bad_teacher", {"temperature": "2"}),
                                       ("bad_teacher", {"optimizer": "lbfgs"}),
                                       ("unsir", {"noise_size": 0}), ("unsir", {"noise_steps": -1}),
                                       ("unsir", {"repair_epochs": "3"}), ("unsir", {"impair_lr": 0.0}),
                                       ("unsir", {"noise_l2": -0.1})])
def test_bad_options_are_refused_by_name(name, bad):
    with pytest.raises(ValueError, match=list(bad)[0]):
        build_method(name, **bad)


# ---- SSD ---------------------------------------------------------------------------------------

def test_ssd_dampening_on_a_hand_made_fisher():
    full = torch.tensor([1.0, 1.0, 0.5, 0.0, 2.0, 1.0])
    forget = torch.tensor([5.0, 20.0, 4.0, 3.0, 1.0, 10.0])
    # α = 3: selected where forget > 3·full, i.e. all but entry 4 (1 < 6); λ = 2 caps at 1
    beta = dampening_factors(full, forget, alpha=3.0, lam=2.0)
    expected = []
    for f, o in zip(forget.tolist(), full.tolist()):
        expected.append(min(2.0 * o / f, 1.0) if f > 3.0 * o else 1.0)
    assert beta.tolist() == pytest.approx(expected)
    assert beta.tolist() == pytest.approx([0.4, 0.1, 0.25, 0.0, 1.0, 0.2])


def test_ssd_importance_is_the_mean_squared_batch_gradient():
    """Linear softmax model: ∂CE/∂W = (p − onehot)ᵀx / B per batch, computed here by hand."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.rand(10, 4), torch.randint(0, 3, (10,))
    imp = importance(model, Split(x, y), batch_size=4, device=CPU)
    w, b = model[1].weight.detach(), model[1].bias.detach()
    sq_w, sq_b = torch.zeros(3, 4), torch.zeros(3)
    batches = [(0, 4), (4, 8), (8, 10)]
    for lo, hi in batches:
        g_w, g_b = torch.zeros(3, 4), torch.zeros(3)
        for i in range(lo, hi):
            p = torch.softmax(w @ x[i] + b, 0)
            err = p - F.one_hot(y[i], 3).float()
            g_w += torch.outer(err, x[i]) / (hi - lo)
            g_b += err / (hi - lo)
        sq_w += g_w ** 2
        sq_b += g_b ** 2
    assert torch.allclose(imp["1.weight"], sq_w / 3, atol=1e-7)
    assert torch.allclose(imp["1.bias"], sq_b / 3, atol=1e-7)


def test_ssd_scales_only_selected_parameters(digits):
    model, data = digits
    ctx = ctx_for(model, data, [0])
    # α = 10 (the reference's) selects nothing on this MLP; α = 5 dampens about 0.6% of the weights
    assert build_method("ssd").unlearn(model, ctx)[1]["dampened_fraction"] == 0
    out, info = build_method("ssd", alpha=5.0).unlearn(model, ctx)
    changed = kept = 0
    for (n, p0), p1 in zip(model.named_parameters(), out.parameters()):
        same = p1.detach() == p0.detach()
        kept += int(same.sum())
        changed += int((~same).sum())
        ratio = p1.detach()[~same] / p0.detach()[~same]
        assert ((ratio >= 0) & (ratio < 1)).all(), n
    assert changed / (changed + kept) == pytest.approx(info["dampened_fraction"], abs=1e-3) and changed > 0
    assert acc(out, ctx.forget) < 0.1 and acc(out, ctx.retain) > 0.9


# ---- Bad Teacher -------------------------------------------------------------------------------

def test_distill_kl_matches_a_manual_kl():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    for temp in (1.0, 2.5):
        manual = []
        for si, ti in zip(s.tolist(), t.tolist()):
            zs = sum(math.exp(v / temp) for v in si)
            zt = sum(math.exp(v / temp) for v in ti)
            p = [math.exp(v / temp) / zs for v in si]
            q = [math.exp(v / temp) / zt for v in ti]
            manual.append(sum(qi * math.log(qi / pi) for qi, pi in zip(q, p)))
        assert distill_kl(s, t, temp).tolist() == pytest.approx(manual, rel=1e-5)


def test_bad_teacher_objectives_pick_the_right_teacher(digits):
    model, data = digits
    ctx = ctx_for(model, data, [0])
    x = as_float(ctx.forget.x[:16])
    batch = Batch(x, ctx.forget.y[:16], torch.arange(16))
    logits = model(x).detach()
    assert CompetentTeacherKL(1.0)(logits, batch, ctx).abs().max() < 1e-5  # the original is its own teacher
    bad = IncompetentTeacherKL(1.0)
    bad.setup(ctx)
    random_out = bad.teacher(x)
    assert torch.allclose(bad(logits, batch, ctx), distill_kl(logits, random_out, 1.0))
    assert bad(random_out, batch, ctx).abs().max() < 1e-5
    assert bad(logits, batch, ctx).mean() > 0.5, "the original is confident; a random model is not"
    again = IncompetentTeacherKL(1.0)
    again.setup(ctx)
    assert torch.equal(again.teacher(x), random_out), "the incompetent teacher must be seeded by the run"


def test_bad_teacher_uses_its_retain_fraction_and_forgets(digits):
    model, data = digits
    ctx = ctx_for(model, data, [0])
    out, info = build_method("bad_teacher", lr=3e-3, epochs=3, retain_fraction=0.25).unlearn(model, ctx)
    assert info["retain_used"] == round(0.25 * len(ctx.retain))
    assert acc(model, ctx.forget) > 0.95 and acc(out, ctx.forget) < 0.5 and acc(out, ctx.retain) > 0.8


# ---- UNSIR -------------------------------------------------------------------------------------

def test_unsir_noise_increases_the_forget_class_loss(digits):
    model, _ = digits
    gen = torch.Generator().manual_seed(0)
    start = torch.randn((64, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    noise = learn_noise(model, 3, (64, 1, 8, 8), 40, 0.1, 0.1, gen, CPU)
    target = torch.full((64,), 3)
    with torch.no_grad():
        before = F.cross_entropy(model(start), target)
        after = F.cross_entropy(model(noise), target)
        assert after > before + 1.0
        assert noise_loss(model(noise), noise, 3, 0.1) < noise_loss(model(start), start, 3, 0.1)


def test_unsir_forgets_two_classes_and_keeps_the_rest(digits):
    model, data = digits
    ctx = ctx_for(model, data, [0, 1])
    # the reference's single repair epoch is 6 steps on this small retain set: repair a little longer
    out, info = build_method("unsir", repair_epochs=3).unlearn(model, ctx)
    assert info["noise_samples"] == 2 * 256 * 20
    assert acc(out, ctx.forget.subset(torch.where(ctx.forget.y == 0)[0])) < 0.3
    assert acc(out, ctx.forget.subset(torch.where(ctx.forget.y == 1)[0])) < 0.3
    assert acc(out, ctx.retain) > 0.6
