"""Unit tests of the Formulation-1 engine: batch composition per mixing mode, loss normalisation,
learning-rate schedules, stop rules, divergence detection and determinism. Tiny linear models, random data."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from forgetkit.data.base import Split
from forgetkit.unlearn.context import UnlearnContext
from forgetkit.unlearn.engine import AnyStop, DivergenceError, LoopConfig, Parts, StopRule, _lr_at, run_engine
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


def group_steps(ev):
    """Recorder events → one {"f": [...], "r": [...]} dict of sample ids per optimiser step."""
    steps, cur = [], None
    for e in ev:
        if e[0] == "step":
            cur = {"f": [], "r": []}
            steps.append(cur)
        else:
            cur[e[0]] += e[1]
    return steps


def record(mixing, epochs=1, forget_epochs=None, with_retain=True):
    forget, retain = data()
    ev = []
    ctx = UnlearnContext(original=linear(), forget=forget, retain=retain if with_retain else None, num_classes=3)
    parts = Parts(forget=Recorder(ev, "f", -1.0), retain=Recorder(ev, "r"), weighting=_Steps(ev))
    run_engine(linear(), ctx, parts, LoopConfig(epochs=epochs, lr=0.01, batch_size=BS, mixing=mixing,
                                               forget_epochs=forget_epochs))
    return group_steps(ev)


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


# ---- stop rules ---------------------------------------------------------------------------------

class StopAt(StopRule):
    """Stops after optimiser step ``at``; records when it was asked and puts the model in eval mode."""

    def __init__(self, at, every):
        self.at, self.every, self.asked, self.set_up = at, every, [], 0

    def setup(self, model, ctx):
        self.set_up += 1

    def should_stop(self, model, ctx, step):
        model.eval()
        self.asked.append(step)
        return step >= self.at


def test_a_stop_rule_is_checked_every_k_steps_and_ends_the_run():
    forget, retain = data()
    model = linear()
    trained = []
    ctx = UnlearnContext(original=model, forget=forget, retain=retain, num_classes=3)
    rule = StopAt(at=6, every=3)
    cfg = LoopConfig(epochs=5, lr=0.05, batch_size=BS, mixing="retain_only")  # 4 steps per epoch
    log = run_engine(model, ctx, Parts(retain=RetainCE(), stop=rule), cfg,
                     progress=lambda s, t: trained.append(model.training))
    assert rule.set_up == 1 and rule.asked == [3, 6]
    assert log.stopped_at == 6 and log.steps == 6
    assert all(trained), "train mode must be restored after the rule switched to eval"
    assert [e["epoch"] for e in log.epochs] == [0, 1]  # the partial epoch is kept in the history


def test_without_a_stop_rule_the_run_goes_to_the_end():
    forget, retain = data()
    ctx = UnlearnContext(original=linear(), forget=forget, retain=retain, num_classes=3)
    log = run_engine(linear(), ctx, Parts(retain=RetainCE(), stop=StopAt(at=10**6, every=1)),
                     LoopConfig(epochs=2, lr=0.05, batch_size=BS, mixing="retain_only"))
    assert log.stopped_at is None and log.steps == 2 * math.ceil(N_R / BS)


def test_a_methods_stop_option_builds_the_rule_and_reports_stopped_at(monkeypatch):
    import sys
    import types

    from forgetkit.methods import build_method

    built = []

    def build_stop_rule(when, **options):
        assert when == "after"
        built.append(StopAt(**options))
        return built[-1]

    fake = types.ModuleType("forgetkit.unlearn.stopping")
    fake.build_stop_rule = build_stop_rule
    monkeypatch.setitem(sys.modules, "forgetkit.unlearn.stopping", fake)
    forget, retain = data()
    ctx = UnlearnContext(original=linear(), forget=forget, retain=retain, num_classes=3)
    _, info = build_method("rl", epochs=3, batch_size=BS, stop={"when": "after", "at": 4, "every": 2}).unlearn(linear(), ctx)
    assert info["stopped_at"] == 4 and info["steps"] == 4 and built[-1].asked == [2, 4]
    _, info = build_method("rl", epochs=1, batch_size=BS).unlearn(linear(), ctx)
    assert info["stopped_at"] is None
    with pytest.raises(ValueError, match="stop"):
        build_method("rl", stop={"every": 2})


def test_any_stop_checks_each_rule_on_its_own_period():
    a, b = StopAt(at=10**6, every=2), StopAt(at=9, every=3)
    both = AnyStop(a, b)
    assert both.every == 1
    model = linear()
    assert [s for s in range(1, 13) if both.should_stop(model, None, s)] == [9, 12]
    assert a.asked == [2, 4, 6, 8, 10, 12] and b.asked == [3, 6, 9, 12]


# ---- alternating and forget-led mixings ---------------------------------------------------------

def kinds(mixing, **kw):
    forget, retain = data()
    ev = []
    ctx = UnlearnContext(original=linear(), forget=forget, retain=retain, num_classes=3)
    parts = Parts(forget=Recorder(ev, "f", -1.0), retain=Recorder(ev, "r"), weighting=_Steps(ev))
    log = run_engine(linear(), ctx, parts, LoopConfig(lr=0.01, batch_size=BS, mixing=mixing, **kw))
    return ev, log


def test_alternating_puts_a_forget_step_before_every_kth_retain_step():
    ev, log = kinds("alternating", epochs=10, iterations=7, forget_every=3)
    seq = [e[0] for e in ev if e[0] != "step"]
    assert "".join(seq) == "frrrfrrrfr"  # iterations 0..6, a forget step at 0, 3 and 6
    assert log.steps == 10 and all(len(p) == BS for tag, p in ev if tag in "fr")
    assert sum(1 for e in ev if e[0] == "step") == 3  # the weighting is consulted on forget steps only
    retain_seen = [p for tag, ps in ev if tag == "r" for p in ps]
    assert sorted(retain_seen[:N_R - N_R % BS]) == sorted(set(retain_seen[:N_R - N_R % BS]))  # a stream: no repeats within a pass


def test_alternating_masks_and_clips_forget_steps_only():
    forget, retain = data()
    model = linear()
    ctx = UnlearnContext(original=model, forget=forget, retain=retain, num_classes=3)
    mask = {"weight": torch.zeros(3, 4, dtype=torch.bool), "bias": torch.ones(3, dtype=torch.bool)}
    snaps = [model.weight.detach().clone()]
    cfg = LoopConfig(epochs=1, lr=0.1, batch_size=BS, mixing="alternating", forget_every=2, iterations=4)
    run_engine(model, ctx, Parts(forget=NegativeCE(), retain=RetainCE(), mask=mask), cfg,
               progress=lambda s, t: snaps.append(model.weight.detach().clone()))
    # steps: F R R F R R  (iterations 0..3, forget at 0 and 2)
    moved = [not torch.equal(a, b) for a, b in zip(snaps, snaps[1:])]
    assert moved == [False, True, True, False, True, True]


def test_alternating_schedules_run_per_iteration():
    """lr and α follow the cosine over iterations; a forget step shares its iteration's values."""
    lr_seen, alpha_seen = [], []

    class Probe(ForgetObjective, RetainObjective):
        def __init__(self, tag):
            self.tag = tag

        def __call__(self, logits, batch, ctx):
            return logits.sum(1) * 0

    forget, retain = data()
    model = linear()
    ctx = UnlearnContext(original=model, forget=forget, retain=retain, num_classes=3)
    cfg = LoopConfig(epochs=2, lr=1.0, batch_size=BS, mixing="alternating", forget_every=2, iterations=4,
                     schedule="cosine", forget_weight=10.0, forget_weight_schedule="cosine")
    from forgetkit.unlearn import engine as eng

    orig_lr, orig_fw = eng.builtin_lr, eng._forget_weight
    try:
        eng.builtin_lr = lambda c, e, it, total: lr_seen.append((it, total)) or orig_lr(c, e, it, total)
        eng._forget_weight = lambda c, it, total: alpha_seen.append(orig_fw(c, it, total)) or orig_fw(c, it, total)
        run_engine(model, ctx, Parts(forget=Probe("f"), retain=Probe("r")), cfg)
    finally:
        eng.builtin_lr, eng._forget_weight = orig_lr, orig_fw
    assert lr_seen == [(0, 4), (0, 4), (1, 4), (2, 4), (2, 4), (3, 4)]
    assert alpha_seen == pytest.approx([10 * (1 + math.cos(math.pi * t / 4)) / 2 for t in (0, 0, 1, 2, 2, 3)])


