"""Unit tests of the Formulation-1 engine: batch composition per mixing mode, loss normalisation,
learning-rate schedules, divergence detection and determinism. Tiny linear models, random data."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from forgetkit.data.base import Split
from forgetkit.unlearn.context import UnlearnContext
from forgetkit.unlearn.engine import DivergenceError, LoopConfig, Parts, _lr_at, run_engine
from forgetkit.unlearn.objectives import ForgetObjective, NegativeCE, RetainCE, RetainObjective
from forgetkit.unlearn.weightings import Weighting

N_F, N_R, BS = 10, 30, 8


def data(seed=0, n_f=N_F, n_r=N_R, d=4, c=3):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n_f + n_r, d, generator=g), torch.randint(0, c, (n_f + n_r,), generator=g)
    return Split(x[:n_f], y[:n_f]), Split(x[n_f:], y[n_f:])


def linear(d=4, c=3):
    torch.manual_seed(0)
    return nn.Linear(d, c)


class Recorder(ForgetObjective, RetainObjective):
    """Logs which positions each step's forget and retain terms see; loss is plain (±)CE."""

    def __init__(self, events, tag, sign=1.0):
        self.events, self.tag, self.sign = events, tag, sign

    def __call__(self, logits, batch, ctx):
        self.events.append((self.tag, batch.pos.tolist()))
        return self.sign * F.cross_entropy(logits, batch.y, reduction="none")


def record(mixing, epochs=1, forget_epochs=None, with_retain=True):
    forget, retain = data()
    ev = []
    ctx = UnlearnContext(original=linear(), forget=forget, retain=retain if with_retain else None, num_classes=3)
    parts = Parts(forget=Recorder(ev, "f", -1.0), retain=Recorder(ev, "r"), weighting=_Steps(ev))
    run_engine(linear(), ctx, parts, LoopConfig(epochs=epochs, lr=0.01, batch_size=BS, mixing=mixing,
                                               forget_epochs=forget_epochs))
    steps, cur = [], None
    for e in ev:
        if e[0] == "step":
            cur = {"f": [], "r": []}
            steps.append(cur)
        else:
            cur[e[0]] += e[1]
    return steps


class _Steps(Weighting):
    """Uniform weights; marks the start of every optimiser step in the event log."""

    def __init__(self, ev):
        self.ev = ev

    def before_step(self, model, ctx, step):
        self.ev.append(("step", step))

    def __call__(self, logits, batch, ctx):
        return torch.ones(len(batch.y))


def test_forget_only_never_touches_retain():
    steps = record("forget_only", with_retain=False)
    assert len(steps) == math.ceil(N_F / BS) and all(not s["r"] for s in steps)
    assert sorted(p for s in steps for p in s["f"]) == list(range(N_F))


def test_retain_only_never_touches_forget():
    steps = record("retain_only")
    assert len(steps) == math.ceil(N_R / BS) and all(not s["f"] for s in steps)
    assert sorted(p for s in steps for p in s["r"]) == list(range(N_R))


def test_sequential_runs_all_forget_batches_first():
    steps = record("sequential")
    nf = math.ceil(N_F / BS)
    assert len(steps) == nf + math.ceil(N_R / BS)
    assert all(s["f"] and not s["r"] for s in steps[:nf]) and all(s["r"] and not s["f"] for s in steps[nf:])


def test_paired_gives_each_retain_batch_a_full_forget_batch():
    steps = record("paired")
    assert len(steps) == math.ceil(N_R / BS)
    assert all(len(s["f"]) == BS and 0 < len(s["r"]) <= BS for s in steps)
    assert sorted(p for s in steps for p in s["r"]) == list(range(N_R))


def test_mixed_covers_the_union_once_per_epoch():
    steps = record("mixed")
    assert len(steps) == math.ceil((N_F + N_R) / BS)
    assert all(len(s["f"]) + len(s["r"]) <= BS for s in steps)
    assert sorted(p for s in steps for p in s["f"]) == list(range(N_F))
    assert sorted(p for s in steps for p in s["r"]) == list(range(N_R))
    assert any(s["f"] and s["r"] for s in steps)


def test_forget_epochs_limits_the_forget_term():
    steps = record("sequential", epochs=2, forget_epochs=1)
    per_epoch = math.ceil(N_F / BS) + math.ceil(N_R / BS)
    assert any(s["f"] for s in steps[:per_epoch]) and not any(s["f"] for s in steps[per_epoch:])
    assert len(steps) == per_epoch + math.ceil(N_R / BS)


class PosWeights(Weighting):
    def __call__(self, logits, batch, ctx):
        return batch.pos.float() + 1.0


