"""What the API refuses or warns about beyond malformed data: arguments that would run but give a
wrong or empty answer (epochs=0, a frozen model, forget_classes that are not whole classes,
probabilities for logits), frozen norm layers, and a user's input normalisation."""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from forgetkit import evaluate, unlearn
from forgetkit.inputs import ProbabilitiesWarning, UnchangedModelWarning
from forgetkit.metrics.core import avg_gap, evaluate_model, unlearning_deviation, without_classes
from forgetkit.models import build_model

N = 80
FORGET = list(range(0, N, 8))  # labels are i % 10: one sample of every class


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (N, 1, 8, 8), dtype=torch.uint8, generator=g), torch.arange(N) % 10


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model("mlp", (1, 8, 8), 10, hidden=16, depth=1)


def test_epochs_zero_is_refused(model, data):
    with pytest.raises(ValueError, match=r"epochs=0 would return the model unchanged; method 'rl' needs epochs >= 1"):
        unlearn(model, data, FORGET, method="rl", epochs=0)


def test_a_model_without_trainable_parameters_is_refused(model, data):
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match=r"model has 4 parameter tensors, all frozen \(requires_grad=False\)"):
        unlearn(model, data, FORGET, method="rl")
    with pytest.raises(ValueError, match="model has no parameters"):
        unlearn(nn.Sequential(nn.Flatten(), nn.Softmax(1)), data, FORGET, method="rl")


def test_forget_classes_must_be_whole_classes_of_the_forget_set(model, data):
    x, y = data
    threes = np.flatnonzero(y.numpy() == 3)
    with pytest.raises(ValueError, match=r"forget_classes: classes \[3\] have no samples in the forget set"):
        unlearn(model, data, [0, 1], method="rl", forget_classes=[3])
    with pytest.raises(ValueError, match=r"forget_classes: classes \[3\] still have samples outside the forget set"):
        unlearn(model, data, threes[:4], method="rl", forget_classes=[3])
    with pytest.raises(ValueError, match=r"forget_classes: classes \[12\] do not exist"):
        unlearn(model, data, threes, method="rl", forget_classes=[3, 12])
    with pytest.raises(ValueError, match="forget_classes must hold class indices"):
        unlearn(model, data, threes, method="rl", forget_classes=["3"])
    res = unlearn(model, data, threes, method="rl", forget_classes=3, epochs=1)  # one class as an integer
    assert res.info["steps"] >= 1
    f, r = (x[threes], y[threes]), (x[y != 3], y[y != 3])
    with pytest.raises(ValueError, match=r"forget_classes: classes \[4\] have no samples in the forget set"):
        evaluate({"m": model}, forget=f, retain=r, test=data, forget_classes=[4])


def test_probabilities_are_warned_about(model, data):
    probs = nn.Sequential(model, nn.Softmax(1))
    with pytest.warns(ProbabilitiesWarning, match="look like probabilities"):
        unlearn(probs, data, FORGET, method="rl", epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProbabilitiesWarning)  # logits, and log-probabilities, are fine
        unlearn(nn.Sequential(model, nn.LogSoftmax(1)), data, FORGET, method="rl", epochs=1)


def test_an_unchanged_model_is_warned_about(model, data):
    with pytest.warns(UnchangedModelWarning, match="left every parameter of the model as it was"):
        unlearn(model, data, FORGET, method="ga", epochs=1, lr=1e-30)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnchangedModelWarning)
        unlearn(model, data, FORGET, method="ga", epochs=1, lr=0.1)


def test_the_mia_shadow_set_is_checked_before_unlearning(model, data):
    x, y = data
    big_test = (torch.cat([x] * 2), torch.cat([y] * 2))
    with pytest.raises(ValueError, match=r"test: MIA-Efficacy takes one shadow member per test sample .* test has 160"):
        unlearn(model, data, FORGET, method="rl", test=big_test)


def test_evaluate_refuses_a_meaningless_tau_or_metric_list(model, data):
    f, r = (data[0][:10], data[1][:10]), (data[0][10:], data[1][10:])
    with pytest.raises(ValueError, match="tau must be a finite number >= 0, got nan"):
        evaluate({"m": model}, forget=f, retain=r, test=f, reference=model, tau=float("nan"))
    with pytest.raises(ValueError, match="metrics must be a non-empty list"):
        evaluate({"m": model}, forget=f, retain=r, test=f, metrics=[])


