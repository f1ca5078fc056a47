"""The streaming data path: a Dataset read at every step gives the resident path's model, transforms run
at every read, every registered method either streams (to the same model) or refuses by name."""
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

import forgetkit.api as api
import forgetkit.inputs.splits as splits
from forgetkit import unlearn
from forgetkit.methods import METHODS
from forgetkit.testing import conformance_problem
from forgetkit.unlearn.streaming import StreamingUnsupported, StreamSplit

N_F, N_R, N_H = 40, 260, 120


@pytest.fixture(scope="module")
def problem():
    p = conformance_problem()
    x = torch.cat([p.forget.x[:N_F], p.retain.x[:N_R]])
    y = torch.cat([p.forget.y[:N_F], p.retain.y[:N_R]])
    return p.model, x, y, (p.heldout.x[:N_H], p.heldout.y[:N_H])


FORGET = np.arange(N_F)  # class 0: the whole class in this training set


def same(a, b, atol=1e-6) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.allclose(sa[k].float(), sb[k].float(), atol=atol, rtol=0) for k in sa)


class Shift(Dataset):
    """A Dataset with a transform: adds ``shift`` to every image (uint8 in, float in [0, 1] out)."""

    def __init__(self, x, y, shift=0.0):
        self.x, self.y, self.shift, self.reads = x, y, shift, 0
        self.transform = self._apply

    def _apply(self, img):
        return (img.float() / 255 + self.shift).clamp(0, 1)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        self.reads += 1
        return self.transform(self.x[i]), int(self.y[i])


@pytest.mark.parametrize("method, options", [("rl", {"epochs": 2}), ("ga", {"epochs": 2, "lr": 0.01}),
                                             ("scrub", {"epochs": 2, "msteps": 1}), ("sfron", {"n_iters": 6})])
def test_streaming_gives_the_resident_model(problem, method, options):
    model, x, y, held = problem
    kw = dict(method=method, seed=3, forget_classes=[0], heldout=held, **options)
    resident = unlearn(model, (x, y), FORGET, data_path="resident", **kw)
    streamed = unlearn(model, TensorDataset(x, y), FORGET, data_path="streaming", **kw)
    assert resident.info["data_path"] == "resident" and streamed.info["data_path"] == "streaming"
    assert same(resident.model, streamed.model, atol=0) if method != "sfron" else same(resident.model, streamed.model)
    assert not same(resident.model, model)  # the run changed the model


def test_a_stop_rule_reads_the_streamed_forget_set_and_stops_at_the_same_step(problem):
    model, x, y, held = problem
    kw = dict(method="ga", epochs=20, lr=0.02, batch_size=16, seed=0, heldout=held, forget_classes=[0],
              stop={"when": "indistinguishable", "every": 2})
    resident = unlearn(model, (x, y), FORGET, data_path="resident", **kw)
    streamed = unlearn(model, TensorDataset(x, y), FORGET, data_path="streaming", **kw)
    assert resident.info["stopped_at"] is not None and resident.info["stopped_at"] < 20 * 3  # it stopped early
    assert streamed.info["stopped_at"] == resident.info["stopped_at"]
    assert same(resident.model, streamed.model, atol=0)


def test_streaming_leaves_the_global_rng_to_the_model(problem):
    """Dropout draws from the global RNG: the streaming loaders must not draw from it too."""
    _, x, y, _ = problem
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                torch.nn.Linear(32, 10))
    kw = dict(method="rl", epochs=2, seed=0)
    resident = unlearn(model, (x, y), FORGET, data_path="resident", **kw)
    streamed = unlearn(model, TensorDataset(x, y), FORGET, data_path="streaming", **kw)
    assert same(resident.model, streamed.model, atol=0)


def test_a_dataloader_streams_with_its_workers_and_collate(problem):
    model, x, y, _ = problem
    calls = []

    def collate(items):
        calls.append(len(items))
        return torch.stack([a for a, _ in items]), torch.tensor([int(b) for _, b in items])

    loader = DataLoader(TensorDataset(x, y), batch_size=999, collate_fn=collate)
    res = unlearn(model, loader, FORGET, method="rl", epochs=1, batch_size=64, seed=1)
    assert res.info["data_path"] == "streaming"
    # the check pass (batches of 256), the model's output probe (2), then one epoch of engine batches of 64
    # (forget and retain rows of a mixed batch collated apart, as the resident path scales them apart)
    assert calls[:3] == [256, 44, 2] and sum(calls[3:]) == len(y) and max(calls[3:]) <= 64
    ref = unlearn(model, (x, y), FORGET, method="rl", epochs=1, batch_size=64, seed=1)
    assert same(ref.model, res.model, atol=0)