@pytest.mark.parametrize("mixing", ["mixed", "sequential"])
def test_loss_normalisation_matches_hand_computation(mixing):
    """mixed: (α·Σ w·ℓ_f + β·Σ ℓ_r) / (n_f + n_r); other mixings: α·mean(w·ℓ_f) + β·mean(ℓ_r)."""
    forget, retain = data(n_f=3, n_r=5)
    model = linear()
    ctx = UnlearnContext(original=model, forget=forget, retain=retain, num_classes=3)
    with torch.no_grad():
        lf = -F.cross_entropy(model(forget.x), forget.y, reduction="none")
        lr_ = F.cross_entropy(model(retain.x), retain.y, reduction="none")
    w, a, b = torch.arange(1.0, 4.0), 2.0, 0.5
    cfg = LoopConfig(epochs=1, lr=1e-12, momentum=0.0, weight_decay=0.0, batch_size=8, mixing=mixing,
                     forget_weight=a, retain_weight=b)  # a rate too small to move the model
    log = run_engine(copy.deepcopy(model), ctx, Parts(forget=NegativeCE(), retain=RetainCE(), weighting=PosWeights()), cfg)
    if mixing == "mixed":
        expected = ((a * w * lf).sum() + (b * lr_).sum()) / 8
    else:  # one forget step then one retain step, each a mean; the log holds their average
        expected = ((a * w * lf).mean() + (b * lr_).mean()) / 2
    assert log.steps == (1 if mixing == "mixed" else 2)
    assert log.epochs[0]["loss"] == pytest.approx(expected.item(), rel=1e-5)


class Identity(RetainObjective):
    """ℓ = the single logit, so its gradient w.r.t. the weight is 1 and each step moves it by −lr."""

    def __call__(self, logits, batch, ctx):
        return logits[:, 0]


def lrs_used(cfg):
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    ctx = UnlearnContext(original=model, forget=Split(torch.ones(0, 1), torch.zeros(0)),
                         retain=Split(torch.ones(1, 1), torch.zeros(1)), num_classes=1)
    ws = [0.0]
    run_engine(model, ctx, Parts(retain=Identity()), cfg, progress=lambda s, t: ws.append(model.weight.item()))
    return [a - b for a, b in zip(ws, ws[1:])]


def test_step_schedule_lr_values():
    cfg = LoopConfig(epochs=4, lr=1.0, batch_size=1, momentum=0, weight_decay=0, mixing="retain_only",
                     schedule="step", milestones=(1, 3), gamma=0.5)
    assert lrs_used(cfg) == pytest.approx([1.0, 0.5, 0.5, 0.25])
    assert [_lr_at(cfg, e, 0, 1) for e in range(4)] == pytest.approx([1.0, 0.5, 0.5, 0.25])


def test_cosine_schedule_lr_values():
    cfg = LoopConfig(epochs=4, lr=1.0, batch_size=1, momentum=0, weight_decay=0, mixing="retain_only",
                     schedule="cosine")
    expected = [0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(4)]  # per step, T = 4 steps
    assert lrs_used(cfg) == pytest.approx(expected)
    assert _lr_at(cfg, 0, 2, 1) == pytest.approx(0.5) and _lr_at(cfg, 3, 4, 1) == pytest.approx(0.0)


def test_divergence_raises_with_the_step():
    forget, _ = data()
    ctx = UnlearnContext(original=linear(), forget=forget, num_classes=3)
    cfg = LoopConfig(epochs=5, lr=1e30, batch_size=4, mixing="forget_only")
    with pytest.raises(DivergenceError, match=r"diverged at step \d+") as e:
        run_engine(linear(), ctx, Parts(forget=NegativeCE()), cfg)
    assert 1 <= e.value.step <= 5 * math.ceil(N_F / 4)  # the first loss is finite


def _run(seed):
    forget, retain = data()
    model = linear()
    ctx = UnlearnContext(original=model, forget=forget, retain=retain, num_classes=3, seed=seed)
    run_engine(model, ctx, Parts(forget=NegativeCE(), retain=RetainCE()), LoopConfig(epochs=3, lr=0.05, batch_size=BS))
    return model.state_dict()


def test_same_seed_is_bitwise_reproducible_and_seed_matters():
    a, b, c = _run(0), _run(0), _run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("mixing", ["forget_only", "retain_only", "sequential", "paired", "mixed"])
def test_step_count_matches_the_plan(mixing):
    from forgetkit.unlearn.engine import _plan, _steps_per_epoch

    for n_f, n_r, bs in [(10, 30, 8), (7, 1, 3), (0, 9, 4), (100, 1000, 64), (5, 5, 10)]:
        plan = _plan(mixing, n_f, n_r, bs, torch.Generator().manual_seed(0), True)
        assert len(plan) == _steps_per_epoch(mixing, n_f, n_r, bs)
