"""FaLW weighting: formula limits, balance factor, Beta fit, estimation schedules, end to end."""
import warnings

import pytest
import torch
from torch import nn

from forgetkit.data.base import Split
from forgetkit.unlearn.context import UnlearnContext
from forgetkit.unlearn.falw import (FaLW, FaLWBeta, FaLWRank, balance_factor, beta_deviation, class_moments,
                                    class_sorted_keys, deviation_weight, falw_weight, fit_beta, rank_deviation, zscores)
from forgetkit.unlearn.objectives import Batch
from forgetkit.unlearn.weightings import WEIGHTINGS, build_weighting

C = 3


def test_limits_and_centre():
    w = falw_weight(torch.tensor([-1e6, 0.0, 1e6]), 1.0)
    assert torch.allclose(w, torch.tensor([0.0, 1.0, 2.0]), atol=1e-6)


@pytest.mark.parametrize("balance", [0.5, 1.0, 2.0])
def test_monotonic_in_z_and_bounded(balance):
    z = torch.linspace(-6, 6, 401)
    w = falw_weight(z, balance, eta=1.0)
    assert (w.diff() >= 0).all() and (w.diff() > 0).sum() > 300
    assert w.min() >= 0 and w.max() <= 2


def test_balance_factor_steepness_and_tau_zero():
    counts = torch.tensor([80, 15, 5])
    b = balance_factor(counts, C, tau=0.15)
    assert b[0] < 1 < b[1] < b[2]  # head damped, tail amplified
    w = falw_weight(torch.full((3,), 0.3), b)
    assert ((w - 1).diff() > 0).all()  # same z: the tail class moves furthest from 1
    assert torch.equal(balance_factor(counts, C, tau=0.0), torch.ones(3))
    assert torch.allclose(b, ((100 / (C * counts.double())) ** 0.15).float(), atol=1e-6)


def test_zscores_clamp_sigma():
    z = zscores(torch.tensor([0.6]), torch.tensor([0.5]), torch.tensor([0.0]), sigma_min=1e-2)
    assert torch.allclose(z, torch.tensor([10.0]))


def test_beta_mle_recovers_parameters_and_deviation_sign():
    torch.manual_seed(0)
    p = torch.cat([torch.distributions.Beta(2.0, 5.0).sample((4000,)), torch.distributions.Beta(8.0, 1.5).sample((4000,))])
    y = torch.repeat_interleave(torch.arange(2), 4000)
    a, b = fit_beta(p, y, 2)
    assert torch.allclose(a, torch.tensor([2.0, 8.0], dtype=a.dtype), rtol=0.1)
    assert torch.allclose(b, torch.tensor([5.0, 1.5], dtype=b.dtype), rtol=0.1)
    s = beta_deviation(torch.tensor([0.01, 0.99]), a[:1].repeat(2), b[:1].repeat(2))
    assert s[0] < -0.9 and s[1] > 0.99


def test_class_moments_population_std():
    n, mu, sd = class_moments(torch.tensor([0.2, 0.4, 0.9]), torch.tensor([0, 0, 2]), C)
    assert n.tolist() == [2, 0, 1]
    assert torch.allclose(mu, torch.tensor([0.3, 0.0, 0.9])) and torch.allclose(sd, torch.tensor([0.1, 0.0, 0.0]))


# -- the weighting plug-in --------------------------------------------------------------------

