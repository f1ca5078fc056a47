"""Contract suites over every registry: models, datasets, weightings and evaluators.

Each suite is parametrised over the registry's names, so a newly registered part is tested the
moment it is registered, with no edit here (methods have theirs in test_method_conformance.py). A part
this file cannot exercise (a dataset that needs files, say) fails its contract with a message
saying what to add; nothing is skipped.
"""
from __future__ import annotations

import copy
import importlib
import json
import math
import pkgutil
import subprocess
import sys
from functools import lru_cache

import numpy as np
import pytest
import torch

import forgetkit
from forgetkit.data import DATASETS, DataBundle, Split, as_float, class_request, load_dataset, random_request
from forgetkit.metrics import EVALUATORS, CellView
from forgetkit.metrics.evaluators import Evaluator
from forgetkit.models import MODELS, build_model
from forgetkit.train import TrainRecipe, train_classifier
from forgetkit.unlearn.context import UnlearnContext
from forgetkit.unlearn.objectives import Batch
from forgetkit.unlearn.weightings import WEIGHTINGS, build_weighting
from test_data_images import cifar_rows, make_cifar10, make_idx_dataset, make_tiny, write_pickle

for _module in pkgutil.walk_packages(forgetkit.__path__, "forgetkit."):  # every registration, wherever it is
    if not _module.name.endswith(".__main__"):
        importlib.import_module(_module.name)

CPU = torch.device("cpu")
KNOWN_SPLITS = {"forget", "retain", "heldout"}


def finite_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


@lru_cache(maxsize=1)
def digits() -> DataBundle:
    return load_dataset("digits")


# ---------------------------------------------------------------------------- registration

HOME_IMPORTS = '''
import importlib, importlib.util, json, pkgutil, sys, types
top = types.ModuleType("forgetkit")  # the package without its __init__, whose API import loads everything
top.__path__ = list(importlib.util.find_spec("forgetkit").submodule_search_locations)
sys.modules["forgetkit"] = top
ORDER = [("models", "forgetkit.models", "forgetkit.models", "MODELS"),
         ("datasets", "forgetkit.data", "forgetkit.data.base", "DATASETS"),
         ("evaluators", "forgetkit.metrics", "forgetkit.metrics.evaluators", "EVALUATORS"),
         ("weightings", "forgetkit.methods", "forgetkit.unlearn.weightings", "WEIGHTINGS"),
         ("methods", "forgetkit.methods", "forgetkit.methods.base", "METHODS")]
home = {}
for kind, package, module, attr in ORDER:
    importlib.import_module(package)
    home[kind] = getattr(importlib.import_module(module), attr).names()
for info in pkgutil.walk_packages(top.__path__, "forgetkit."):
    importlib.import_module(info.name)
print(json.dumps({"home": home, "all": {k: getattr(importlib.import_module(m), a).names() for k, _, m, a in ORDER}}))
'''
"""In a fresh interpreter, import each registry's package bottom-up (models, data, metrics, then
methods, which also brings unlearn's weightings), then every module of forgetkit. The top-level
``forgetkit/__init__`` is bypassed: it imports the API, which imports nearly everything, and would
hide a registration that only an unrelated import chain performs."""