def test_forget_led_repeats_each_forget_batch_with_successive_retain_batches():
    ev, log = kinds("forget_led", epochs=2, forget_repeats=3)
    steps = group_steps(ev)
    n_fb = math.ceil(N_F / BS)
    assert len(steps) == 2 * n_fb * 3 and log.steps == len(steps)
    for i in range(0, len(steps), 3):  # the same forget batch three times in a row
        assert steps[i]["f"] == steps[i + 1]["f"] == steps[i + 2]["f"]
    first_pass = [p for s in steps[:math.ceil(N_R / BS)] for p in s["r"]]
    assert sorted(first_pass) == list(range(N_R))  # the retain stream: one shuffled pass, then the next


def test_separate_forward_runs_forget_and_retain_rows_apart():
    sizes = []

    class Sizes(nn.Linear):
        def forward(self, x):
            sizes.append(len(x))
            return super().forward(x)

    forget, retain = data()
    torch.manual_seed(0)
    model = Sizes(4, 3)
    ctx = UnlearnContext(original=linear(), forget=forget, retain=retain, num_classes=3)
    for separate in (False, True):
        sizes.clear()
        run_engine(model, ctx, Parts(forget=NegativeCE(), retain=RetainCE()),
                   LoopConfig(epochs=1, lr=0.01, batch_size=BS, mixing="forget_led", separate_forward=separate))
        assert sizes == ([BS, BS, N_F - BS, BS] if separate else [2 * BS, N_F - BS + BS])