def test_evaluate_gives_the_metrics_of_the_previous_definition(data):
    """evaluate now scores with the benchmark's standard evaluator and derived measures; on this case
    every value equals what its own formulas gave before (no metric moved)."""
    x, y = data
    torch.manual_seed(1)
    a, ref = build_model("mlp", (1, 8, 8), 10, hidden=16, depth=1), build_model("mlp", (1, 8, 8), 10, hidden=16, depth=1)
    forget = np.flatnonzero(y.numpy() == 3)
    keep = np.setdiff1d(np.arange(N), forget)
    from forgetkit.data import Split
    f, r, t = Split(x[forget], y[forget]), Split(x[keep], y[keep]), Split(x[:40], y[:40])
    for classes in ((), (3,)):
        table = evaluate({"a": a}, forget=f, retain=r, test=t, reference=ref, forget_classes=classes)
        dev = torch.device("cpu")
        test = without_classes(t, classes)
        old = {n: evaluate_model(m, f, r, test, dev) for n, m in (("a", a), ("reference", ref))}
        for n in ("a", "reference"):
            want = {k: old[n][k] for k in ("FA", "RA", "TA", "MIA")}
            want["AvgGap"] = avg_gap(old[n], old["reference"])
            want |= {f"dev_{k}": v for k, v in
                     unlearning_deviation(old[n]["forget_probs"], old["reference"]["forget_probs"]).items()}
            assert table[n] == want


class _Normalise(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x - self.mean) / self.std


def test_normalize_is_the_model_seeing_normalised_inputs(model, data):
    """unlearn(normalize=(mean, std)) trains exactly as a model with the normalisation inside it
    would, returns the user's own model, and evaluate scores it the same way."""
    mean, std = 0.5, 0.25
    inside = nn.Sequential(_Normalise(mean, std), model)
    test = (data[0][:40], data[1][:40])
    a = unlearn(model, data, FORGET, method="rl", epochs=2, seed=3, normalize=(mean, std), test=test)
    b = unlearn(inside, data, FORGET, method="rl", epochs=2, seed=3, test=test)
    assert type(a.model) is type(model)
    for (_, p), (_, q) in zip(a.model.state_dict().items(), b.model[1].state_dict().items()):
        assert torch.equal(p, q)
    assert a.metrics == b.metrics
    f, r = (data[0][:8], data[1][:8]), (data[0][8:], data[1][8:])
    assert (evaluate({"m": model}, forget=f, retain=r, test=f, normalize=lambda z: (z - mean) / std)["m"]
            == evaluate({"m": inside}, forget=f, retain=r, test=f)["m"])
    with pytest.raises(ValueError, match=r"normalize: mean has 3 values but the inputs have 1 channels"):
        unlearn(model, data, FORGET, method="rl", normalize=([0.5, 0.5, 0.5], [0.2, 0.2, 0.2]))
    with pytest.raises(ValueError, match=r"normalize: every std must be > 0"):
        unlearn(model, data, FORGET, method="rl", normalize=(0.5, 0.0))


def _frozen_bn_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU()),
                        nn.Linear(16, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    for p in net[1].parameters():
        p.requires_grad_(False)
    return net


def test_frozen_batchnorm_keeps_its_statistics(data):
    net = _frozen_bn_model()
    frozen, trained = net[1][1].running_mean.clone(), net[3].running_mean.clone()
    out = unlearn(net, data, FORGET, method="rl", epochs=1).model
    assert torch.equal(out[1][1].running_mean, frozen) and out[1][1].num_batches_tracked == 0
    assert not torch.equal(out[3].running_mean, trained)  # a trainable block's norm layer still learns
    out = unlearn(net, data, FORGET, method="rl", epochs=1, update_frozen_stats=True).model
    assert not torch.equal(out[1][1].running_mean, frozen)


def test_audit_takes_the_same_normalize(model, data):
    """forgetkit.audit(normalize=...) scores exactly as a model with the normalisation inside it."""
    from forgetkit import audit

    mean, std = 0.5, 0.25
    inside = nn.Sequential(_Normalise(mean, std), model)
    x, y = data
    forget, heldout = (x[:40], y[:40]), (x[40:], y[40:])
    kw = dict(original=model, min_samples=2, n_boot=20, check_duplicates=False)
    a = audit(model, forget, heldout, normalize=(mean, std), **{**kw, "original": model})
    b = audit(inside, forget, heldout, **{**kw, "original": inside})
    assert a.to_dict()["after"] == b.to_dict()["after"] and a.verdict == b.verdict
    with pytest.raises(ValueError, match="normalize: every std must be > 0"):
        audit(model, forget, heldout, normalize=(0.5, 0.0))


def test_a_norm_layer_without_parameters_follows_its_block(data):
    """BatchNorm(affine=False) has no parameters of its own: frozen when the block around it is."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(64, 16), nn.BatchNorm1d(16, affine=False), nn.ReLU()),
                        nn.BatchNorm1d(16, affine=False), nn.Linear(16, 10))
    for p in net[1].parameters():
        p.requires_grad_(False)
    inner, outer = net[1][1].running_mean.clone(), net[2].running_mean.clone()
    out = unlearn(net, data, FORGET, method="rl", epochs=1).model
    assert torch.equal(out[1][1].running_mean, inner)
    assert not torch.equal(out[2].running_mean, outer)  # its nearest block with parameters (the model) trains


def test_the_warnings_are_one_public_family():
    import forgetkit

    assert issubclass(ProbabilitiesWarning, forgetkit.ForgetkitWarning)
    assert issubclass(UnchangedModelWarning, forgetkit.ForgetkitWarning)
    assert issubclass(forgetkit.ForgetkitWarning, UserWarning)