def test_importing_a_registrys_package_registers_all_its_entries():
    """A part registered only as a side effect of importing some other module is missing from a
    run that never imports that module (an evaluator defined in metrics/ but imported only by a
    method, say). The bottom-up order is sound because the layers contract forbids a lower package
    from importing a higher one."""
    res = subprocess.run([sys.executable, "-c", HOME_IMPORTS], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    found = json.loads(res.stdout)
    for kind, names in found["all"].items():
        missing = sorted(set(names) - set(found["home"][kind]))
        assert not missing, (f"{kind} {missing} register only when some other module is imported; "
                             f"make importing their package register them")


# ------------------------------------------------------------------------------------ models

SHAPES = [(3, 32, 32), (1, 28, 28), (12,)]
"""CIFAR-sized and MNIST-sized images, and a tabular row: a model builds for a shape or refuses it"""
NUM_CLASSES, BATCH = 10, 2


def build_or_refusal(name, shape, seed=0):
    """The model built with ``seed``, or the exception with which it refused ``shape``."""
    torch.manual_seed(seed)
    try:
        return build_model(name, shape, NUM_CLASSES)
    except Exception as err:  # noqa: BLE001  judged by the caller: only a clear ValueError passes
        return err


def first_shape(name):
    return next((s for s in SHAPES if isinstance(build_or_refusal(name, s), torch.nn.Module)), None)


def image_batch(shape, seed=0) -> torch.Tensor:
    return torch.rand((BATCH, *shape), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", MODELS.names())
def test_model_accepts_an_image_or_a_row(name):
    assert first_shape(name), f"model {name!r} refused every input shape in {SHAPES}"


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", MODELS.names())
def test_model_contract(name, shape):
    """Builds or refuses clearly; if built: logits (B, K), finite gradients everywhere, seeded."""
    model = build_or_refusal(name, shape)
    if isinstance(model, Exception):
        assert isinstance(model, ValueError) and "in_shape" in str(model), \
            f"{name} refused in_shape {shape} unclearly ({type(model).__name__}: {model}); raise a ValueError naming in_shape"
        return
    x = image_batch(shape)
    model.train()
    try:
        logits = model(x)
    except Exception as err:  # a model must refuse at build time a shape it cannot run on
        pytest.fail(f"{name} was built for in_shape {shape} but its forward fails: "
                    f"{type(err).__name__}: {err}; refuse the shape in the builder with a ValueError")
    assert logits.shape == (BATCH, NUM_CLASSES) and logits.dtype == torch.float32
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, NUM_CLASSES - 1])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: parameter {pname} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"

    again, other = build_or_refusal(name, shape), build_or_refusal(name, shape, seed=1)
    for (k, v), v2 in zip(model.state_dict().items(), again.state_dict().values()):
        if k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue  # the training forward above moved the BatchNorm statistics of `model`
        assert torch.equal(v, v2), f"{name}: same seed, different {k}"
    assert any(not torch.equal(a, b) for a, b in zip(again.parameters(), other.parameters())), \
        f"{name}: seeds 0 and 1 give identical weights"
    again.eval()
    with torch.no_grad():
        assert torch.equal(again(x), again(x)), f"{name}: eval forward is not deterministic"


@pytest.mark.parametrize("name", MODELS.names())
def test_model_refuses_an_unknown_option(name):
    """A misspelt ``model.options`` key must not build the default network silently."""
    with pytest.raises(ValueError, match="no_such_option"):
        build_model(name, first_shape(name), NUM_CLASSES, no_such_option=3)


@pytest.mark.parametrize("name", MODELS.names())
def test_model_refuses_zero_classes(name):
    with pytest.raises(ValueError, match="num_classes"):
        build_model(name, first_shape(name), 0)


# ---------------------------------------------------------------------------------- datasets

def write_cifar100(parent):
    folder = parent / "cifar-100-python"
    for split, labels in (("train", [99, 0, 42, 7]), ("test", [5, 6])):
        write_pickle(folder / split, {b"fine_labels": labels, b"coarse_labels": [0] * len(labels),
                                      b"data": cifar_rows(len(labels))})
    write_pickle(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                                   b"coarse_label_names": [b"c"] * 20})
    return parent


def write_idx_files(parent):
    make_idx_dataset(parent)
    return parent


WRITERS = {
    "fashion_mnist": write_idx_files,
    "mnist": write_idx_files,
    "cifar10": lambda d: make_cifar10(d)[0],
    "cifar100": write_cifar100,
    "tiny_imagenet": make_tiny,
}
"""Datasets read from user files: tiny files in the exact format (writers of test_data_images.py).
Every other dataset must load from what ships with its dependencies (``data_dir=None``)."""


def load_for_contract(name, tmp_path) -> tuple[DataBundle, str | None]:
    data_dir = str(WRITERS[name](tmp_path)) if name in WRITERS else None
    try:
        return load_dataset(name, data_dir), data_dir
    except FileNotFoundError as err:
        pytest.fail(f"dataset {name!r} needs files that are not here ({err}); add a writer of tiny "
                    "files in its on-disk format to WRITERS in tests/project/test_registry_contracts.py")


def check_split(name, split, bundle):
    assert isinstance(split, Split) and len(split) > 0, f"{name}: empty split"
    assert split.y.dtype == torch.int64 and split.y.ndim == 1 and len(split.x) == len(split.y)
    assert 0 <= int(split.y.min()) and int(split.y.max()) < bundle.num_classes, f"{name}: label out of range"
    if bundle.kind == "image":
        assert split.x.dtype == torch.uint8 and split.x.ndim == 4, f"{name}: images must be uint8 N×C×H×W"
    else:
        assert split.x.dtype == torch.float32 and split.x.ndim == 2, f"{name}: rows must be float32 N×D"
        assert torch.isfinite(split.x).all(), f"{name}: non-finite features"
    assert split.sensitive is None or len(split.sensitive) == len(split), f"{name}: sensitive length"


