"""The mixed request shape, and a grid that runs each method and evaluator only where it applies."""
import numpy as np
import pytest

from forgetkit.bench.cell import evaluator_options, extra_references
from forgetkit.bench.config import parse_config
from forgetkit.bench.executors import reference_jobs
from forgetkit.bench.grid import paper_name, plan
from forgetkit.data import mixed_request

Y = np.repeat(np.arange(5), 40)


def test_mixed_request_removes_whole_classes_and_part_of_others():
    req = mixed_request(Y, 5, whole=1, partial=2, fraction=0.25, seed=3)
    counts = np.bincount(Y[req.indices], minlength=5)
    assert sorted(counts.tolist()) == [0, 0, 10, 10, 40]
    assert req.kind == "mixed" and len(np.unique(req.indices)) == len(req.indices)
    again = mixed_request(Y, 5, whole=1, partial=2, fraction=0.25, seed=3)
    assert np.array_equal(req.indices, again.indices)
    other = mixed_request(Y, 5, whole=1, partial=2, fraction=0.25, seed=4)
    assert not np.array_equal(req.indices, other.indices)


@pytest.mark.parametrize("whole, partial, fraction, message", [
    (3, 2, 0.5, "must leave at least one class untouched"),
    (1, 1, 0.001, "must take some but not all"),
])
def test_mixed_request_refuses_impossible_shapes(whole, partial, fraction, message):
    with pytest.raises(ValueError, match=message):
        mixed_request(Y, 5, whole=whole, partial=partial, fraction=fraction, seed=0)


def test_mixed_request_needs_its_fields():
    with pytest.raises(ValueError, match="needs the field 'partial'"):
        parse_config({"name": "x", "dataset": "digits", "model": {"name": "mlp"},
                      "requests": [{"kind": "mixed", "whole": 1, "fraction": 0.3}], "methods": [{"name": "ft"}]})


CFG = {"name": "x", "dataset": "digits", "model": {"name": "mlp"},
       "requests": [{"kind": "random", "fraction": 0.1, "name": "random 10 %"}, {"kind": "class", "classes": [1]}],
       "methods": [{"name": "rl"}, {"name": "svd"}],
       "metrics": {"extra": ["mia_nn", "js_divergence"]}, "seeds": [0]}


def test_class_only_methods_and_evaluators_run_on_class_requests_only():
    cfg = parse_config(CFG)
    rows = [(c.request, c.label) for c in plan(cfg) if not c.is_reference]
    assert sorted(rows) == [(0, "RL"), (1, "RL"), (1, paper_name("svd"))]
    assert [n for n, _ in evaluator_options(cfg, "random")] == ["standard", "js_divergence"]
    assert [n for n, _ in evaluator_options(cfg, "class")] == ["standard", "mia_nn", "js_divergence"]
    assert extra_references(cfg, "random") == 0 < extra_references(cfg, "class")
    extra = [j for j in reference_jobs(cfg, plan(cfg)) if j[0] == "retrain" and j[3] is not None]
    assert extra and all(j[2] == 1 for j in extra)


def test_a_named_request_is_reported_by_its_shape_name(tmp_path):
    from forgetkit.bench.runner import run_experiment
    from forgetkit.bench.store import ResultStore

    raw = {**CFG, "train_size": 600, "test_size": 200, "train": {"epochs": 1},
           "methods": [{"name": "ft", "options": {"epochs": 1}}], "metrics": {},
           "requests": [CFG["requests"][0]]}
    run_experiment(parse_config(raw), tmp_path)
    with ResultStore(tmp_path / "results.sqlite") as store:
        assert {r["request"] for r in store.rows()} == {"random 10 %"}
        assert {r["params"]["request_kind"] for r in store.rows()} == {"random"}


