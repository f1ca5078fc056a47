"""The bad-input catalogue of docs/errors.md: each case fails with a message that says what is
wrong, and nothing is written (no output directory, no results.sqlite, no cached model)."""
from __future__ import annotations

import copy
import json
import sys

import pytest
import torch

from forgetkit.bench.config import parse_config
from forgetkit.bench.runner import run_experiment
from forgetkit.cli import main
from forgetkit.data import validate_indices
from forgetkit.methods import build_method, check_requirements
from forgetkit.models import build_model
from forgetkit.cache import ModelCache
from forgetkit.unlearn.context import UnlearnContext

BASE = {"name": "errors", "dataset": "digits", "heldout_fraction": 0.1, "device": "cpu",
        "model": {"name": "mlp"}, "train": {"epochs": 1},
        "requests": [{"kind": "random", "fraction": 0.1}],
        "methods": [{"name": "ft", "options": {"epochs": 1}}], "seeds": [0]}


def _set(path: str, value):
    """A mutation of BASE: ``path`` like ``requests.0.fraction``."""
    def mutate(raw):
        *parents, last = path.split(".")
        node = raw
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return mutate


# (case id, mutation of BASE, exception, message fragment) — run through parse_config + run_experiment
CONFIG_CASES = [
    ("unknown-method", _set("methods.0.name", "nope"), KeyError, "unknown method 'nope'"),
    ("unknown-weighting", _set("weightings", ["nope"]), KeyError, "unknown weighting 'nope'"),
    ("unknown-dataset", _set("dataset", "nope"), KeyError, "unknown dataset 'nope'"),
    ("unknown-evaluator", _set("metrics", {"extra": ["nope"]}), KeyError, "unknown evaluator 'nope'"),
    ("unknown-method-option", _set("methods.0.options", {"nope": 1}), ValueError,
     "methods.0.options: unknown option(s) ['nope']"),
    ("unknown-weighting-option", _set("methods.0.weighting_options", {"uniform": {"nope": 1}}), ValueError,
     "methods.0.weighting_options.uniform: unknown option(s) ['nope']"),
    ("unknown-field", _set("epochs", 3), ValueError, "epochs: Extra inputs are not permitted"),
    ("wrong-type-int", _set("train.epochs", "many"), ValueError, "train.epochs: Input should be a valid integer"),
    ("wrong-type-list", _set("seeds", 0), ValueError, "seeds: Input should be a valid list"),
    ("out-of-range-heldout", _set("heldout_fraction", 1.5), ValueError, "heldout_fraction: Input should be less than 1"),
    ("out-of-range-lr", _set("train.lr", -0.1), ValueError, "train: lr must be a number > 0, got -0.1"),
    ("out-of-range-fraction", _set("requests.0.fraction", 0.0), ValueError,
     "requests.0: fraction must be in (0, 1), got 0.0"),
    ("unknown-request-kind", _set("requests.0.kind", "some"), ValueError,
     "requests.0.kind: unknown request shape 'some'; known: class, longtail, mixed, random, subclass"),
    ("request-missing-field", _set("requests.0", {"kind": "longtail", "ratio": 0.1}), ValueError,
     "a longtail request needs the field 'gamma'"),
    ("unknown-device", _set("device", "tpu"), ValueError, "device: Input should be 'auto', 'cpu' or 'cuda'"),
    ("empty-methods", _set("methods", []), ValueError, "'methods' must not be empty"),
    ("empty-seeds", _set("seeds", []), ValueError, "'seeds' must not be empty"),
    ("fraction-selects-nothing", _set("requests.0.fraction", 1e-5), ValueError, "selects no sample"),
    ("longtail-infeasible", _set("requests.0", {"kind": "longtail", "ratio": 1.0, "gamma": 1.0, "keep_one": True}),
     ValueError, "but only"),
    ("class-does-not-exist", _set("requests.0", {"kind": "class", "classes": [12]}), ValueError,
     "class 12 does not exist (dataset has classes 0..9)"),
    ("class-every-class", _set("requests.0", {"kind": "class", "classes": list(range(10))}), ValueError,
     "names every class"),
    ("missing-data-files", lambda raw: raw.update(dataset="cifar10", data_dir="/nonexistent/cifar"),
     FileNotFoundError, "cifar10"),
    ("method-needs-heldout", lambda raw: raw.update(heldout_fraction=0.0, methods=[{"name": "scar"}]),
     ValueError, "needs a held-out set"),
    ("weighting-needs-heldout", lambda raw: raw.update(heldout_fraction=0.0, methods=[
        {"name": "ga", "weightings": ["falw"]}]), ValueError, "with weighting 'falw' needs a held-out set"),
    ("class-only-method-on-random-request", _set("methods.0", {"name": "svd"}), ValueError,
     "forgets whole classes but the config has no class request"),
    ("cuda-without-gpu", _set("device", "cuda"), ValueError, "no CUDA GPU is available"),
    # docs/errors.md, "Config files and values" (rows Y…)
    ("Y1-seed-twice", _set("seeds", [0, 0]), ValueError, "seeds: 0 is listed twice in seeds [0, 0]; give each once"),
    ("Y2-seed-negative", _set("seeds", [-1]), ValueError, "seeds.0: Input should be greater than or equal to 0"),
    ("Y2-seed-too-large", _set("seeds", [2**32]), ValueError, "seeds.0: Input should be less than or equal to 4294967295"),
    ("Y3-seed-bool", _set("seeds", [True]), ValueError, "seeds.0: Input should be a valid integer (YAML reads"),
    ("Y3-seed-text", _set("seeds", ["1"]), ValueError, "seeds.0: Input should be a valid integer"),
    ("Y4-weighting-twice", _set("weightings", ["uniform", "uniform"]), ValueError,
     "weightings: 'uniform' is listed twice in weightings ['uniform', 'uniform']; give each once"),
    ("Y4-evaluator-twice", _set("metrics", {"extra": ["js_divergence", "js_divergence"]}), ValueError,
     "metrics.extra: 'js_divergence' is listed twice"),
    ("Y5-no-weightings", _set("weightings", []), ValueError, "'weightings' must not be empty"),
    ("Y5-method-no-weightings", _set("methods.0.weightings", []), ValueError,
     "methods.0.weightings: must not be empty (leave it out for the experiment's weightings)"),
    ("Y6-request-twice", _set("requests", [{"kind": "random", "fraction": 0.1}] * 2), ValueError,
     "requests.1 repeats requests.0: its rows would be the same cells; remove one"),
    ("Y7-request-name-twice", _set("requests", [{"kind": "random", "fraction": 0.1, "name": "a"},
                                                {"kind": "random", "fraction": 0.2, "name": "a"}]), ValueError,
     "requests.1.name: 'a' is also the name of requests.0; give each request its own name"),
    ("Y8-request-named-as-another", _set("requests", [{"kind": "random", "fraction": 0.1},
                                                      {"kind": "random", "fraction": 0.2, "name": "random0.1"}]),
     ValueError, "requests.1 is reported as 'random0.1', as requests.0 is; give one of them another name"),
    ("Y9-option-of-another-shape", _set("requests.0.classes", [3]), ValueError,
     "requests.0: unknown option(s) ['classes']; options: ['fraction']"),
    ("Y10-class-twice", _set("requests.0", {"kind": "class", "classes": [3, 3]}), ValueError,
     "requests.0: classes lists class 3 twice; give each once"),
    ("Y11-empty-name", _set("name", " "), ValueError, "name: must not be empty"),
    ("Y12-yaml-boolean-as-name", _set("name", True), ValueError,
     "name: Input should be a valid string (YAML reads an unquoted yes/no/on/off/true/false as the boolean True"),
    ("Y14-nan", _set("requests.0", {"kind": "longtail", "ratio": 0.3, "gamma": float("nan")}), ValueError,
     "requests.0.gamma: nan is not a finite number"),
    ("Y15-huge-integer", _set("train.epochs", 10**23), ValueError,
     "train.epochs: 100000000000000000000000 is too large (integers must fit 64 bits)"),
    ("Y16-threads", _set("threads", 5000), ValueError, "threads: Input should be less than or equal to 1024"),
    ("Y24-unknown-method-names-its-field", _set("methods.0.name", "nope"), KeyError, "methods.0.name: unknown method 'nope'"),
    ("Y24-unknown-dataset-at-parse", _set("dataset", "nope"), KeyError, "dataset: unknown dataset 'nope'"),
]