def test_a_transform_runs_at_every_read_and_changes_the_result(problem):
    model, x, y, _ = problem
    plain = Shift(x, y, 0.0)
    kw = dict(method="rl", epochs=2, seed=0)
    res = unlearn(model, plain, FORGET, **kw)
    assert res.info["data_path"] == "streaming"  # auto: the Dataset holds a transform
    # the check pass and two epochs read every sample three times; item 0 is read twice more
    # (the (x, y) check and the model's output probe) and item 1 once more (the probe)
    assert plain.reads == 3 * len(y) + 3
    same_as_tensors = unlearn(model, ((x.float() / 255), y), FORGET, **kw)
    assert same(res.model, same_as_tensors.model)
    shifted = unlearn(model, Shift(x, y, 0.2), FORGET, **kw)
    assert not same(res.model, shifted.model, atol=1e-3)


def test_auto_choice(problem, monkeypatch):
    model, x, y, _ = problem
    ds = TensorDataset(x, y)
    assert api.choose_data_path((x, y), "auto", "rl") == "resident"
    assert api.choose_data_path(ds, "auto", "rl") == "resident"  # no transform, fits: the fast path
    assert api.choose_data_path(DataLoader(ds, batch_size=8), "auto", "rl") == "streaming"
    assert api.choose_data_path(Shift(x, y), "auto", "rl") == "streaming"
    assert api.choose_data_path(Subset(Shift(x, y), range(10)), "auto", "rl") == "streaming"
    assert api.choose_data_path((x, y), "streaming", "rl") == "streaming"
    assert api.choose_data_path(Shift(x, y), "resident", "rl") == "resident"
    monkeypatch.setattr(splits, "memory_limit", lambda: 1000.0)
    assert api.choose_data_path(ds, "auto", "rl") == "streaming"  # too large for the budget
    with pytest.raises(ValueError, match="the data does not fit in memory and method 'ssd' cannot stream"):
        api.choose_data_path(ds, "auto", "ssd")


def test_bad_data_path_and_a_method_that_cannot_stream(problem):
    model, x, y, _ = problem
    with pytest.raises(ValueError, match=r"data_path must be one of \('auto', 'resident', 'streaming'\), got 'disk'"):
        unlearn(model, (x, y), FORGET, method="rl", data_path="disk")
    with pytest.raises(ValueError, match="method 'ssd' cannot stream: it needs its splits as whole tensors"):
        unlearn(model, TensorDataset(x, y), FORGET, method="ssd", data_path="streaming")
    with pytest.warns(UserWarning, match="method 'ssd' does not stream, so train is read into memory once"):
        res = unlearn(model, Shift(x, y), FORGET, method="ssd")
    assert res.info["data_path"] == "resident"


def test_streamed_data_is_checked_up_front(problem):
    model, x, y, _ = problem
    xf = x.float() / 255
    xf[[5, 77]] = float("nan")
    with pytest.raises(ValueError, match=r"train: samples \[5, 77\] contain NaN or inf \(2 in all, forget samples "
                                         r"among them: \[5\]\)"):
        unlearn(model, TensorDataset(xf, y), FORGET, method="rl", data_path="streaming")
    bad = y.clone()
    bad[270] = 10
    with pytest.raises(ValueError, match=r"train: label 10 is out of range for 10 classes \(samples \[270\]\)"):
        unlearn(model, TensorDataset(x, bad), FORGET, method="rl", data_path="streaming")
    loud = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    with pytest.raises(ValueError, match="the DataLoader shuffles"):
        unlearn(model, loud, FORGET, method="rl", data_path="streaming")
    triples = DataLoader(TensorDataset(x, y, torch.arange(len(y))), batch_size=8)
    with pytest.raises(ValueError, match=r"train: DataLoader batch 0 must be an \(x, y\) pair, got 3 values"):
        unlearn(model, triples, FORGET, method="rl")
    onehot = torch.nn.functional.one_hot(y, 10)
    with pytest.raises(ValueError, match="looks one-hot"):
        unlearn(model, TensorDataset(x, onehot), FORGET, method="rl", data_path="streaming")
    loud_images = TensorDataset(x.float(), y)  # 0..255 floats
    with pytest.raises(ValueError, match=r"images must be uint8 or float in \[0, 1\], got float values in \[0, 255\]"):
        unlearn(model, loud_images, FORGET, method="rl", data_path="streaming")
    sampled = DataLoader(TensorDataset(x, y), batch_size=8, sampler=list(range(len(y)))[::-1])
    with pytest.raises(ValueError, match="the DataLoader has its own sampler"):
        unlearn(model, sampled, FORGET, method="rl")