def test_smoke_keeps_a_class_request_for_class_only_methods():
    from forgetkit.bench.config import smoke

    raw = {**CFG, "requests": [{"kind": "random", "fraction": 0.1}, {"kind": "longtail", "ratio": 0.3, "gamma": 1.0},
                               {"kind": "random", "fraction": 0.2}, {"kind": "class", "classes": [4]},
                               {"kind": "class", "classes": [5]}, {"kind": "class", "classes": [6], "role": "validation"}]}
    kinds = [(r["kind"], r.get("classes"), r.get("role", "report")) for r in smoke(raw)["requests"]]
    assert kinds == [("random", None, "report"), ("longtail", None, "report"), ("class", [4], "report"),
                     ("class", [6], "validation")]


# -- the registry changes no cell key ----------------------------------------------------------

LEGACY_DUMP = [  # RequestSpec.model_dump() of the schema that listed the built-in shapes' fields itself
    {"kind": "random", "name": None, "fraction": 0.1, "classes": None, "ratio": None, "gamma": None,
     "natural_order": False, "keep_one": False, "whole": None, "partial": None, "role": "report"},
    {"kind": "longtail", "name": "lt", "fraction": None, "classes": None, "ratio": 1.0, "gamma": 1.0,
     "natural_order": False, "keep_one": False, "whole": None, "partial": None, "role": "report"},
    {"kind": "class", "name": None, "fraction": None, "classes": [3], "ratio": None, "gamma": None,
     "natural_order": False, "keep_one": False, "whole": None, "partial": None, "role": "report"},
    {"kind": "mixed", "name": None, "fraction": 0.25, "classes": None, "ratio": None, "gamma": None,
     "natural_order": False, "keep_one": False, "whole": 1, "partial": 2, "role": "validation"},
]
"""what that schema made of these requests as a user writes them (ints where floats belong):"""
AS_WRITTEN = [{"kind": "random", "fraction": 0.1}, {"kind": "longtail", "ratio": 1, "gamma": 1, "name": "lt"},
              {"kind": "class", "classes": [3]},
              {"kind": "mixed", "whole": 1, "partial": 2, "fraction": 0.25, "role": "validation"}]


@pytest.mark.parametrize("requests", [AS_WRITTEN, LEGACY_DUMP], ids=["as-written", "dumped-by-the-old-schema"])
def test_cell_keys_hash_what_they_hashed_before_the_registry(requests):
    """A results store written before request shapes had a registry resumes with nothing re-run:
    the part of a cell key a request contributes is the old schema's dump, and a config that
    schema dumped (experiment.json, read again by ``forgetkit audit``) still parses."""
    from forgetkit.bench.grid import request_key_fields

    cfg = parse_config({**CFG, "requests": requests, "methods": [{"name": "ga"}]})
    assert [request_key_fields(r) for r in cfg.requests] == LEGACY_DUMP
    assert all(type(request_key_fields(r)["gamma"]) is float for r in cfg.requests if r.kind == "longtail")


def test_rows_store_their_request_kind_and_older_rows_fall_back_to_the_config():
    from forgetkit.bench.grid import row_request_kind

    specs = [{"kind": "random", "name": "random 10 %"}, {"kind": "class", "name": None}]
    assert row_request_kind({"request": "anything", "params": {"request_kind": "mixed"}}, specs) == "mixed"
    assert row_request_kind({"request": "random 10 %", "params": {}}, specs) == "random"
    assert row_request_kind({"request": "class3", "params": {}}, specs) == "class"
    assert row_request_kind({"request": "subclass3-k2-c0", "params": {}}, specs) == "subclass"
    assert row_request_kind({"request": "my shape", "params": {}}, specs) is None


def test_an_option_another_shape_has_is_refused_not_ignored():
    with pytest.raises(ValueError, match=r"requests\.0: unknown option\(s\) \['classes'\]; options: \['fraction'\]"):
        parse_config({**CFG, "requests": [{"kind": "random", "fraction": 0.1, "classes": [3]}]})
