"""Bad input to the Python API: each case is a clear error naming the problem, and the model is untouched."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from forgetkit import unlearn
from forgetkit.models import build_model

N = 60
FORGET = list(range(0, N, 6))  # every class once: labels are i % 10


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (N, 1, 8, 8), dtype=torch.uint8, generator=g), torch.arange(N) % 10


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model("mlp", (1, 8, 8), 10, hidden=16, depth=1)


def snapshot(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def unchanged(m, before):
    return all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_labels_out_of_range_negative_and_one_hot(model, data):
    x, y = data
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"train: label 11 is out of range for 10 classes \(samples \[3\]\)"):
        unlearn(model, (x, torch.where(torch.arange(N) == 3, 11, y)), FORGET, method="ga")
    with pytest.raises(ValueError, match=r"train: labels must be >= 0, found -1 at samples \[4\]"):
        unlearn(model, (x, torch.where(torch.arange(N) == 4, -1, y)), FORGET, method="ga")
    with pytest.raises(ValueError, match="looks one-hot.*argmax"):
        unlearn(model, (x, F.one_hot(y, 10)), FORGET, method="ga")
    with pytest.raises(ValueError, match="integer class indices"):
        unlearn(model, (x, y.float() + 0.5), FORGET, method="ga")
    with pytest.raises(ValueError, match=r"test: label 10 is out of range"):
        unlearn(model, (x, y), FORGET, method="ga", test=(x[:5], torch.full((5,), 10)))
    assert unchanged(model, before)


def test_output_size_must_match_the_classes(data):
    x, y = data
    few = build_model("mlp", (1, 8, 8), 5, hidden=16, depth=1)
    with pytest.raises(ValueError, match="label 9 is out of range for 5 classes"):
        unlearn(few, (x, y), FORGET, method="ga")
    many = build_model("mlp", (1, 8, 8), 12, hidden=16, depth=1)
    with pytest.raises(ValueError, match=r"12 outputs but the labels only go up to 9.*num_classes=12"):
        unlearn(many, (x, y), FORGET, method="ga")
    res = unlearn(many, (x, y), FORGET, method="ga", num_classes=12, epochs=1)  # deliberate: said explicitly
    assert res.model(x[:2].float() / 255).shape == (2, 12)
    ten = build_model("mlp", (1, 8, 8), 10, hidden=16, depth=1)
    with pytest.raises(ValueError, match="num_classes=5, but the model has 10 outputs"):
        unlearn(ten, (x, y), FORGET, method="ga", num_classes=5)


def test_float_images_outside_unit_range(model, data):
    x, y = data
    with pytest.raises(ValueError, match=r"train: images must be uint8 or float in \[0, 1\], got float values in \[0, 255\]"):
        unlearn(model, (x.float(), y), FORGET, method="ga")
    with pytest.raises(ValueError, match=r"images must be uint8 or float in \[0, 1\], got torch.int64"):
        unlearn(model, (x.long(), y), FORGET, method="ga")
    unlearn(model, (x.float() / 255, y), FORGET, method="ga", epochs=1)  # float in [0, 1] is fine


@pytest.mark.parametrize("split", ["train", "heldout", "test"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_data_is_named_up_front(model, data, split, value):
    x, y = data
    xf = x.float() / 255
    bad = xf.clone()
    bad[[7, 20], 0, 3, 3] = value
    given = {"train": (xf, y), "heldout": (xf, y), "test": (xf, y)}
    given[split] = (bad, y)
    before = snapshot(model)
    detail = ", none in the forget set" if split == "train" else ""  # FORGET holds 0, 6, ..., 54
    with pytest.raises(ValueError, match=rf"{split}: samples \[7, 20\] contain NaN or inf \(2 in all{detail}\)"):
        unlearn(model, given["train"], FORGET, method="ga", heldout=given["heldout"], test=given["test"])
    assert unchanged(model, before)


def test_non_finite_forget_samples_are_named_as_such(model, data):
    x, y = data
    bad = x.float() / 255
    bad[[6, 7], 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"samples \[6, 7\] contain NaN or inf \(2 in all, forget samples among them: \[6\]\)"):
        unlearn(model, (bad, y), FORGET, method="ga")


def test_falw_heldout_of_wrong_shape_or_too_small(model, data):
    x, y = data
    with pytest.raises(ValueError, match=r"heldout: samples have shape \(1, 4, 4\), but the training data's are \(1, 8, 8\)"):
        unlearn(model, (x, y), FORGET, method="rl", weighting="falw", heldout=(x[:, :, :4, :4], y))
    with pytest.raises(ValueError, match=r"heldout: forget classes \[0, 2, 4, 6, 8\] have fewer than 2 held-out samples \(\[1, 0, 0, 0, 0\]\)"):
        unlearn(model, (x, y), FORGET, method="rl", weighting="falw", heldout=(x[:1], y[:1]))
    res = unlearn(model, (x, y), FORGET, method="rl", weighting="falw", heldout=(x[:20], y[:20]), epochs=1)
    assert res.info["steps"] == 1


def test_devices(model, data):
    x, y = data
    res = unlearn(model, (x, y), FORGET, method="ga", device="auto", epochs=1)
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert next(res.model.parameters()).device.type == want
    with pytest.raises(ValueError, match="'gpu0' is not a device"):
        unlearn(model, (x, y), FORGET, method="ga", device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is available"):
            unlearn(model, (x, y), FORGET, method="ga", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_model_on_the_gpu_stays_there(model, data):
    x, y = data
    gpu = model.cuda()
    res = unlearn(gpu, (x, y), FORGET, method="ga", epochs=1)
    assert next(res.model.parameters()).is_cuda and next(gpu.parameters()).is_cuda
    cpu = unlearn(gpu, (x, y), FORGET, method="ga", epochs=1, device="cpu")
    assert not next(cpu.model.parameters()).is_cuda and next(gpu.parameters()).is_cuda


def test_option_types(model, data):
    x, y = data
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"method 'ga' options.epochs: expected int, got '3' \(str\)"):
        unlearn(model, (x, y), FORGET, method="ga", epochs="3")
    with pytest.raises(ValueError, match=r"options.epochs: expected int, got 2.5"):
        unlearn(model, (x, y), FORGET, method="ga", epochs=2.5)
    with pytest.raises(ValueError, match=r"options.sfron_mode: expected bool"):
        unlearn(model, (x, y), FORGET, method="ga", sfron_mode="no")
    with pytest.raises(ValueError, match=r"weighting 'falw' options.eta: expected float"):
        unlearn(model, (x, y), FORGET, method="rl", weighting="falw", weighting_options={"eta": "1"}, heldout=(x, y))
    assert unchanged(model, before)


class TupleModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = build_model("mlp", (1, 8, 8), 10, hidden=16, depth=1)

    def forward(self, x):
        out = self.body(x)
        return out, out.detach()


def test_model_returning_a_tuple(data):
    with pytest.raises(TypeError, match="returned a tuple, not a tensor of logits"):
        unlearn(TupleModel(), data, FORGET, method="ga")


def test_model_that_fails_on_the_data(data):
    x, y = data
    wrong = build_model("mlp", (3, 8, 8), 10, hidden=16, depth=1)
    with pytest.raises(ValueError, match=r"model fails on samples of shape \(1, 8, 8\)"):
        unlearn(wrong, (x, y), FORGET, method="ga")


class WithIndex(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i], i


def test_dataset_and_dataloader_must_yield_pairs(model, data):
    x, y = data
    with pytest.raises(ValueError, match=r"train: Dataset item 0 must be an \(x, y\) pair, got 3 values"):
        unlearn(model, WithIndex(x, y), FORGET, method="ga")
    loader = DataLoader(TensorDataset(x, y, torch.arange(N)), batch_size=16)
    with pytest.raises(ValueError, match=r"heldout: DataLoader batch 0 must be an \(x, y\) pair, got 3 values"):
        unlearn(model, (x, y), FORGET, method="rl", weighting="falw", heldout=loader)
    with pytest.raises(ValueError, match="drop_last=True"):
        unlearn(model, DataLoader(TensorDataset(x, y), batch_size=16, drop_last=True), FORGET, method="ga")
    with pytest.raises(ValueError, match="the DataLoader shuffles"):
        unlearn(model, DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True), FORGET, method="ga")
    with pytest.raises(TypeError, match="train must be a forgetkit Split"):
        unlearn(model, {"x": x, "y": y}, FORGET, method="ga")


def test_dataloader_and_dataset_give_the_same_model_as_tensors(model, data):
    x, y = data
    kw = dict(method="rl", epochs=2, seed=3)
    a = unlearn(model, (x, y), FORGET, **kw).model
    b = unlearn(model, DataLoader(TensorDataset(x, y), batch_size=7), FORGET, **kw).model
    c = unlearn(model, TensorDataset(x, y), FORGET, **kw).model
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]) and torch.equal(v, c.state_dict()[k])


def test_custom_losses(model, data):
    x, y = data
    neg_ce = lambda logits, t: -F.cross_entropy(logits, t, reduction="none")  # noqa: E731
    ga = unlearn(model, (x, y), FORGET, method="ga", epochs=2, lr=0.1).model
    mine = unlearn(model, (x, y), FORGET, method="ga", epochs=2, lr=0.1, forget_loss=neg_ce).model
    assert all(torch.equal(v, mine.state_dict()[k]) for k, v in ga.state_dict().items())  # same objective
    other = unlearn(model, (x, y), FORGET, method="ga", epochs=2, lr=0.1,
                    forget_loss=lambda logits, t: logits.logsumexp(1)).model
    assert not all(torch.equal(v, other.state_dict()[k]) for k, v in ga.state_dict().items())
    ft = unlearn(model, (x, y), FORGET, method="ft", epochs=1, lr=0.1).model
    ft_mine = unlearn(model, (x, y), FORGET, method="ft", epochs=1, lr=0.1,
                      retain_loss=lambda logits, t: F.cross_entropy(logits, t, reduction="none")).model
    assert all(torch.equal(v, ft_mine.state_dict()[k]) for k, v in ft.state_dict().items())
    with pytest.raises(ValueError, match=r"forget_loss must return one loss per sample, a tensor of shape \(10,\), got \(\)"):
        unlearn(model, (x, y), FORGET, method="ga", epochs=1, forget_loss=lambda z, t: F.cross_entropy(z, t))
    with pytest.raises(ValueError, match="retain set only; it has no forget term"):
        unlearn(model, (x, y), FORGET, method="ft", forget_loss=neg_ce)
    with pytest.raises(ValueError, match="forget set only; it has no retain term"):
        unlearn(model, (x, y), FORGET, method="ga", retain_loss=neg_ce)
    with pytest.raises(ValueError, match="'iu' is not an engine preset"):
        unlearn(model, (x, y), FORGET, method="iu", forget_loss=neg_ce)
    with pytest.raises(TypeError, match="forget_loss must be a function"):
        unlearn(model, (x, y), FORGET, method="ga", forget_loss="neg_ce")


def test_progress_seconds_and_original_metrics(model, data):
    x, y = data
    calls = []
    res = unlearn(model, (x, y), FORGET, method="rl", epochs=2, batch_size=16,
                  test=(x[:20], y[:20]), progress=lambda step, total: calls.append((step, total)))
    assert calls == [(i, 8) for i in range(1, 9)]  # 60 samples in batches of 16: 4 steps per epoch
    assert res.seconds > 0
    assert set(res.metrics) == set(res.original_metrics) == {"FA", "RA", "TA", "MIA"}
    assert list(res.table.rows) == ["original", "unlearned"]
    assert "original" in repr(res) and "unlearned" in repr(res)
    with pytest.raises(TypeError, match="progress must be a function"):
        unlearn(model, (x, y), FORGET, method="ga", progress=True)


def test_reference_with_other_output_size(model, data):
    x, y = data
    with pytest.raises(ValueError, match="the reference has 12 outputs but the model has 10"):
        unlearn(model, (x, y), FORGET, method="ga", test=(x, y),
                reference=build_model("mlp", (1, 8, 8), 12, hidden=16, depth=1))


def test_numpy_data_is_accepted(model, data):
    x, y = data
    res = unlearn(model, (x.numpy(), y.numpy()), np.array(FORGET), method="ga", epochs=1)
    assert res.info["steps"] == 1


@pytest.mark.parametrize("method", ["ga", "rl"])
def test_batchnorm_model_with_a_last_batch_of_one_sample(data, method):
    """10 forget samples in batches of 3 leave one alone: it joins the batch before it (documented)."""
    x, y = data
    torch.manual_seed(0)
    bn = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    out = unlearn(bn, (x, y), FORGET, method=method, epochs=1, batch_size=3, lr=1e-3)
    assert all(torch.isfinite(p).all() for p in out.model.parameters())