def test_loop_options_are_range_checked():
    for kw, field in [({"mixing": "zip"}, "mixing"), ({"forget_every": 0}, "forget_every"),
                      ({"forget_repeats": 0}, "forget_repeats"), ({"iterations": 0}, "iterations"),
                      ({"forget_weight_schedule": "linear"}, "forget_weight_schedule"), ({"epochs": None}, "epochs")]:
        with pytest.raises(ValueError, match=field):
            LoopConfig(**kw)
    forget, _ = data()
    ctx = UnlearnContext(original=linear(), forget=forget, num_classes=3)
    with pytest.raises(ValueError, match="alternating"):
        run_engine(linear(), ctx, Parts(forget=NegativeCE()), LoopConfig(mixing="alternating"))


def test_uint8_and_float_splits_are_each_scaled_before_they_meet():
    """A uint8-image forget split with a float retain split (SCAR's surrogates): both reach the model in [0, 1]."""
    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            seen.append(x.detach().clone())
            return self.lin(x.flatten(1))

    g = torch.Generator().manual_seed(0)
    forget = Split(torch.randint(0, 256, (4, 1, 2, 2), generator=g, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
    retain = Split(torch.rand(4, 1, 2, 2, generator=g), torch.zeros(4, dtype=torch.long))
    torch.manual_seed(0)
    model = Spy()
    ctx = UnlearnContext(original=model, forget=forget, retain=retain, num_classes=3)
    run_engine(model, ctx, Parts(forget=NegativeCE(), retain=RetainCE()), LoopConfig(epochs=1, lr=0.01, batch_size=8))
    x = torch.cat(seen)
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1 and len(x) == 8


def test_a_last_batch_of_one_sample_joins_the_one_before_it():
    """BatchNorm in train mode cannot normalise a single sample: torch raises on such a batch."""
    from forgetkit.unlearn.engine import _batches, _steps_per_epoch

    gen = torch.Generator().manual_seed(0)
    sizes = [len(b) for b in _batches(9, 4, gen)]
    assert sizes == [4, 5] and _steps_per_epoch("forget_only", 9, 0, 4) == 2
    assert [len(b) for b in _batches(1, 4, gen)] == [1] and _steps_per_epoch("forget_only", 1, 0, 4) == 1
    assert sorted(torch.cat(_batches(9, 4, gen)).tolist()) == list(range(9))
