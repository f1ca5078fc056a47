"""Generated configs, valid and broken, end in a parsed config or a forgetkit error that names the
field — never a raw exception — and a refused config writes nothing (docs/errors.md, "Config files").

Parse and validate only: the command-line runs stop where the data would be loaded. Several hundred
generated inputs per run in all (see the ``max_examples`` of each test).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from forgetkit.bench.config import (ExperimentConfig, MethodSpec, MetricSpec, ModelSpec, RequestSpec, load_raw,
                                    parse_config, smoke)
from forgetkit.data.requests import REQUEST_SHAPES
from forgetkit.train import TrainRecipe

FAST = settings(deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# -- valid configs -------------------------------------------------------------------------------

names = st.text(st.characters(codec="utf-8", categories=("L", "N", "Zs", "Pd")), min_size=1, max_size=20).filter(
    str.strip)
fractions = st.floats(0.05, 0.5, allow_nan=False)
class_lists = st.lists(st.integers(0, 9), min_size=1, max_size=4, unique=True)
REQUESTS = {
    "random": st.fixed_dictionaries({"fraction": fractions}),
    "class": st.fixed_dictionaries({"classes": class_lists}),
    "longtail": st.fixed_dictionaries({"ratio": st.floats(0.1, 0.5), "gamma": st.one_of(st.integers(0, 3),
                                                                                       st.floats(0, 3))},
                                      optional={"natural_order": st.booleans(), "keep_one": st.booleans()}),
    "mixed": st.fixed_dictionaries({"whole": st.integers(1, 4), "partial": st.integers(1, 4),
                                    "fraction": st.floats(0.2, 0.8)}),
    "subclass": st.fixed_dictionaries({"of_class": st.integers(0, 9), "clusters": st.integers(2, 5)}),
}
requests = st.sampled_from(sorted(REQUESTS)).flatmap(
    lambda kind: REQUESTS[kind].map(lambda options: {"kind": kind, **options}))
methods = st.sampled_from([
    {"name": "ga", "options": {"epochs": 1}}, {"name": "ft", "options": {"epochs": 1, "lr": 0.01}},
    {"name": "rl", "weightings": ["uniform", "falw"]}, {"name": "neggrad_plus"}, {"name": "l1_sparse"}]).map(copy.deepcopy)


@st.composite
def valid_configs(draw) -> dict:
    reqs = draw(st.lists(requests, min_size=1, max_size=3,
                         unique_by=lambda r: json.dumps(r, sort_keys=True)))
    raw = {"name": draw(names), "dataset": "digits", "device": "cpu",
           "model": {"name": "mlp", "options": {"hidden": draw(st.integers(4, 64))}},
           "train": {"epochs": draw(st.integers(1, 3)), "lr": draw(st.floats(1e-4, 0.5))},
           "requests": reqs,
           "methods": draw(st.lists(methods, min_size=1, max_size=3, unique_by=lambda m: m["name"])),
           "seeds": draw(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=3, unique=True))}
    if draw(st.booleans()):
        raw["heldout_fraction"] = draw(st.floats(0.05, 0.5))
    if draw(st.booleans()):
        raw["threads"] = draw(st.integers(1, 8))
    return raw


@settings(FAST, max_examples=60)
@given(valid_configs())
def test_valid_configs_parse_and_keep_their_values(raw):
    cfg = parse_config(raw)
    assert cfg.seeds == raw["seeds"] and len(cfg.requests) == len(raw["requests"])
    again = parse_config(json.loads(json.dumps(cfg.model_dump())))  # as a Ray worker reads it
    assert again.model_dump() == cfg.model_dump()
    smoke(raw)  # --smoke shrinks any valid config


# -- broken configs: one mutation of a valid one -------------------------------------------------

def _leaves(node, path=()):
    """(path, value) of every scalar or list of scalars under ``node``."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list) and node and isinstance(node[0], (dict, list)):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))
    else:
        yield path, node


def _set(raw: dict, path: tuple, value) -> None:
    node = raw
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


