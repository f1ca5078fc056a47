"""Optimisation settings: the optimiser choice against hand-computed updates, torch schedulers by
name, range checks naming the field, and training-cache keys that do not move."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from forgetkit.data.base import Split
from forgetkit.methods import build_method
from forgetkit.train import TrainRecipe
from forgetkit.unlearn.context import UnlearnContext
from forgetkit.unlearn.engine import LoopConfig, Parts, run_engine
from forgetkit.unlearn.objectives import RetainCE, RetainObjective
from forgetkit.unlearn.optim import Optimisation


def problem(n=12, d=3, c=2):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g)
    torch.manual_seed(0)
    model = nn.Linear(d, c)
    ctx = UnlearnContext(original=model, forget=Split(x[:0], y[:0]), retain=Split(x, y), num_classes=c)
    return model, ctx, x, y


def adam_by_hand(model, x, y, steps, lr, betas, eps, wd, decoupled):
    """Adam (Kingma & Ba) / AdamW (Loshchilov & Hutter), written out: full batch, bias-corrected."""
    theta = [p.detach().clone() for p in model.parameters()]
    m = [torch.zeros_like(t) for t in theta]
    v = [torch.zeros_like(t) for t in theta]
    b1, b2 = betas
    for t in range(1, steps + 1):
        w = [th.clone().requires_grad_(True) for th in theta]
        loss = F.cross_entropy(x @ w[0].T + w[1], y)
        grads = torch.autograd.grad(loss, w)
        for i, g in enumerate(grads):
            if decoupled:
                theta[i] = theta[i] * (1 - lr * wd)
            else:
                g = g + wd * theta[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            mh, vh = m[i] / (1 - b1 ** t), v[i] / (1 - b2 ** t)
            theta[i] = theta[i] - lr * mh / (vh.sqrt() + eps)
    return theta


@pytest.mark.parametrize("name,decoupled", [("adam", False), ("adamw", True)])
def test_adam_and_adamw_steps_equal_the_update_by_hand(name, decoupled):
    model, ctx, x, y = problem()
    expected = adam_by_hand(model, x, y, steps=3, lr=0.05, betas=(0.8, 0.99), eps=1e-6, wd=0.1, decoupled=decoupled)
    cfg = LoopConfig(epochs=3, lr=0.05, batch_size=len(y), optimizer=name, betas=(0.8, 0.99), eps=1e-6,
                     weight_decay=0.1, mixing="retain_only")
    run_engine(model, ctx, Parts(retain=RetainCE()), cfg)
    for p, e in zip(model.parameters(), expected):
        assert torch.allclose(p.detach(), e, atol=1e-6)


def test_sgd_is_still_the_default_and_differs_from_adam():
    outs = {}
    for name in ("sgd", "adam"):
        model, ctx, _, _ = problem()
        run_engine(model, ctx, Parts(retain=RetainCE()), LoopConfig(epochs=2, lr=0.05, batch_size=4, optimizer=name,
                                                                   mixing="retain_only"))
        outs[name] = model.weight.detach().clone()
    assert LoopConfig().optimizer == "sgd" and not torch.allclose(outs["sgd"], outs["adam"])


class Identity(RetainObjective):
    """ℓ = the single logit: gradient 1, so each SGD step moves the weight by −lr."""

    def __call__(self, logits, batch, ctx):
        return logits[:, 0]


def lrs_used(n_samples, **cfg):
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    ctx = UnlearnContext(original=model, forget=Split(torch.ones(0, 1), torch.zeros(0)),
                         retain=Split(torch.ones(n_samples, 1), torch.zeros(n_samples)), num_classes=1)
    ws = [0.0]
    run_engine(model, ctx, Parts(retain=Identity()),
               LoopConfig(batch_size=1, momentum=0, weight_decay=0, mixing="retain_only", **cfg),
               progress=lambda s, t: ws.append(model.weight.item()))
    return [a - b for a, b in zip(ws, ws[1:])]


def test_a_torch_scheduler_by_name_steps_per_epoch():
    lrs = lrs_used(2, epochs=3, lr=1.0, schedule="ExponentialLR", schedule_options={"gamma": 0.5})
    assert lrs == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.25, 0.25])


def test_a_torch_scheduler_by_name_steps_per_step():
    lrs = lrs_used(3, epochs=2, lr=1.0, schedule="StepLR", schedule_options={"step_size": 2, "gamma": 0.1},
                   schedule_per="step")
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


def test_builtin_step_schedule_equals_torch_multisteplr():
    ours = lrs_used(2, epochs=4, lr=1.0, schedule="step", milestones=(1, 3), gamma=0.5)
    theirs = lrs_used(2, epochs=4, lr=1.0, schedule="MultiStepLR", schedule_options={"milestones": [1, 3], "gamma": 0.5})
    assert ours == pytest.approx(theirs) and ours[::2] == pytest.approx([1.0, 0.5, 0.5, 0.25])


def test_reduce_on_plateau_reads_the_epoch_loss():
    # the loss (the weight itself) keeps falling, so the plateau rule never cuts the rate
    lrs = lrs_used(1, epochs=4, lr=1.0, schedule="ReduceLROnPlateau", schedule_options={"patience": 0})
    assert lrs == pytest.approx([1.0] * 4)


@pytest.mark.parametrize("field,value", [
    ("epochs", -1), ("epochs", "3"), ("lr", 0.0), ("lr", -0.1), ("lr", float("nan")), ("batch_size", 0),
    ("batch_size", 2.5), ("momentum", 1.0), ("momentum", -0.1), ("weight_decay", -1e-4), ("optimizer", "lbfgs"),
    ("betas", (0.9,)), ("betas", (0.9, 1.0)), ("eps", 0.0), ("gamma", 0.0), ("milestones", (-1,)),
    ("schedule", "warp"), ("schedule_per", "batch"),
])
def test_out_of_range_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        Optimisation(**{field: value})
    with pytest.raises(ValueError, match=field):
        LoopConfig(**{field: value})
    with pytest.raises(ValueError, match=field):
        TrainRecipe(**{field: value})
    with pytest.raises(ValueError, match=field):
        build_method("rl", **{field: value})


def test_bad_scheduler_options_are_refused_up_front():
    with pytest.raises(ValueError, match="schedule_options"):
        Optimisation(schedule="StepLR", schedule_options={"step": 2})
    with pytest.raises(ValueError, match="schedule_options"):
        Optimisation(schedule="cosine", schedule_options={"T_max": 3})
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        Optimisation(schedule="ReduceLROnPlateau", schedule_per="step")


def test_recipe_cache_key_fields_are_stable_and_new_fields_count_when_set():
    r = TrainRecipe(epochs=2, lr=0.1, batch_size=16)
    assert r.key_fields() == {"epochs": 2, "lr": 0.1, "batch_size": 16, "momentum": 0.9, "weight_decay": 5e-4,
                              "schedule": "cosine", "milestones": (), "gamma": 0.1}
    adam = TrainRecipe(epochs=2, lr=0.1, batch_size=16, optimizer="adam")
    assert adam.key_fields()["optimizer"] == "adam" and hash(adam) != hash(r)
    assert hash(r) == hash(TrainRecipe(epochs=2, lr=0.1, batch_size=16)) and {r: 1}[TrainRecipe(epochs=2, lr=0.1, batch_size=16)]


def test_cosine_total_counts_the_iteration_budget():
    lrs = lrs_used(4, epochs=2, lr=1.0, schedule="cosine", iterations=5)
    assert lrs == pytest.approx([0.5 * (1 + math.cos(math.pi * s / 5)) for s in range(5)])


def test_scrub_maps_its_own_names_onto_the_step_schedule():
    """SCRUB's γ is its CE weight, so the schedule's decay factor is ``lr_decay_rate`` there."""
    cfg = build_method("scrub", gamma=0.0, lr_decay_rate=0.5, milestones=[1]).loop()
    assert cfg.gamma == 0.5 and cfg.milestones == (1,) and cfg.schedule == "step"
    with pytest.raises(ValueError, match="lr_decay_rate"):
        build_method("scrub", lr_decay_rate=0.0)
    with pytest.raises(ValueError, match="gamma"):
        build_method("scrub", gamma=-1.0)
    with pytest.raises(ValueError, match="lr"):
        build_method("scrub", lr=0.0)