class Endless(torch.utils.data.IterableDataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        return iter(zip(self.x, self.y))


def test_streaming_refusals_before_anything_runs(problem, monkeypatch):
    model, x, y, held = problem
    with pytest.raises(ValueError, match="train: streaming reads samples by position, which an iterable dataset"):
        unlearn(model, DataLoader(Endless(x, y), batch_size=8), FORGET, method="rl", data_path="streaming")
    monkeypatch.setattr(splits, "memory_limit", lambda: 1000.0)
    with pytest.raises(ValueError, match=r"with test=\.\.\., the streamed forget and retain sets are read into memory"):
        unlearn(model, TensorDataset(x, y), FORGET, method="rl", data_path="streaming", test=held)


def test_streamed_inputs_refuse_whole_tensor_use():
    split = StreamSplit(TensorDataset(torch.zeros(5, 2), torch.zeros(5)), torch.arange(5), torch.zeros(5), (2,), "forget")
    assert split.x[torch.tensor([0, 3])].shape == (2, 2) and split.x.shape == (5, 2) and split.x.dim() == 2
    assert [len(c) for c in split.x.split(2)] == [2, 2, 1]
    with pytest.raises(StreamingUnsupported, match=r"forget: this split is streamed .* asked for x.float"):
        split.x.float()
    with pytest.raises(StreamingUnsupported, match=r"forget: this split is streamed .* asked for cat\(x\)"):
        torch.cat([torch.zeros(1, 2), split.x])


def test_streaming_with_test_scores_the_run(problem):
    model, x, y, held = problem
    res = unlearn(model, Shift(x, y), FORGET, method="rl", epochs=2, lr=0.05, test=held, forget_classes=[0])
    assert res.info["data_path"] == "streaming"
    assert res.metrics["FA"] < res.original_metrics["FA"] and res.metrics["RA"] > 50


def registry_options(cls) -> dict:
    opts = cls.smoke_options({})
    names = {f for f in getattr(cls, "__dataclass_fields__", {})}
    if "epochs" in names:
        opts["epochs"] = 1
    return opts


@pytest.mark.parametrize("name", sorted(METHODS.names()))
def test_every_method_streams_to_the_same_model_or_refuses_by_name(problem, name):
    """A method declaring ``streams`` gives the resident model on a streamed Dataset; any other is refused
    before it runs, by name."""
    model, x, y, held = problem
    cls = METHODS.get(name)
    kw = dict(method=name, seed=0, heldout=held, forget_classes=[0], **registry_options(cls))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not cls.streams:
            with pytest.raises(ValueError, match=f"method {name!r} cannot stream"):
                unlearn(model, TensorDataset(x, y), FORGET, data_path="streaming", **kw)
            return
        resident = unlearn(model, (x, y), FORGET, data_path="resident", **kw)
        streamed = unlearn(model, TensorDataset(x, y), FORGET, data_path="streaming", **kw)
    assert same(resident.model, streamed.model), f"{name}: streaming changed the model"


def test_a_plugin_that_claims_to_stream_but_needs_whole_tensors_is_named(problem, clean_registries):
    from dataclasses import dataclass

    from forgetkit.methods.base import METHODS as registry, Method

    @registry.register("whole_tensor")
    @dataclass
    class WholeTensor(Method):
        """Reads the whole forget tensor (so it cannot stream), without declaring it."""

        def run(self, model, ctx, prepared, progress):
            ctx.forget.x.to(ctx.device)
            return {}

    model, x, y, _ = problem
    with pytest.raises(StreamingUnsupported, match=r"method 'whole_tensor' cannot run on streamed data: forget: "
                                                   r"this split is streamed .* asked for x.to"):
        unlearn(model, TensorDataset(x, y), FORGET, method="whole_tensor", data_path="streaming")


def test_step_reader_mixes_a_resident_and_a_streamed_split():
    """A method may swap in a resident split of its own (e.g. learnt noise) beside a streamed one."""
    from forgetkit.data.base import Split
    from forgetkit.unlearn.streaming import StepReader

    x, y = torch.arange(40.).reshape(10, 4), torch.arange(10)
    retain = StreamSplit(TensorDataset(x, y), torch.arange(5, 10), y[5:], (4,), "retain")
    reader = StepReader(Split(x[:5], y[:5]), retain, seed=0)
    empty = torch.empty(0, dtype=torch.long)
    steps = [(torch.tensor([0, 1]), torch.tensor([2, 3]), 0), (empty, torch.tensor([4]), 1), (torch.tensor([4]), empty, 2)]
    got = [tuple(None if v is None else v[:, 0].tolist() for v in pair) for pair in reader.epoch(steps, 0)]
    assert got == [([0.0, 4.0], [28.0, 32.0]), (None, [36.0]), ([16.0], None)]