def _nothing_written(tmp_path) -> None:
    written = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()]
    assert written == [], f"files written before the error: {written}"


@pytest.mark.parametrize("case", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config(case, tmp_path):
    name, mutate, exc, fragment = case
    if name == "cuda-without-gpu" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    raw = copy.deepcopy(BASE)
    mutate(raw)
    with pytest.raises(exc) as err:
        run_experiment(parse_config(raw), tmp_path / "out", show_progress=False)
    assert fragment in str(err.value)
    _nothing_written(tmp_path)


@pytest.mark.parametrize("indices, fragment", [
    ([0, 5, 200], "forget indices out of range [0, 100): [200]"),
    ([-1, 3], "forget indices out of range [0, 100): [-1]"),
    ([1, 2, 2], "forget indices contain duplicates: [2]"),
    ([], "forget indices are empty"),
    (list(range(100)), "cover the whole training set"),
    ([0.5, 1.0], "forget indices must be integers"),
    ([[1, 2]], "must be a 1-D list"),
], ids=["out-of-range", "negative", "duplicated", "empty", "whole-set", "not-integers", "not-1d"])
def test_bad_forget_indices(indices, fragment):
    with pytest.raises(ValueError) as err:
        validate_indices(indices, 100)
    assert fragment in str(err.value)


def test_python_api_rejects_bad_indices_before_touching_the_model():
    from forgetkit.api import unlearn

    model = build_model("mlp", (64,), 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = (torch.rand(50, 64), torch.arange(50) % 10)
    with pytest.raises(ValueError, match=r"out of range \[0, 50\)"):
        unlearn(model, data, [3, 99], method="ga")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_method_needing_retain_set_refuses_an_empty_one():
    empty = (torch.rand(0, 64), torch.zeros(0, dtype=torch.long))
    from forgetkit.data import Split

    ctx = UnlearnContext(original=torch.nn.Identity(), forget=Split(torch.rand(5, 64), torch.arange(5)),
                         retain=Split(*empty), num_classes=10, device=torch.device("cpu"), seed=0)
    with pytest.raises(ValueError, match="needs a retain set, but none was given"):
        check_requirements(build_method("ft"), ctx, None)


def test_checkpoint_of_another_architecture(tmp_path):
    cache = ModelCache(tmp_path)
    cache.save("k", build_model("mlp", (64,), 10))
    with pytest.raises(ValueError, match=r"checkpoint .*k\.pt does not fit this architecture"):
        cache.load("k", build_model("logreg", (64,), 10))


def test_output_of_another_experiment_is_not_overwritten(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    marker = out / "experiment.json"
    marker.write_text(json.dumps({"name": "someone-else"}))
    with pytest.raises(ValueError, match="holds results of experiment 'someone-else'"):
        run_experiment(parse_config(BASE), out, show_progress=False)
    assert [p.name for p in out.iterdir()] == ["experiment.json"]
    assert json.loads(marker.read_text()) == {"name": "someone-else"}


@pytest.mark.parametrize("text, fragment", [
    (None, "does not exist"),
    ("name: [unclosed", "is not valid YAML"),
    ("- just\n- a list\n", "must be a mapping of fields"),
], ids=["missing-file", "invalid-yaml", "not-a-mapping"])
def test_cli_bad_config_file(text, fragment, tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    if text is not None:
        path.write_text(text)
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


FILE_CASES = ["Y17-empty", "Y17-comment", "Y18-latin-1", "Y18-utf-16", "Y19-tab", "Y20-int-key", "Y13-date", "Y13-set",
              "Y14-nan", "Y21-alias-bomb", "Y22-experiment-type", "Y22-cache-dir", "Y23-smoke-extra-options"]
BOMB = "lol: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}' if i else '*a'] * 10)}]\n" for i in range(6))
FILE = "name: f\ndataset: digits\nrequests: [{kind: random, fraction: 0.1}]\nmethods: [{name: ft}]\n"


@pytest.mark.parametrize("content, fragment", [
    ("", "cfg.yaml is empty; a config is a mapping of fields"),
    ("# only a comment\n", "cfg.yaml is empty"),
    (FILE.replace("digits", "digits\xe9").encode("latin-1"), "cfg.yaml is not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8"),
    (FILE.encode("utf-16"), "cfg.yaml is UTF-16 text; save it as UTF-8"),
    ("name: t\ntrain:\n\tepochs: 1\n", "(YAML indents with spaces, not tabs: replace the tabs)"),
    (FILE + "1: x\n", "cfg.yaml: the key 1 (int) is not a field name; quote it to make it a string"),
    (FILE.replace("name: f", "name: 2024-01-01"), "cfg.yaml: name: YAML read 2024-01-01 as a date, which no field takes"),
    (FILE + "seeds: !!set {1, 2}\n", "seeds: YAML read {1, 2} as a set (!!set), which no field takes"),
    (FILE + "heldout_fraction: .nan\n", "cfg.yaml: heldout_fraction: nan is not a finite number"),
    (FILE + BOMB, "the config holds over 100000 values (YAML aliases expanded)"),
    (FILE + "experiment_type: [a]\n", "cfg.yaml: experiment_type: expected a string, got ['a'] (list)"),
    (FILE + "cache_dir: 3\n", "cfg.yaml: cache_dir: expected a string or null, got 3 (int)"),
    (FILE + "metrics: {extra: [mia_nn], extra_options: {mia_nn: [1]}}\n",
     "metrics.extra_options.mia_nn: Input should be a valid dictionary"),
], ids=FILE_CASES)
def test_cli_config_file_family(content, fragment, tmp_path, capsys):
    """Each is one line on stderr, exit 2, under ``--smoke`` too, and the config is the only file."""
    path = tmp_path / "cfg.yaml"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet", "--smoke"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("forgetkit: error: ") and fragment in err and "Traceback" not in err, err
    assert [p.name for p in tmp_path.rglob("*")] == ["cfg.yaml"]


def test_every_config_row_has_a_case_here():
    """Rows Y… of docs/errors.md and the cases above name the same rows."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text()
    rows = re.findall(r"^\| (Y\d+) \|", text, flags=re.M)
    assert len(rows) == len(set(rows)), "a row number is used twice"
    cases = {c.split("-")[0] for c in [*(case[0] for case in CONFIG_CASES), *FILE_CASES] if c.startswith("Y")}
    assert sorted(rows) == sorted(cases)


def test_cli_bad_set_override(tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps(BASE))
    assert main(["run", str(path), "--set", "train.epochs", "--out", str(tmp_path / "out")]) == 2
    assert "--set expects key=value" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unknown_model_fails_before_writing(tmp_path):
    raw = copy.deepcopy(BASE)
    raw["model"] = {"name": "nope"}
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        run_experiment(parse_config(raw), tmp_path / "out", show_progress=False)
    _nothing_written(tmp_path)


def test_ray_executor_without_ray_fails_before_writing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail as if not installed
    with pytest.raises(ValueError, match=r"pip install forgetkit\[ray\]"):
        run_experiment(parse_config(BASE), tmp_path / "out", show_progress=False, executor="ray")
    _nothing_written(tmp_path)


def test_require_executor_names_the_extra(monkeypatch):
    from forgetkit.bench.executors import require_executor

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ValueError, match=r"pip install forgetkit\[ray\]"):
        require_executor("ray")
    with pytest.raises(ValueError, match="unknown executor 'dask'"):
        require_executor("dask")
    require_executor("local")


def test_importing_forgetkit_does_not_need_ray():
    import subprocess

    code = ("import sys; sys.modules['ray'] = None\n"
            "import forgetkit, forgetkit.cli, forgetkit.bench.runner, forgetkit.bench.executors\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# docs/errors.md rows C… (command line: files, executors, signals) and F… (stores) → the test (or
# tests) that hold them; a row without a test, or a test named here that is gone, fails below
NUMBERED_ROWS = {
    "C1": "tests/cli/test_files_and_stores.py::test_report_refuses_a_store_it_did_not_write_and_writes_nothing",
    "C2": "tests/cli/test_files_and_stores.py::test_merge_refuses_a_source_whose_store_is_foreign",
    "C3": "tests/cli/test_files_and_stores.py::test_run_refuses_a_foreign_store_before_writing_anything",
    "C4": "tests/cli/test_files_and_stores.py::test_tune_refuses_a_foreign_study_file",
    "C5": ("tests/cli/test_files_and_stores.py::test_run_into_a_directory_with_a_broken_experiment_json",
           "tests/cli/test_files_and_stores.py::test_leaderboard_names_a_broken_experiment_json"),
    "C6": "tests/cli/test_files_and_stores.py::test_a_broken_experiment_json_is_named_with_its_field",
    "C7": "tests/cli/test_files_and_stores.py::test_ray_that_cannot_connect_writes_no_run_directory",
    "C8": "tests/cli/test_files_and_stores.py::test_address_without_the_ray_executor_is_refused_before_writing",
    "C9": ("tests/bench/test_tune_resume.py::test_ctrl_c_in_tune_is_one_line_and_exit_130",
           "tests/cli/test_files_and_stores.py::test_real_sigint_during_tune_is_one_line_and_the_trial_is_stored_failed"),
    "C10": "tests/bench/test_tune_resume.py::test_stopped_and_resumed_study_picks_the_same_recipe",
    "C11": "tests/cli/test_files_and_stores.py::test_sigterm_mid_run_is_one_line_and_exit_143",
    "C12": "tests/cli/test_files_and_stores.py::test_a_reader_that_leaves_the_pipe_gets_no_traceback",
    "C13": "tests/cli/test_loading.py::test_a_pickled_whole_model_is_refused_plainly",
    "C14": "tests/cli/test_loading.py::test_state_dict_checkpoints_load",
    "C15": "tests/cli/test_loading.py::test_other_checkpoints_are_refused_naming_the_file",
    "C16": "tests/cli/test_loading.py::test_a_checkpoint_of_another_shape_names_the_architecture",
    "C17": "tests/cli/test_loading.py::test_bad_data_files_name_the_file_and_the_problem",
    "C18": "tests/cli/test_loading.py::test_model_factory_errors",
    "C19": "tests/cli/test_loading.py::test_evaluate_refuses_a_bad_csv_before_scoring",
    "C20": "tests/cli/test_loading.py::test_forget_indices_files",
    "C21": "tests/cli/test_files_and_stores.py::test_a_directory_where_a_file_belongs",
    "C22": "tests/cli/test_files_and_stores.py::test_signals_end_a_command_with_one_line",
    "C23": "tests/cli/test_files_and_stores.py::test_a_store_held_by_another_process_says_so",
    "C24": "tests/cli/test_files_and_stores.py::test_a_damaged_row_is_named_by_store_and_key",
    "C25": "tests/cli/test_files_and_stores.py::test_tune_checks_its_recipes_directory_before_the_trials",
    "C26": "tests/cli/test_loading.py::test_evaluate_normalises_inputs_as_the_model_expects",
    "C27": "tests/cli/test_files_and_stores.py::test_ray_options_are_checked_before_anything_is_written",
    "F1": "tests/cli/test_files_and_stores.py::test_a_reader_never_creates_a_store",
    "F2": "tests/cli/test_files_and_stores.py::test_a_reader_never_creates_a_store",
    "F3": "tests/cli/test_files_and_stores.py::test_merge_refuses_a_source_whose_store_is_foreign",
}


def test_numbered_command_line_and_store_rows_each_have_a_test():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    rows = re.findall(r"^\| ([CF]\d+) \|", (root / "docs" / "errors.md").read_text(), flags=re.M)
    assert len(rows) == len(set(rows)), "a row number is used twice"
    assert sorted(rows) == sorted(NUMBERED_ROWS), "docs/errors.md and NUMBERED_ROWS list different rows"
    for row, nodes in NUMBERED_ROWS.items():
        for node in (nodes,) if isinstance(nodes, str) else nodes:
            path, name = node.split("::")
            assert f"def {name}(" in (root / path).read_text(), f"row {row}: {node} does not exist"


# docs/errors.md rows P… (the Python API): each case is run, and the fragment it checks must be quoted
# in its row, so the catalogue and the code cannot drift apart
def _api_world():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 256, (80, 1, 8, 8), dtype=torch.uint8, generator=g), torch.arange(80) % 10
    return build_model("mlp", (1, 8, 8), 10, hidden=16, depth=1), (x, y)


class _BatchMean(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x).mean(0, keepdim=True)


def _frozen(model):
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _api_cases():
    from torch import nn

    from forgetkit import evaluate, unlearn
    from forgetkit.inputs import ProbabilitiesWarning, UnchangedModelWarning

    F = list(range(0, 80, 8))
    threes = list(range(3, 80, 10))

    def ev(model, data, **kw):
        x, y = data
        return evaluate({"m": model}, forget=(x[:10], y[:10]), retain=(x[10:], y[10:]), test=(x[:10], y[:10]), **kw)

    bn = lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 10))  # noqa: E731
    x_inf = lambda d: (d[0], torch.where(torch.arange(80) == 5, float("inf"), d[1].float()))  # noqa: E731
    return {
        "P1": (lambda m, d: unlearn(m, d, F, method="rl", epochs=0), ValueError,
               "epochs=0 would return the model unchanged; method 'rl' needs epochs >= 1"),
        "P2": (lambda m, d: unlearn(_frozen(m), d, F), ValueError,
               "model has 4 parameter tensors, all frozen (requires_grad=False), so unlearning could not change it"),
        "P3": (lambda m, d: unlearn(m, d, F, forget_classes=[3]), ValueError,
               "forget_classes: classes [3] have no samples in the forget set"),
        "P4": (lambda m, d: unlearn(m, d, threes[:3], forget_classes=[3]), ValueError,
               "forget_classes: classes [3] still have samples outside the forget set, so they are not removed whole"),
        "P5": (lambda m, d: unlearn(m, d, threes, forget_classes=[3, 12]), ValueError,
               "forget_classes: classes [12] do not exist"),
        "P6": (lambda m, d: unlearn(_BatchMean(m), d, F), ValueError,
               "model returned shape (1, 10) for 2 sample(s); forgetkit needs one row of logits per sample"),
        "P7": (lambda m, d: unlearn(nn.Sequential(m, _Argmax()), d, F), ValueError,
               "model returned torch.int64 outputs; forgetkit needs float logits (not predicted labels)"),
        "P8": (lambda m, d: unlearn(nn.Sequential(m, _Times(float("nan"))), d, F), ValueError,
               "model returned NaN or inf logits on samples of the data"),
        "P9": (lambda m, d: unlearn(nn.Sequential(nn.Flatten(), nn.Linear(64, 1)), d, F), ValueError,
               "the model returns 1 output per sample; forgetkit needs one logit per class"),
        "P10": (lambda m, d: unlearn(bn(), d, [0], method="ga", epochs=1), ValueError,
                "method 'ga' ran a batch of one sample through a BatchNorm layer in train mode"),
        "P11": (lambda m, d: unlearn(m, d, F, test=(torch.cat([d[0]] * 2), torch.cat([d[1]] * 2))), ValueError,
                "test: MIA-Efficacy takes one shadow member per test sample from the retain set"),
        "P12": (lambda m, d: unlearn(m, d, threes, forget_classes=[3], test=(d[0][threes], d[1][threes])), ValueError,
                "test: every test sample is of forget_classes [3], which TA and MIA leave out"),
        "P13": (lambda m, d: unlearn(m, d, F, seed=1.5), ValueError, "seed must be an integer >= 0, got 1.5"),
        "P14": (lambda m, d: unlearn(m, d, F, device="meta"), ValueError,
                "device 'meta': forgetkit runs models on cpu, cuda, mps"),
        "P15": (lambda m, d: unlearn(m, (d[0] > 100, d[1]), F), ValueError,
                "train: inputs are booleans; pass them as float (x.float()) or uint8 images"),
        "P16": (lambda m, d: unlearn(m, x_inf(d), F), ValueError,
                "train: labels must be integer class indices, got torch.float32 values such as [inf]"),
        "P17": (lambda m, d: unlearn(m, d, F, normalize=(0.5, 0.0)), ValueError, "normalize: every std must be > 0, got [0.0]"),
        "P18": (lambda m, d: ev(m, d, reference=m, tau=float("nan")), ValueError, "tau must be a finite number >= 0, got nan"),
        "P19": (lambda m, d: ev(m, d, metrics=[]), ValueError,
                "metrics must be a non-empty list of metric names (or None for FA, RA, TA, MIA), got []"),
        "P20": (lambda m, d: evaluate({"m": m}, forget=(d[0][:5], d[1][:5]), retain=d, test=(d[0][:0], d[1][:0])),
                ValueError, "test: the test set is empty; TA and MIA need test samples"),
        "P21": (lambda m, d: unlearn(m, d, F, update_frozen_stats="yes"), TypeError,
                "update_frozen_stats must be True or False, got 'yes'"),
        "P25": (lambda m, d: ev(m, d, metrics=["class_acc"]), ValueError,
                "metric 'class_acc' measures whole-class forgetting: pass forget_classes=[...]"),
        "P26": (lambda m, d: ev(m, d, unlearn=3), TypeError, "unlearn must be a function model -> unlearned model, got int"),
        "P27": (lambda m, d: unlearn(m.half(), d, F), ValueError,
                "forgetkit feeds float32 inputs, and the model holds ['torch.float16']: pass model.float()"),
        "P22": (lambda m, d: unlearn(nn.Sequential(m, nn.Softmax(1)), d, F, epochs=1), ProbabilitiesWarning,
                "model's outputs look like probabilities (non-negative, each row sums to 1)"),
        "P23": (lambda m, d: unlearn(m, d, F, method="ga", epochs=1, lr=1e-30), UnchangedModelWarning,
                "unlearning with 'ga' left every parameter of the model as it was"),
        "P24": (lambda m, d: unlearn(m, d, F, method="ga", epochs=1, lr=1e-6, test=(d[0][:40], d[1][:40])),
                UnchangedModelWarning, "unlearning with 'ga' left FA, RA, TA and MIA exactly as the original's"),
    }


class _Argmax(torch.nn.Module):
    def forward(self, logits):
        return logits.argmax(1, keepdim=True).repeat(1, 10)


class _Times(torch.nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def _api_rows() -> dict[str, str]:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text()
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| (P\d+) \|.*$", text, flags=re.M)}


def test_api_rows_and_cases_are_the_same():
    assert sorted(_api_rows(), key=lambda r: int(r[1:])) == sorted(_api_cases(), key=lambda r: int(r[1:]))


@pytest.mark.parametrize("row", sorted(_api_cases(), key=lambda r: int(r[1:])))
def test_api_row(row):
    call, kind, fragment = _api_cases()[row]
    assert fragment in _api_rows()[row], f"docs/errors.md row {row} does not quote {fragment!r}"
    model, data = _api_world()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    if issubclass(kind, Warning):
        with pytest.warns(kind) as caught:
            call(model, data)
        assert any(fragment in f"{w.category.__name__}: {w.message}" for w in caught), [str(w.message) for w in caught]
    else:
        with pytest.raises(kind) as err:
            call(model, data)
        assert fragment in str(err.value)
    if row not in ("P2", "P27"):  # these change the model itself (frozen, half precision) to make their point
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the model was modified"