WRONG_TYPES = [{"a": 1}, [{"b": 2}], "some text", None]
"""values no field takes: a mapping where a scalar belongs, a list of mappings, words, nothing"""
OUT_OF_RANGE = {  # field (last path part) -> values its checks refuse
    "fraction": [0, 1, 1.5, -0.1], "ratio": [0, 1.5], "gamma": [-1], "whole": [0, -2], "partial": [0],
    "classes": [[], [-1], [3, 3]], "of_class": [-1], "clusters": [1, 0], "heldout_fraction": [-0.1, 1, 1.5],
    "seeds": [[-1], [2**32], [0, 0], [True]], "threads": [0, 5000], "epochs": [-1], "lr": [0, -1e-3],
}
KNOWN = {f for model in (ExperimentConfig, MethodSpec, ModelSpec, MetricSpec, RequestSpec) for f in model.model_fields}
KNOWN |= {f.name for cls in (TrainRecipe, *(c for _, c in REQUEST_SHAPES.items())) for f in dataclasses.fields(cls)}
"""every field name a config has somewhere: an added key must be none of them to be unknown"""
NOT_FINITE = [math.nan, math.inf, -math.inf, 2**70, -(2**64)]


@st.composite
def broken_configs(draw) -> tuple[dict, str]:
    """(a config with one thing wrong, the field the error must name)."""
    raw = copy.deepcopy(draw(valid_configs()))
    family = draw(st.sampled_from(["type", "range", "unknown key", "not finite", "repeat", "empty"]))
    if family == "type":
        path, old = draw(st.sampled_from(list(_leaves(raw))))
        value = draw(st.sampled_from([w for w in WRONG_TYPES if not (isinstance(old, str) and isinstance(w, str))]))
        assume(not (value is None and path[-1] == "threads"))  # None is its default
        _set(raw, path, value)
        return raw, path[-1]
    if family == "range":
        candidates = [p for p, _ in _leaves(raw) if p[-1] in OUT_OF_RANGE]
        path = draw(st.sampled_from(candidates))
        _set(raw, path, draw(st.sampled_from(OUT_OF_RANGE[path[-1]])))
        return raw, str(path[-1])
    if family == "unknown key":
        where = draw(st.sampled_from(["", "model", "train", "requests.0", "methods.0", "metrics"]))
        key = draw(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=12).filter(lambda k: k not in KNOWN))
        node = raw
        for p in where.split(".") if where else []:
            node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
        assume(key not in node)
        node[key] = 1
        return raw, key
    if family == "not finite":
        numeric = [p for p, v in _leaves(raw) if isinstance(v, (int, float)) and not isinstance(v, bool)]
        path = draw(st.sampled_from(numeric))
        _set(raw, path, draw(st.sampled_from(NOT_FINITE)))
        return raw, str(path[-1])
    if family == "repeat":
        which = draw(st.sampled_from(["seeds", "requests", "weightings", "methods"]))
        if which == "weightings":
            raw["weightings"] = ["uniform", "uniform"]
        else:
            raw[which] = raw[which] + raw[which][:1]
        return raw, {"requests": "requests.", "methods": "methods."}.get(which, which)
    which = draw(st.sampled_from(["requests", "methods", "seeds", "weightings", "name"]))
    raw[which] = "" if which == "name" else []
    return raw, which


def _refused_naming(raw: dict, field: str) -> str:
    """The message of the forgetkit error ``raw`` gets; it must name ``field``."""
    with pytest.raises((ValueError, KeyError)) as err:
        parse_config(raw)
    message = err.value.args[0] if isinstance(err.value, KeyError) else str(err.value)
    assert field in message, f"the error does not name {field!r}: {message}"
    return message


@settings(FAST, max_examples=150)
@given(broken_configs())
def test_a_broken_config_is_refused_naming_the_field(case):
    raw, field = case
    _refused_naming(raw, field)


# -- config files: encodings and YAML oddities, through the command line -------------------------

class _Valid(BaseException):
    """Raised where the data would be loaded: the config was accepted."""