def _ctx(heldout_y=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    fy = torch.tensor([0] * 12 + [1] * 6 + [2] * 2)
    hy = torch.tensor([0, 1, 2] * 10) if heldout_y is None else heldout_y
    split = lambda y: Split(torch.randn(len(y), 4, generator=g), y)  # noqa: E731
    return UnlearnContext(original=nn.Linear(4, C), forget=split(fy), heldout=split(hy), num_classes=C, seed=seed)


class CountingModel(nn.Linear):
    """A linear model that counts how many held-out samples it saw in eval mode."""

    def __init__(self):
        super().__init__(4, C)
        self.eval_samples = 0

    def forward(self, x):
        if not self.training:
            self.eval_samples += len(x)
        return super().forward(x)


def _weights(wt, model, ctx):
    return wt(model(ctx.forget.x).detach(), Batch(ctx.forget.x, ctx.forget.y, torch.arange(len(ctx.forget))), ctx)


def test_registered_and_needs_heldout():
    assert {"falw", "falw_beta", "falw_rank"} <= set(WEIGHTINGS.names())
    assert build_weighting("falw", tau=0.2).needs == frozenset({"heldout"})
    with pytest.raises(ValueError, match="estimate"):
        build_weighting("falw", estimate="sometimes")


@pytest.mark.parametrize("estimate, k, expected", [("every_step", 1, 5 * 30), ("every_k", 3, 2 * 30),
                                                   ("running", 1, 30 + 4 * 7)])
def test_schedule_cost(estimate, k, expected):
    ctx, model = _ctx(), CountingModel()
    wt = FaLW(estimate=estimate, k=k, running_batch=7)
    wt.setup(ctx, model)
    for step in range(5):
        wt.before_step(model, ctx, step)
    assert model.eval_samples == expected


def test_every_k_keeps_statistics_between_refreshes():
    ctx, model = _ctx(), nn.Linear(4, C)
    wt = FaLW(estimate="every_k", k=3)
    wt.setup(ctx, model)
    wt.before_step(model, ctx, 0)
    mu0 = wt._mu.clone()
    with torch.no_grad():
        model.bias += torch.tensor([3.0, -3.0, 0.0])
    wt.before_step(model, ctx, 1)
    assert torch.equal(wt._mu, mu0)
    wt.before_step(model, ctx, 3)
    assert not torch.equal(wt._mu, mu0)


def test_running_estimate_converges_to_full_set():
    ctx, model = _ctx(), nn.Linear(4, C)
    running, full = FaLW(estimate="running", running_batch=7), FaLW(estimate="every_step")
    running.setup(ctx, model)
    full.setup(ctx, model)
    running.before_step(model, ctx, 0)
    with torch.no_grad():
        model.weight.mul_(3.0)
    full.before_step(model, ctx, 1)
    for step in range(1, 6):  # 5 × 7 = 35 ≥ 30 held-out samples: every probability refreshed
        running.before_step(model, ctx, step)
        if step == 1:
            assert not torch.allclose(running._mu, full._mu)
    assert torch.allclose(running._mu, full._mu, atol=1e-6) and torch.allclose(running._sigma, full._sigma, atol=1e-6)


@pytest.mark.parametrize("cls", [FaLW, FaLWBeta, FaLWRank])
def test_weights_detached_in_range_and_logged(cls):
    ctx, model = _ctx(), nn.Linear(4, C)
    wt = cls(estimate="every_step")
    wt.setup(ctx, model)
    wt.before_step(model, ctx, 0)
    logits = model(ctx.forget.x)  # requires grad
    w = wt(logits, Batch(ctx.forget.x, ctx.forget.y, torch.arange(len(ctx.forget))), ctx)
    assert not w.requires_grad and w.shape == (20,) and (w >= 0).all() and (w <= 2).all()
    assert len(set(w.tolist())) > 3
    stats = wt.end_epoch(0)
    assert stats["w_mean"] == pytest.approx(w.mean().item(), abs=1e-6)
    assert {"w_head", "w_tail", "w_frac_low", "w_frac_high"} <= set(stats)
    assert stats["w_head"] == pytest.approx(w[:12].mean().item(), abs=1e-6)  # class 0 is the head


def test_absent_class_gets_weight_one_and_a_warning():
    ctx, model = _ctx(heldout_y=torch.tensor([0, 1] * 15)), nn.Linear(4, C)
    wt = FaLW(estimate="every_step")
    with pytest.warns(UserWarning, match=r"\[2\]"):
        wt.setup(ctx, model)
    wt.before_step(model, ctx, 0)
    w = _weights(wt, model, ctx)
    assert torch.equal(w[ctx.forget.y == 2], torch.ones(2))
    assert (w[ctx.forget.y != 2] != 1).all()


def test_end_to_end_rl_with_falw_through_the_runner(tmp_path):
    from forgetkit.bench.config import parse_config
    from forgetkit.bench.runner import run_experiment

    cfg = parse_config({"name": "falw-tiny", "dataset": "digits", "train_size": 300, "test_size": 100,
                        "model": {"name": "mlp"}, "train": {"epochs": 1},
                        "requests": [{"kind": "longtail", "ratio": 0.2, "gamma": 1.0}],
                        "methods": [{"name": "rl", "label": "FaLW", "weightings": ["uniform", "falw"],
                                     "options": {"epochs": 2},
                                     "weighting_options": {"falw": {"estimate": "every_step"}}}]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = run_experiment(cfg, tmp_path / "out", show_progress=False).report
    from forgetkit.bench.report import load_run

    _, rows, failed, artifacts = load_run(tmp_path / "out", with_artifacts=True)
    falw = [r for r in rows if r["weighting"] == "falw"]
    assert len(rows) == 4 and len(falw) == 1 and not failed
    hist = artifacts[falw[0]["key"]]["history"]
    m = falw[0]["metrics"]
    assert all(isinstance(m[k], float) and m[k] == m[k] for k in ("FA", "RA", "TA", "MIA", "AvgGap"))
    assert len(hist) == 2 and 0 < hist[-1]["w_mean"] < 2 and "w_tail" in hist[-1]
    assert "FaLW + FaLW" in report.read_text()  # paper names: label FaLW, weighting FaLW


def test_every_k_refreshes_when_step_ids_skip():
    ctx, model = _ctx(), CountingModel()
    wt = FaLW(estimate="every_k", k=10)  # SFRon hands the weighting every 6th step id only
    wt.setup(ctx, model)
    for step in (0, 6, 12, 18, 24):
        wt.before_step(model, ctx, step)
    assert model.eval_samples == 3 * 30  # refreshed at 0, 12 and 24


def test_rank_deviation_matches_a_per_sample_midrank_reference():
    g = torch.Generator().manual_seed(3)
    held_p = torch.cat([torch.rand(40, generator=g), torch.tensor([0.5, 0.5, 0.5])])  # ties
    held_y = torch.randint(0, C, (43,), generator=g)
    held_y[-3:] = 1
    p = torch.cat([torch.rand(30, generator=g), torch.tensor([0.5, 0.0, 1.0])])
    y = torch.randint(0, C, (33,), generator=g)
    y[-3:] = 1
    s = rank_deviation(p, y, *class_sorted_keys(held_p, held_y, C))
    for pi, yi, si in zip(p.tolist(), y.tolist(), s.tolist()):
        h = held_p[held_y == yi]
        cdf = ((h < pi).sum() + 0.5 * (h == pi).sum()).item() / len(h)
        assert si == pytest.approx(2 * cdf - 1, abs=1e-6)
    assert s[-2] == -1 and s[-1] == 1  # below / above every held-out value


def test_rank_score_is_unbiased_where_the_gaussian_z_is_not():
    """A forget set distributed exactly like unseen data should keep a mean weight of 1."""
    d = torch.distributions.Beta(8.0, 1.0)  # left-skewed, like a classifier's true-class probabilities
    torch.manual_seed(0)
    held, forget = d.sample((4000,)), d.sample((4000,))
    y0 = torch.zeros(4000, dtype=torch.long)
    gauss = falw_weight(zscores(forget, held.mean(), held.std(unbiased=False)), 1.0).mean().item()
    rank = deviation_weight(rank_deviation(forget, y0, *class_sorted_keys(held, y0, 1)), 1.0).mean().item()
    assert gauss > 1.05  # the Gaussian z-score pushes an already unseen-like forget set to forget more
    assert rank == pytest.approx(1.0, abs=0.02)


# -- precision of the held-out statistics ---------------------------------------------------------

class AutocastSpy(nn.Linear):
    """Records, per forward, whether autocast was on for the input's device and the output dtype."""

    def __init__(self):
        super().__init__(4, C)
        self.seen = []

    def forward(self, x):
        out = super().forward(x)
        self.seen.append((torch.is_autocast_enabled(x.device.type), out.dtype))
        return out


def test_heldout_statistics_are_fp32_even_inside_an_autocast_region():
    """The engine trains under bf16 autocast on CUDA; FaLW's held-out pass must switch it off.
    Run on CPU with CPU autocast standing in for CUDA's (the old code only disabled CUDA autocast)."""
    from forgetkit.unlearn.falw import heldout_probs

    ctx, model = _ctx(), AutocastSpy()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        p = heldout_probs(model.train(), ctx.heldout.x, ctx.heldout.y)
        wt = FaLW(estimate="every_step")
        wt.setup(ctx, model)
        wt.before_step(model, ctx, 0)
    assert model.seen and all(not on and dtype == torch.float32 for on, dtype in model.seen)
    assert p.dtype == torch.float32 and model.training  # train mode restored
    with torch.no_grad():
        ref = torch.softmax(nn.Linear.forward(model, ctx.heldout.x), 1).gather(1, ctx.heldout.y[:, None]).squeeze(1)
    assert torch.equal(p, ref)
