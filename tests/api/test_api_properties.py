"""Generated API inputs (hypothesis): every call ends in a valid result or in a forgetkit error that
names the argument at fault, raised by forgetkit's own checks; never a raw torch or numpy traceback.

190 + 70 generated calls per run. Each example breaks at most one argument (indices, labels, shapes, dtypes, devices, model outputs,
classes, seeds, options, normalisation) of an otherwise valid call, so the test knows which argument
the message must name, and that an unbroken call must succeed. Tiny tensors, tiny models, one epoch.
"""
from __future__ import annotations

import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from torch import nn

import forgetkit
from forgetkit import evaluate, unlearn
from forgetkit.inputs import ProbabilitiesWarning

K = 3  # classes
PACKAGE = Path(forgetkit.__file__).parent
SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class TupleOut(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x), x


class Argmax(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x).argmax(1, keepdim=True).repeat(1, K)


class BatchMean(nn.Module):
    """One row of logits for the whole batch: fine on one sample, wrong on a batch."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x).mean(0, keepdim=True)


class NaNOut(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x) * float("nan")


def build(kind: str, in_features: int):
    """A tiny model of ``kind`` and the argument names its refusal must use (None: a valid model)."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 8), nn.ReLU(), nn.Linear(8, K))
    if kind == "logits":
        return mlp, None
    if kind == "batchnorm":  # a frozen first block with its own norm layer
        net = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(in_features, 8), nn.BatchNorm1d(8), nn.ReLU()),
                            nn.Linear(8, K))
        for p in net[1].parameters():
            p.requires_grad_(False)
        return net, None
    if kind == "batchnorm-trainable":
        return nn.Sequential(nn.Flatten(), nn.Linear(in_features, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, K)), None
    if kind == "half":
        return mlp.half(), ("model",)
    if kind == "probabilities":
        return nn.Sequential(mlp, nn.Softmax(1)), None
    if kind == "all-frozen":
        for p in mlp.parameters():
            p.requires_grad_(False)
        return mlp, ("model",)
    return {"tuple": TupleOut(mlp), "argmax": Argmax(mlp), "nan": NaNOut(mlp), "batch-mean": BatchMean(mlp),
            "one-output": nn.Sequential(nn.Flatten(), nn.Linear(in_features, 1)),
            "wrong-input": nn.Sequential(nn.Flatten(), nn.Linear(in_features + 1, K)),
            "not-a-module": lambda x: x}[kind], ("model",)


MODELS = st.sampled_from(["logits", "logits", "logits", "batchnorm", "probabilities", "all-frozen", "tuple",
                          "argmax", "nan", "one-output", "wrong-input", "not-a-module", "batch-mean", "half"])


