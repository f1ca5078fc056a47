"""Config text → values as people mean them, and options checked against what components declare
(docs/errors.md, "Numbers, keys and options"). Nothing here trains a model."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest

from forgetkit.bench.config import apply_overrides, load_raw, parse_config, yaml_load
from forgetkit.options import declared_options, validate_options

BASE = {"name": "parse", "dataset": "digits", "heldout_fraction": 0.1, "device": "cpu",
        "model": {"name": "mlp"}, "train": {"epochs": 1},
        "requests": [{"kind": "random", "fraction": 0.1}],
        "methods": [{"name": "ga", "options": {"epochs": 1}}], "seeds": [0]}


def _with(**fields) -> dict:
    raw = copy.deepcopy(BASE)
    raw.update(fields)
    return raw


# -- numbers as people write them ------------------------------------------------------------

@pytest.mark.parametrize("text, value", [("1e-3", 1e-3), ("2e-4", 2e-4), ("1e6", 1e6), ("-1E-2", -0.01),
                                         (".5e3", 500.0), ("1.0e3", 1000.0), ("1.5", 1.5), ("3", 3)])
def test_yaml_numbers_as_written(text, value):
    got = yaml_load(f"x: {text}")["x"]
    assert got == value and type(got) is type(value)


def test_quoted_and_non_numbers_stay_strings():
    assert yaml_load("a: '1e-3'\nb: 1e3x\nc: e5") == {"a": "1e-3", "b": "1e3x", "c": "e5"}


def test_exponent_lr_in_a_config_file_reaches_the_method_as_a_float(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: parse\ndataset: digits\nrequests: [{kind: random, fraction: 0.1}]\n"
                    "methods:\n  - {name: ga, options: {lr: 1e-3}}\n")
    cfg = parse_config(load_raw(path))
    assert cfg.methods[0].options["lr"] == 1e-3 and isinstance(cfg.methods[0].options["lr"], float)


def test_exponent_lr_in_set_is_a_float():
    raw = apply_overrides(BASE, ["methods.0.options.lr=1e-3", "train.lr=2e-4"])
    assert raw["methods"][0]["options"]["lr"] == 1e-3 and raw["train"]["lr"] == 2e-4
    parse_config(raw)


# -- duplicate keys --------------------------------------------------------------------------

def test_duplicate_key_in_a_config_file_names_key_and_lines(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: a\ntrain:\n  epochs: 3\n  lr: 0.1\n  epochs: 5\n")
    with pytest.raises(ValueError, match=r"duplicate key 'epochs' at line 5, column 3 \(first at line 3, column 3\)"):
        load_raw(path)


def test_duplicate_key_in_a_set_value():
    with pytest.raises(ValueError, match=r"--set model.options: .*duplicate key 'width'"):
        apply_overrides(BASE, ["model.options={width: 1, width: 2}"])


def test_merge_key_then_override_is_not_a_duplicate():
    got = yaml_load("t: &t {epochs: 2, lr: 0.1}\nu:\n  <<: *t\n  epochs: 5\n")
    assert got["u"] == {"epochs": 5, "lr": 0.1}


# -- --set paths that do not exist -------------------------------------------------------------

@pytest.mark.parametrize("item, fragment", [
    ("methods.3.options.lr=1", "--set methods.3.options.lr: methods has 1 entries (indices 0..0); there is no methods.3"),
    ("methods.1=x", "there is no methods.1"),
    ("train.epochs.x=1", "--set train.epochs.x: train.epochs is 1 (int), not a mapping, so it has no field 'x'"),
    ("methods.name=ga", "--set methods.name: methods is a list; pick an entry by its index"),
    ("seeds..x=1", "the path has an empty part"),
], ids=["index-out-of-range", "last-index-out-of-range", "key-into-number", "word-key-into-list", "empty-part"])
def test_set_path_that_does_not_exist(item, fragment):
    with pytest.raises(ValueError) as err:
        apply_overrides(BASE, [item])
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_set_creates_missing_mapping_keys():
    assert apply_overrides(BASE, ["model.options.hidden=8"])["model"] == {"name": "mlp", "options": {"hidden": 8}}


# -- options against declared fields and types -------------------------------------------------

@dataclass
class _Method:
    lr: float = 0.01
    epochs: int = 5
    falw: bool = False
    stop: dict | None = None
    milestones: tuple[int, ...] = ()

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


class _Weighting:
    def __init__(self, eta: float = 1.0, estimate: str = "every_k"):
        if eta <= 0:
            raise ValueError(f"eta must be > 0, got {eta}")


def _builder(in_shape, num_classes, width: int = 8):
    return width


def test_declared_options_of_each_kind_of_target():
    assert set(declared_options(_Method)) == {"lr", "epochs", "falw", "stop", "milestones"}
    assert set(declared_options(_Weighting)) == {"eta", "estimate"}
    assert set(declared_options(_builder)) == {"width"}  # the inputs without defaults are not options


def test_validate_accepts_good_options_and_widens_int_to_float():
    out = validate_options(_Method, {"lr": 1, "stop": None, "milestones": [2, 4]}, "m")
    assert out == {"lr": 1.0, "stop": None, "milestones": (2, 4)} and isinstance(out["lr"], float)
    assert validate_options(_Method, {"stop": {"metric": "FA"}}, "m") == {"stop": {"metric": "FA"}}


@pytest.mark.parametrize("target, options, fragment", [
    (_Method, {"flaw": True}, "m: unknown option(s) ['flaw'] (did you mean 'falw'?); options: ['epochs', 'falw', 'lr', 'milestones', 'stop']"),
    (_Method, {"lr": "1e-3"}, "m.lr: expected float, got '1e-3' (str)"),
    (_Method, {"epochs": "3"}, "m.epochs: expected int, got '3' (str)"),
    (_Method, {"epochs": 2.5}, "m.epochs: expected int, got 2.5 (float)"),
    (_Method, {"epochs": True}, "m.epochs: expected int, got True (bool)"),
    (_Method, {"stop": 3}, "m.stop: expected mapping or None, got 3 (int)"),
    (_Method, {"milestones": [1, "x"]}, "m.milestones: expected list of int"),
    (_Method, {"lr": -1.0}, "m: lr must be > 0, got -1.0"),
    (_Weighting, {"eta": 0}, "w: eta must be > 0, got 0"),
    (_Weighting, {"estimate": 3}, "w.estimate: expected str, got 3 (int)"),
    (_builder, {"widht": 3}, "b: unknown option(s) ['widht'] (did you mean 'width'?)"),
    (_builder, {"width": 3.0}, "b.width: expected int, got 3.0 (float)"),
    (_Method, ["lr"], "m: expected a mapping of options, got ['lr'] (list)"),
], ids=["unknown-with-suggestion", "float-as-string", "int-as-string", "int-as-float", "int-as-bool",
        "dict-or-none", "list-item", "range-from-post-init", "range-from-constructor", "class-kwarg-type",
        "function-unknown", "function-type", "not-a-mapping"])
def test_validate_rejects(target, options, fragment):
    with pytest.raises(ValueError) as err:
        validate_options(target, options, {_Method: "m", _Weighting: "w", _builder: "b"}[target])
    assert fragment in str(err.value)


# -- the same checks from a config, before anything runs ---------------------------------------

@pytest.mark.parametrize("raw, fragment", [
    (_with(methods=[{"name": "ga", "options": {"lr": "fast"}}]), "methods.0.options.lr: expected float, got 'fast' (str)"),
    (_with(methods=[{"name": "ga", "options": {"epochs": "3"}}]), "methods.0.options.epochs: expected int, got '3' (str)"),
    (_with(methods=[{"name": "ga", "options": {"lrr": 0.1}}]), "unknown option(s) ['lrr'] (did you mean 'lr'?)"),
    (_with(methods=[{"name": "ga", "weightings": ["falw"], "weighting_options": {"flaw": {"tau": 0.1}}}]),
     "methods.0.weighting_options.flaw: unknown weighting 'flaw' (did you mean 'falw'?)"),
    (_with(methods=[{"name": "ga", "weightings": ["falw"], "weighting_options": {"falw": {"eta": "big"}}}]),
     "methods.0.weighting_options.falw.eta: expected float, got 'big' (str)"),
    (_with(methods=[{"name": "ga", "weightings": ["falw"], "weighting_options": {"falw": {"eta": -1}}}]),
     "methods.0.weighting_options.falw: eta must be > 0"),
    (_with(methods=[{"name": "ga", "weighting_options": {"falw": {"tau": 0.1}}}]),
     "methods.0.weighting_options.falw: weighting 'falw' is not among this method's weightings ['uniform']"),
    (_with(methods=[{"name": "ft", "weightings": ["falw"]}]),
     "methods.0.weightings: method 'ft' has no per-sample forget loss, so it cannot take weighting 'falw'"),
    (_with(model={"name": "cnn", "options": {"depth": 4}}), "model.options: unknown option(s) ['depth']; options: ['width']"),
    (_with(model={"name": "mlp", "options": {"hidden": "wide"}}), "model.options.hidden: expected int, got 'wide' (str)"),
    (_with(metrics={"extra": ["ulira"], "extra_options": {"ulira": {"shadowz": 3}}}),
     "metrics.extra_options.ulira: unknown option(s) ['shadowz'] (did you mean 'shadows'?)"),
    (_with(metrics={"extra": ["ulira"], "extra_options": {"ulira": {"shadows": "3"}}}),
     "metrics.extra_options.ulira.shadows: expected int, got '3' (str)"),
    (_with(metrics={"extra": [], "extra_options": {"mia_nn": {"references": 3}}}),
     "metrics.extra_options.mia_nn: 'mia_nn' is not in metrics.extra []"),
    (_with(methods=[{"name": "gaa"}]), "unknown method 'gaa' (did you mean 'ga'?)"),
    (_with(methods=[{"name": "ga", "options": {"lr": -1}}]), "methods.0.options: lr must be"),
], ids=["method-float-type", "method-int-type", "method-unknown-suggest", "weighting-name-misspelled",
        "weighting-option-type", "weighting-option-range", "weighting-options-unused", "weighting-on-unweightable",
        "model-unknown-option", "model-option-type", "evaluator-unknown-option", "evaluator-option-type",
        "evaluator-options-unused", "method-name-suggest", "method-range-from-post-init"])
def test_config_component_errors(raw, fragment):
    with pytest.raises((ValueError, KeyError)) as err:
        parse_config(raw)
    assert fragment in str(err.value)


def test_negative_model_size_names_the_option():
    from forgetkit.models import build_model

    for name, opts, option in [("mlp", {"hidden": -3}, "hidden"), ("mlp", {"depth": -1}, "depth"),
                               ("cnn", {"width": 0}, "width")]:
        with pytest.raises(ValueError, match=rf"model.options.{option}: {name} needs an integer >= \d, got"):
            build_model(name, (1, 8, 8), 10, **opts)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['depth'\]"):
        build_model("cnn", (1, 8, 8), 10, depth=4)  # no longer swallowed


# -- two entries with one name -------------------------------------------------------------------

def test_same_name_entries_get_distinct_labels_from_their_options():
    cfg = parse_config(_with(methods=[{"name": "ga", "options": {"lr": 1e-5}}, {"name": "ga", "options": {"lr": 5e-3}}]))
    assert [m.display for m in cfg.methods] == ["GA (lr=1e-05)", "GA (lr=0.005)"]


def test_auto_label_counts_defaults_and_weightings():
    cfg = parse_config(_with(methods=[{"name": "ga"}, {"name": "ga", "options": {"epochs": 2}},
                                      {"name": "ga", "weightings": ["falw"]}]))
    assert [m.display for m in cfg.methods] == ["GA (epochs=5, weightings=[\"uniform\"])",
                                                "GA (epochs=2, weightings=[\"uniform\"])",
                                                "GA (epochs=5, weightings=[\"falw\"])"]


def test_label_equal_to_the_paper_name_counts_as_the_same_row_name():
    """``{name: ga}`` shows as "GA": beside ``{name: ga, label: GA}`` it would merge into that row."""
    cfg = parse_config(_with(methods=[{"name": "ga", "label": "GA"}, {"name": "ga", "options": {"epochs": 2}}]))
    assert [m.display for m in cfg.methods] == ["GA", "GA (epochs=2)"]


def test_same_explicit_label_is_one_row_on_purpose():
    cfg = parse_config(_with(methods=[{"name": "trw_2r", "label": "TRW-2R", "options": {"draw": d}} for d in range(3)],
                             requests=[{"kind": "class", "classes": [0]}]))
    assert {m.display for m in cfg.methods} == {"TRW-2R"}


@pytest.mark.parametrize("methods, fragment", [
    ([{"name": "ga", "options": {"lr": 1e-5}}, {"name": "ga", "options": {"lr": 1e-5}}],
     "methods.1 repeats methods.0 ('GA' with the same options)"),
    ([{"name": "ga", "label": "x"}, {"name": "ft", "label": "x"}], "methods.1.label: 'x' is also the label of methods.0"),
], ids=["identical-entries", "one-label-two-methods"])
def test_colliding_method_entries_are_refused(methods, fragment):
    with pytest.raises(ValueError) as err:
        parse_config(_with(methods=methods))
    assert fragment in str(err.value)


def test_presets_still_parse():
    """Every shipped forget preset passes the stricter checks (none relies on a swallowed option)."""
    from pathlib import Path

    for path in sorted(Path(__file__).parents[2].glob("configs/*.yaml")):
        raw = load_raw(path)
        if raw.get("experiment_type", "forget") == "forget":
            raw.pop("tune", None)
            parse_config(raw)