def _cli(text: bytes, monkeypatch, smoke_run: bool) -> tuple[int | None, str, list[str]]:
    """(exit status or None when accepted, stderr, files left) of ``forgetkit run`` on ``text``."""
    from forgetkit.bench import runner
    from forgetkit.cli import main

    def accepted(ws):
        raise _Valid

    monkeypatch.setattr(runner, "check_data", accepted)
    d = Path(tempfile.mkdtemp(prefix="cfgprop"))
    try:
        (d / "c.yaml").write_bytes(text)
        err = io.StringIO()
        rc = None
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                rc = main(["run", str(d / "c.yaml"), "--out", str(d / "out"), "--quiet", *(["--smoke"] * smoke_run)])
        except _Valid:
            pass
        return rc, err.getvalue(), sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.name != "c.yaml")
    finally:
        shutil.rmtree(d)


def _tabbed(text: str) -> str:
    return text.replace("\n  ", "\n\t", 1) if "\n  " in text else "\t" + text


ODDITIES = {
    "as written": lambda t: t.encode(),
    "byte-order mark": lambda t: b"\xef\xbb\xbf" + t.encode(),
    "latin-1 bytes": lambda t: t.replace("digits", "digits\xe9", 1).encode("latin-1", "replace"),
    "utf-16": lambda t: t.encode("utf-16"),
    "a tab indent": lambda t: _tabbed(t).encode(),
    "a key twice": lambda t: (t + "dataset: digits\n").encode(),
    "empty": lambda t: b"",
    "only a comment": lambda t: b"# nothing here\n",
    "a list at top level": lambda t: b"- " + t.replace("\n", "\n  ").encode(),
    "yes as the name": lambda t: ("name: yes\n" + t.split("\n", 1)[1]).encode(),
    "a date as the name": lambda t: ("name: 2024-01-01\n" + t.split("\n", 1)[1]).encode(),
    "a huge number": lambda t: (t + "train_size: 1" + "0" * 30 + "\n").encode(),
    "nan": lambda t: (t + "heldout_fraction: .nan\n").encode(),
    "an alias bomb": lambda t: (t + "lol: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"lol{i}: &a{i} [{', '.join(['*a' if i == 0 else f'*a{i - 1}'] * 10)}]\n" for i in range(6))).encode(),
    "an anchor shared by two methods": lambda t: (t + "methods:\n  - &m {name: ga, options: {epochs: 1}}\n"
                                                  "  - {<<: *m, label: GA2}\n").encode(),
}


@settings(FAST, max_examples=60)
@given(valid_configs(), st.sampled_from(sorted(ODDITIES)), st.booleans())
def test_config_files_end_in_a_run_or_one_line_refusal_and_nothing_written(monkeypatch, raw, oddity, smoke_run):
    text = yaml.safe_dump({k: v for k, v in raw.items() if k != "methods" or oddity != "an anchor shared by two methods"},
                          sort_keys=False, allow_unicode=True)
    rc, err, written = _cli(ODDITIES[oddity](text), monkeypatch, smoke_run)
    assert "Traceback" not in err
    if rc is None:  # accepted: only these oddities may be
        assert oddity in ("as written", "byte-order mark", "an anchor shared by two methods"), oddity
    else:
        assert rc == 2 and err.startswith("forgetkit: error: ") and written == [], (oddity, err, written)
        assert oddity not in ("as written", "byte-order mark", "an anchor shared by two methods"), err


def test_an_anchor_shared_by_two_entries_is_copied_so_set_edits_one():
    from forgetkit.bench.config import apply_overrides, yaml_load

    text = ("name: a\nrequests: [{kind: random, fraction: 0.1}]\n"
            "methods:\n  - &m {name: ga, options: {lr: 0.1}}\n  - {<<: *m, label: B}\n")
    loaded = yaml_load(text)
    assert loaded["methods"][1]["options"] is loaded["methods"][0]["options"]  # what YAML itself makes of it
    raw = apply_overrides(load_raw_text(text), ["methods.0.options.lr=0.5"])
    assert [m["options"]["lr"] for m in raw["methods"]] == [0.5, 0.1]


def load_raw_text(text: str) -> dict:
    d = Path(tempfile.mkdtemp(prefix="cfgprop"))
    try:
        (d / "c.yaml").write_text(text)
        return load_raw(d / "c.yaml")
    finally:
        shutil.rmtree(d)