@st.composite
def datasets(draw):
    """(x, y, kind) of n samples, labels i % K so every class is present."""
    n = draw(st.integers(4 * K, 10 * K))
    kind = draw(st.sampled_from(["image-uint8", "image-float", "tabular"]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    if kind == "image-uint8":
        x = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=g)
    elif kind == "image-float":
        x = torch.rand(n, 1, 4, 4, generator=g, dtype=draw(st.sampled_from([torch.float32, torch.float64])))
    else:
        x = torch.randn(n, 6, generator=g)
    y = (torch.arange(n) % K).to(draw(st.sampled_from([torch.int64, torch.int32, torch.uint8])))
    return x, y, kind


def broken_data(draw, x, y, kind):
    """A corruption of (x, y): the new pair and whether it must be refused."""
    how = draw(st.sampled_from(["nan", "negative-label", "label-out-of-range", "one-hot", "float-labels",
                                "integral-float-labels", "short-labels", "bool-inputs", "complex-inputs",
                                "images-0-255-float", "int64-images", "scalar-x", "2d-labels", "not-a-pair"]))
    n = len(y)
    if how == "nan":
        x = x.double() if not x.is_floating_point() else x.clone()
        x.view(n, -1)[draw(st.integers(0, n - 1)), 0] = float("nan")
    elif how == "negative-label":
        y = y.long().clone()
        y[draw(st.integers(0, n - 1))] = -1
    elif how == "label-out-of-range":
        y = y.long().clone()
        y[draw(st.integers(0, n - 1))] = K + draw(st.integers(0, 5))
    elif how == "one-hot":
        y = torch.nn.functional.one_hot(y.long(), K)
    elif how == "float-labels":
        y = y.float() + 0.5
    elif how == "integral-float-labels":
        return (x, y.float()), False  # 0., 1., 2. are class indices
    elif how == "short-labels":
        y = y[:-1]
    elif how == "bool-inputs":
        x = x > x.float().mean()
    elif how == "complex-inputs":
        x = torch.complex(x.float(), x.float())
    elif how == "images-0-255-float":
        if kind == "tabular":
            return (x, y), False  # tabular features have no range
        x = x.float() * 255 if kind == "image-float" else x.float() + 0.5
    elif how == "int64-images":
        if kind == "tabular":
            return (x.long(), y), False  # integer features are read as floats
        x = (x * 255).long() if x.is_floating_point() else x.long()
    elif how == "scalar-x":
        return (torch.tensor(1.0), y), True
    elif how == "2d-labels":
        y = y.view(-1, 1).repeat(1, 2) if n % 2 == 0 else y.view(1, -1)
    else:
        return (x, y, y), True
    return (x, y), True


def check(call, names: tuple[str, ...] | None, expect_warning=None):
    """Run ``call``: with ``names`` None it must succeed; else it must raise a forgetkit error naming one of them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = call()
        except (ValueError, TypeError, KeyError) as e:
            where = Path(traceback.extract_tb(e.__traceback__)[-1].filename).resolve()
            assert PACKAGE in where.parents, f"raised outside forgetkit ({where}): {type(e).__name__}: {e}"
            assert names is not None, f"a valid call was refused: {type(e).__name__}: {e}"
            assert any(n in str(e) for n in names), f"the message names none of {names}: {e}"
            return None
    assert names is None, f"a call breaking {names} was accepted"
    if expect_warning is not None:
        assert any(issubclass(w.category, expect_warning) for w in caught), [str(w.message) for w in caught]
    return result


ARGUMENTS = ["none", "none", "train", "forget_indices", "model", "device", "num_classes", "forget_classes", "seed",
             "epochs", "normalize", "heldout", "test", "update_frozen_stats"]


@settings(max_examples=190, **SETTINGS)
@given(data=datasets(), broken=st.sampled_from(ARGUMENTS), method=st.sampled_from(["rl", "ga", "ft"]),
       model_kind=MODELS, draw=st.data())
def test_unlearn_ends_in_a_result_or_a_named_refusal(data, broken, method, model_kind, draw):
    x, y, kind = data
    n = len(y)
    in_features = x[0].numel()
    model_kind = model_kind if broken == "model" else draw.draw(st.sampled_from(
        ["logits", "batchnorm", "batchnorm-trainable", "probabilities"]))
    model, model_names = build(model_kind, in_features)
    forget = sorted(draw.draw(st.sets(st.integers(0, n - 1), min_size=2, max_size=n // 2)))
    kw: dict = dict(method=method, epochs=1, batch_size=8)
    train = (x, y)
    names = model_names if broken == "model" else None
    if broken == "train":
        train, bad = broken_data(draw.draw, x, y, kind)
        names = ("train",) if bad else None
    elif broken == "forget_indices":
        forget, bad = draw.draw(st.sampled_from([
            ([n], True), ([-1, 0], True), ([0, 0, 1], True), ([], True), (list(range(n)), True),
            ([0.5, 1.0], True), ([[0, 1]], True), (np.array([0, 1], dtype=np.int32), False),
            (torch.tensor([0, 2]), False), ("01", True), ({0, 1}, True), (np.ones(n, dtype=bool), True),
            ([1], False)]))
        if forget == [1] and method == "ga" and model_kind == "batchnorm-trainable":
            bad = True  # one forget sample alone in a batch cannot pass a BatchNorm layer in train mode
        names = ("forget indices", "forget_indices") if bad else None
    elif broken == "device":
        kw["device"], bad = draw.draw(st.sampled_from([
            ("cpu", False), ("auto", False), (torch.device("cpu"), False), ("tpu", True), ("cuda:7", True),
            ("meta", True), (3.5, True), ("gpu0", True)]))
        names = ("device",) if bad else None
        if kw["device"] == "auto" and torch.cuda.is_available():
            kw["device"] = "cpu"
    elif broken == "num_classes":
        kw["num_classes"], bad = draw.draw(st.sampled_from([(K, False), (K + 1, True), (1, True), (2.5, True),
                                                            (True, True), ("3", True), (np.int64(K), False)]))
        names = ("num_classes",) if bad else None
    elif broken == "forget_classes":
        whole = [i for i in range(n) if y[i] == 0]
        rest = [i for i in forget if y[i] != 0][:2]
        forget = sorted(set(whole) | set(rest))
        kw["forget_classes"], bad = draw.draw(st.sampled_from([
            ([0], False), (0, False), ([1], True), ([K + 4], True), (["0"], True), ([-1], True), ([0, 0], True),
            (0.0, True), ([None], True)]))
        if kw["forget_classes"] == [1] and not rest:
            kw["forget_classes"] = [K + 4]
        names = ("forget_classes",) if bad else None
    elif broken == "seed":
        kw["seed"], bad = draw.draw(st.sampled_from([(7, False), (-1, True), (1.5, True), ("0", True), (2**70, True)]))
        names = ("seed",) if bad else None
    elif broken == "epochs":
        kw["epochs"], bad = draw.draw(st.sampled_from([(0, True), (-1, True), ("1", True), (1.5, True), (2, False)]))
        names = ("epochs",) if bad else None
    elif broken == "normalize":
        c = x.shape[1]
        kw["normalize"], bad = draw.draw(st.sampled_from([
            ((0.5, 0.25), False), ((0.5, 0.25, 0.1), True), (([0.5] * c, [0.25] * c), False), ({"mean": 0.1, "std": 2.0}, False),
            (lambda z: z * 2 - 1, False), ((0.5, 0.0), True), ((0.5, -1.0), True), ("imagenet", True),
            (([0.5] * (c + 1), [0.2] * (c + 1)), True), ((float("nan"), 1.0), True), ((0.5,), True),
            ((["a"], [1.0]), True)]))
        names = ("normalize",) if bad else None
    elif broken == "heldout":
        held, bad = broken_data(draw.draw, x, y, kind)
        kw["heldout"] = held
        names = ("heldout",) if bad else None
    elif broken == "test":
        test, bad = draw.draw(st.sampled_from(["ok", "too-large", "other-shape", "label", "nan"])), True
        if test == "ok":
            kw["test"], bad = (x[:K], y[:K]), False
        elif test == "too-large":
            kw["test"] = (torch.cat([x, x]), torch.cat([y, y]))
        elif test == "other-shape":
            kw["test"] = (x.reshape(n, -1)[:, :-1] if kind != "tabular" else x[:, :-1], y)
        elif test == "label":
            kw["test"] = (x[:K], torch.full((K,), K))
        else:
            kw["test"] = (torch.full_like(x[:K], float("nan"), dtype=torch.float32), y[:K])
        names = ("test",) if bad else None
    elif broken == "update_frozen_stats":
        kw["update_frozen_stats"], bad = draw.draw(st.sampled_from([(True, False), ("yes", True), (1, True)]))
        names = ("update_frozen_stats",) if bad else None
    expect = ProbabilitiesWarning if isinstance(model, nn.Sequential) and isinstance(model[-1], nn.Softmax) else None
    result = check(lambda: unlearn(model, train, forget, **kw), names, expect if names is None else None)
    if result is not None:
        assert type(result.model) is type(model)


@settings(max_examples=70, **SETTINGS)
@given(data=datasets(), broken=st.sampled_from(["none", "forget", "retain", "test", "models", "metrics", "tau",
                                                 "forget_classes", "normalize", "num_classes", "reference", "unlearn",
                                                 "class_names", "seed"]),
       draw=st.data())
def test_evaluate_ends_in_a_table_or_a_named_refusal(data, broken, draw):
    x, y, kind = data
    n = len(y)
    model, _ = build("logits", x[0].numel())
    cut = n // 3
    f, r, t = (x[:cut], y[:cut]), (x[cut:], y[cut:]), (x[:K], y[:K])
    kw: dict = {}
    models = {"m": model}
    names = None
    if broken in ("forget", "retain", "test"):
        bad_split, bad = broken_data(draw.draw, *(dict(forget=f, retain=r, test=t)[broken]), kind)
        f, r, t = (bad_split if broken == s else v for s, v in (("forget", f), ("retain", r), ("test", t)))
        names = (broken,) if bad else None
    elif broken == "models":
        models, bad = draw.draw(st.sampled_from([({}, True), ([model], True), ({"m": "model"}, True),
                                                 ({"m": model, "n": build("one-output", x[0].numel())[0]}, True),
                                                 ({"a": model, "b": model}, False)]))
        names = ("models", "model") if bad else None
    elif broken == "metrics":
        kw["metrics"], bad = draw.draw(st.sampled_from([(["FA"], False), ("TA", False), ([], True), (["FAA"], True),
                                                        ([3], True), (["AvgGap"], True), ({"FA": 1}, True),
                                                        (["class_acc"], True)]))
        names = ("metric",) if bad else None
    elif broken == "tau":
        kw["reference"] = model
        kw["tau"], bad = draw.draw(st.sampled_from([(0.1, False), (0, False), (-0.1, True), (float("nan"), True),
                                                    ("0.1", True), (float("inf"), True)]))
        names = ("tau",) if bad else None
    elif broken == "forget_classes":
        kw["forget_classes"], bad = draw.draw(st.sampled_from([([K + 1], True), (["x"], True), ([0], True)]))
        names = ("forget_classes",) if bad else None
    elif broken == "normalize":
        kw["normalize"], bad = draw.draw(st.sampled_from([((0.5, 0.5), False), ((0.5, 0), True), ("x", True)]))
        names = ("normalize",) if bad else None
    elif broken == "num_classes":
        kw["num_classes"], bad = draw.draw(st.sampled_from([(K, False), (K + 2, True), (0, True)]))
        names = ("num_classes",) if bad else None
    elif broken == "reference":
        kw["reference"], bad = draw.draw(st.sampled_from([(model, False), ("retrained", True),
                                                          (build("one-output", x[0].numel())[0], True)]))
        names = ("reference", "model") if bad else None
    elif broken == "unlearn":
        kw["unlearn"], bad = draw.draw(st.sampled_from([(lambda m: m, False), (3, True), ("rl", True)]))
        names = ("unlearn",) if bad else None
    elif broken == "class_names":
        kw["class_names"], bad = draw.draw(st.sampled_from([(["a", "b", "c"], False), (3, True), ("abc", True)]))
        names = ("class_names",) if bad else None
    elif broken == "seed":
        kw["seed"], bad = draw.draw(st.sampled_from([(5, False), (-2, True), (0.5, True)]))
        names = ("seed",) if bad else None
    table = check(lambda: evaluate(models, forget=f, retain=r, test=t, **kw), names)
    if table is not None:
        assert set(table.rows) >= set(models)
