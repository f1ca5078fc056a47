"""The sub-class request shape: part of one class, chosen by a user's predicate (a function in the
Python API, ``module:function`` in a config) or by k-means on the original's penultimate features;
it runs in ``forgetkit run``, its indices feed ``forgetkit.unlearn``, and its rows carry its kind
(which the leaderboard reads)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from forgetkit.data.requests import ShapeData, build_request, make_shape

Y = np.repeat(np.arange(3), 20)
X = torch.arange(60, dtype=torch.float32)[:, None].repeat(1, 4) / 60  # brightness rises with the index


def bright(x):
    """The brighter half of the samples it is given."""
    return np.asarray(x[:, 0] > x[:, 0].median())


def test_a_predicate_picks_part_of_its_class():
    req = build_request("subclass", Y, 3, x=X, of_class=1, predicate=bright)
    assert req.kind == "subclass" and req.name == "subclass1-bright" and req.classes == ()
    assert req.indices.tolist() == list(range(30, 40))  # the bright half of class 1 (indices 20..39)


def test_clusters_of_features_pick_one_cluster_by_size():
    feats = np.zeros((60, 2))
    feats[20:34, 0] = 10.0  # class 1: 14 samples far out, 6 at the origin
    largest = build_request("subclass", Y, 3, seed=0, features=feats, of_class=1, clusters=2)
    smallest = build_request("subclass", Y, 3, seed=5, features=lambda: feats, of_class=1, clusters=2, cluster=1)
    assert largest.indices.tolist() == list(range(20, 34)) and largest.name == "subclass1-k2-c0"
    assert smallest.indices.tolist() == list(range(34, 40))


@pytest.mark.parametrize("options, message", [
    ({"of_class": 1}, "give exactly one of predicate ('module:function') and clusters"),
    ({"of_class": 1, "clusters": 2, "predicate": bright}, "give exactly one of predicate"),
    ({"of_class": 1, "clusters": 1}, "clusters must be >= 2"),
    ({"of_class": 1, "clusters": 3, "cluster": 3}, "cluster must be in 0..2 (rank by size), got 3"),
    ({"of_class": -1, "predicate": bright}, "of_class must be >= 0, got -1"),
    ({"of_class": 1, "predicate": "no_colon"}, "predicate must be 'module:function'"),
    ({"of_class": 1, "predicate": "no_such_module_xyz:f"}, "cannot import module 'no_such_module_xyz'"),
    ({"of_class": 1, "predicate": "json:no_such_fn"}, "module 'json' has no 'no_such_fn'"),
])
def test_bad_options_are_refused_naming_them(options, message):
    with pytest.raises(ValueError) as err:
        make_shape("subclass", options, "requests.0")
    assert str(err.value).startswith("requests.0: ") and message in str(err.value)


@pytest.mark.parametrize("options, message", [
    ({"of_class": 5, "predicate": bright}, "class 5 does not exist (dataset has classes 0..2)"),
    ({"of_class": 1, "predicate": lambda x: np.zeros(len(x), bool)}, "picks no sample of class 1"),
    ({"of_class": 1, "predicate": lambda x: np.ones(len(x), bool)}, "picks every sample of class 1; to forget the whole class use kind: class"),
    ({"of_class": 1, "predicate": lambda x: np.ones(3, bool)}, "must return one bool per sample of class 1 (20)"),
    ({"of_class": 1, "predicate": lambda x: x[:, 0]}, "must return one bool per sample"),
    ({"of_class": 1, "clusters": 2}, "none were given: pass features="),
    ({"of_class": 1, "predicate": lambda x: 1 / 0}, "failed on the 20 inputs of class 1: ZeroDivisionError"),
])
def test_infeasible_requests_say_why(options, message):
    with pytest.raises(ValueError, match=None) as err:
        make_shape("subclass", options).build(ShapeData(Y, 3, 0, X))
    assert message in str(err.value)


def test_the_python_api_unlearns_the_shape_s_indices():
    import forgetkit
    from forgetkit.models import build_model

    torch.manual_seed(0)
    model = build_model("mlp", (4,), 3, hidden=8, depth=1)
    req = build_request("subclass", Y, 3, x=X, of_class=1, predicate=bright)
    result = forgetkit.unlearn(model, (X, torch.as_tensor(Y)), req.indices, method="ga", epochs=1)
    assert result.model is not model


CONFIG = """
name: subclass-smoke
dataset: digits
device: cpu
model: {name: mlp, options: {hidden: 16, depth: 1}}
train: {epochs: 1}
requests:
  - {kind: subclass, of_class: 3, predicate: "subclass_predicates:left_dark", name: dark threes}
  - {kind: subclass, of_class: 5, clusters: 3, cluster: 0}
methods: [{name: ft, options: {epochs: 1}}]
"""


def test_forgetkit_run_smoke_with_both_ways_and_rows_carry_the_kind(tmp_path, monkeypatch):
    from forgetkit.bench.grid import row_request_kind
    from forgetkit.bench.store import ResultStore
    from forgetkit.cli import main

    (tmp_path / "subclass_predicates.py").write_text(
        "import numpy as np\n\ndef left_dark(x):\n"
        "    left = x[..., :4].float().mean(dim=tuple(range(1, x.dim())))\n"
        "    return np.asarray(left < left.median())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "c.yaml").write_text(CONFIG)
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "c.yaml"), "--smoke", "--out", str(out), "--quiet"]) == 0
    with ResultStore(out / "results.sqlite") as store:
        rows = store.rows()
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["request"] for r in rows} == {"dark threes", "subclass5-k3-c0"}
    assert {r["params"]["request_kind"] for r in rows} == {"subclass"}
    specs = json.loads((out / "experiment.json").read_text())["config"]["requests"]
    assert {row_request_kind(r, specs) for r in rows} == {"subclass"}
    from forgetkit.bench.leaderboard.loading import load_setting

    assert {shape.kind for shape in load_setting(out).shapes.values()} == {"subclass"}  # the leaderboard's view