@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_contract(name, tmp_path):
    """A DataBundle whose splits, labels, class names and input shape agree, loaded identically twice."""
    bundle, data_dir = load_for_contract(name, tmp_path)
    assert isinstance(bundle, DataBundle) and bundle.name == name
    assert bundle.kind in ("image", "tabular"), bundle.kind
    assert isinstance(bundle.num_classes, int) and bundle.num_classes >= 2
    names = bundle.class_names
    assert len(names) == bundle.num_classes and len(set(names)) == len(names), f"{name}: class_names"
    assert all(isinstance(n, str) and n for n in names)
    assert isinstance(bundle.source, str) and bundle.source, f"{name}: source must say where data came from"
    for split in (bundle.train, bundle.test):
        check_split(name, split, bundle)
    assert bundle.train.x.shape[1:] == bundle.test.x.shape[1:] and bundle.input_shape == tuple(bundle.train.x.shape[1:])
    assert (bundle.train.sensitive is None) == (bundle.test.sensitive is None), f"{name}: sensitive in one split only"

    again = load_dataset(name, data_dir)
    for a, b in ((bundle.train, again.train), (bundle.test, again.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y), f"{name}: two loads differ"

    model = build_model("mlp", bundle.input_shape, bundle.num_classes, hidden=8, depth=1)
    assert model(as_float(bundle.train.x[:2])).shape == (min(2, len(bundle.train)), bundle.num_classes)


# -------------------------------------------------------------------------------- weightings

@lru_cache(maxsize=1)
def weighting_world():
    """A digits MLP trained 3 epochs, a 10 % random forget set (every class), held-out = test."""
    bundle = digits()
    torch.manual_seed(0)
    model = build_model("mlp", bundle.input_shape, 10, hidden=16, depth=1)
    train_classifier(model, bundle.train, TrainRecipe(epochs=3, batch_size=64), 0, CPU, 10)
    req = random_request(bundle.train.y.numpy(), 0.1, seed=0)
    keep = np.setdiff1d(np.arange(len(bundle.train)), req.indices)
    return model.eval(), bundle.train.subset(req.indices), bundle.train.subset(keep), bundle.test


def weights_of(name, seed=0):
    """Weights of a fresh default ``name`` on the first 32 forget samples, after setup and one step."""
    model, forget, retain, held = weighting_world()
    weighting = build_weighting(name)
    ctx = UnlearnContext(original=model, forget=forget, num_classes=10, seed=seed,
                         retain=retain if "retain" in weighting.needs else None,
                         heldout=held if "heldout" in weighting.needs else None)
    weighting.setup(ctx, model)
    weighting.before_step(model, ctx, 0)
    pos = torch.arange(32)
    logits = model(as_float(forget.x[pos]))  # with autograd on, so an undetached weight shows
    return weighting(logits, Batch(forget.x[pos], forget.y[pos], pos), ctx), weighting


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_weighting_contract(name):
    """Finite non-negative detached weights, one per sample, reproducible; known needs; clean stats."""
    assert set(WEIGHTINGS.get(name).needs) <= KNOWN_SPLITS, f"{name}: needs {WEIGHTINGS.get(name).needs}"
    w, weighting = weights_of(name)
    assert isinstance(w, torch.Tensor) and w.shape == (32,) and w.is_floating_point()
    assert torch.isfinite(w).all() and (w >= 0).all(), f"{name}: weights {w}"
    assert not w.requires_grad, f"{name}: weights must be constants to the optimiser (detach them)"
    assert torch.equal(w, weights_of(name)[0]), f"{name}: not reproducible"
    stats = weighting.end_epoch(0)
    assert isinstance(stats, dict) and all(isinstance(k, str) and finite_number(v) for k, v in stats.items())
    with pytest.raises(ValueError, match=name):
        build_weighting(name, no_such_option=1)


def test_uniform_weighting_is_ones():
    assert torch.equal(weights_of("uniform")[0], torch.ones(32))


# -------------------------------------------------------------------------------- evaluators

CHEAP_EVALUATOR_OPTIONS = {"ulira": {"train": {"epochs": 2, "lr": 0.05, "batch_size": 64}}}
"""shrinks only what --smoke leaves at the experiment's size (the shadows' training recipe)"""
EVAL_RECIPE = TrainRecipe(epochs=4, lr=0.05, batch_size=64)


@lru_cache(maxsize=1)
def evaluator_world():
    """Digits, 600 training / 150 test images (a pool no other test file uses), class 3 forgotten."""
    full = digits()
    bundle = DataBundle("digits", full.train.subset(np.arange(600)), full.test.subset(np.arange(150)),
                        num_classes=10, class_names=full.class_names, source=full.source)
    requests = {"class": class_request(bundle.train.y.numpy(), [3], 10),
                "random": random_request(bundle.train.y.numpy(), 0.1, seed=0)}

    @lru_cache(maxsize=None)
    def trained(seed, without_forget: str | None):
        pool = bundle.train
        if without_forget:
            pool = pool.subset(np.setdiff1d(np.arange(len(pool)), requests[without_forget].indices))
        torch.manual_seed(seed)
        model = build_model("mlp", bundle.input_shape, 10, hidden=16, depth=1)
        return train_classifier(model, pool, EVAL_RECIPE, seed, CPU, 10).eval()

    return bundle, requests, trained


def cell_for(kind: str, row: str, asked: list[int]) -> CellView:
    """The cell of the method row (an unlearning that copies its input), the Original or the Retrain row."""
    bundle, requests, trained = evaluator_world()
    req = requests[kind]
    keep = np.setdiff1d(np.arange(len(bundle.train)), req.indices)
    original, retrained = trained(0, None), trained(0, kind)
    model = {"method": copy.deepcopy(original), "original": original, "retrain": retrained}[row]

    def references(m: int):
        asked.append(m)
        return [trained(1000 + i, kind) for i in range(m)]

    return CellView(model=model, original=original, retrained=retrained, bundle=bundle,
                    forget=bundle.train.subset(req.indices), retain=bundle.train.subset(keep),
                    test=bundle.test, request=req, seed=0, device=CPU, references=references,
                    unlearn=copy.deepcopy if row == "method" else None)


def check_output(name, out):
    assert isinstance(out, dict) and out, f"{name}: must return a non-empty dict"
    scalars = 0
    for k, v in out.items():
        assert isinstance(k, str), f"{name}: key {k!r}"
        if isinstance(v, str) or finite_number(v):
            scalars += 1
        elif isinstance(v, (int, float, np.integer, np.floating)):
            pytest.fail(f"{name}: metric {k} = {v} is not a finite number (bool or NaN/inf)")
        elif isinstance(v, np.ndarray) and v.dtype.kind in "iuf":
            assert np.isfinite(v).all(), f"{name}: artifact {k} has non-finite entries"
        else:  # artifacts: per-sample arrays and JSON-able containers
            assert isinstance(v, (np.ndarray, list, dict)), f"{name}: {k} is a {type(v).__name__}"
    assert scalars, f"{name}: no metric (number or string) among {sorted(out)}"


def declared(name) -> tuple[Evaluator, dict]:
    """The registered evaluator and its options under --smoke (and the cheap recipe above)."""
    ev = EVALUATORS.get(name)
    assert isinstance(ev, Evaluator), (f"{name} is a bare {type(ev).__name__}: register it with "
                                       "@register_evaluator so it declares its references and --smoke")
    base = CHEAP_EVALUATOR_OPTIONS.get(name, {})
    options = ev.smoke_options(base)
    assert options is not base and isinstance(options, dict), f"{name}: smoke must return a new dict"
    assert ev.check(options) is None
    return ev, options


@pytest.mark.parametrize("row", ["method", "original", "retrain"])
@pytest.mark.parametrize("name", EVALUATORS.names())
def test_evaluator_contract_on_a_class_request(name, row):
    """Runs on every row of a class request; asks for no more references than it declares."""
    ev, options = declared(name)
    n = ev.references_for(options)
    assert isinstance(n, int) and n >= 0, f"{name}: references_for gave {n!r}"
    asked: list[int] = []
    check_output(name, ev(cell_for("class", row, asked), **options))
    assert max(asked, default=0) <= n, \
        f"{name}: asked cell.references for {max(asked)} models but declares {n} for {options}"


@pytest.mark.parametrize("name", EVALUATORS.names())
def test_evaluator_on_a_random_request(name):
    """Class-only evaluators refuse it, saying so; the others measure it."""
    ev, options = declared(name)
    cell = cell_for("random", "method", [])
    if ev.class_requests_only:
        with pytest.raises(ValueError, match="class"):
            ev(cell, **options)
    else:
        check_output(name, ev(cell, **options))
