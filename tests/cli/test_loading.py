"""The one loader of the command line's files (``forgetkit.cli.loading``): data, forget indices and
checkpoints, and the model ``--model`` names (a registered one or ``package.module:function``)."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from forgetkit.cli import main
from forgetkit.cli.loading import MissingInputFile, load_checkpoint, load_data, load_indices, model_spec

MLP = model_spec("mlp", [("hidden", 8), ("depth", 1)])


def _mlp():
    torch.manual_seed(0)
    return MLP.build((4,), 3)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# -- checkpoints ----------------------------------------------------------------------------------

@pytest.mark.parametrize("wrap", [
    lambda sd: sd, lambda sd: {"state_dict": sd}, lambda sd: {"model_state_dict": sd, "epoch": 3, "optimizer": {}},
    lambda sd: {f"module.{k}": v for k, v in sd.items()},
], ids=["state_dict", "state_dict-wrapper", "tutorial-checkpoint", "data-parallel-prefix"])
def test_state_dict_checkpoints_load(wrap, tmp_path):
    model = _mlp()
    torch.save(wrap(model.state_dict()), tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt", MLP, (4,), 3)
    assert _same_weights(loaded, model) and not loaded.training


def test_a_pickled_whole_model_is_refused_plainly(tmp_path):
    torch.save(_mlp(), tmp_path / "whole.pt")
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path / "whole.pt", MLP, (4,), 3)
    text = str(err.value)
    assert "holds a pickled torch.nn.modules.container.Sequential (a whole model saved with torch.save(model))" in text
    assert "save the weights with torch.save(model.state_dict(), path)" in text
    assert "\x1b[" not in text and "weights_only" not in text and "add_safe_globals" not in text


@pytest.mark.parametrize("content, fragment", [
    (b"not a checkpoint", "does not load: it is not a weights file torch can read (UnpicklingError"),
    ({"epoch": 3, "lr": 0.1}, "it is a dict (epoch, lr) but not a state_dict of tensors"),
    ([1, 2], "it holds a list, not a state_dict"),
], ids=["junk-bytes", "dict-without-tensors", "a-list"])
def test_other_checkpoints_are_refused_naming_the_file(content, fragment, tmp_path):
    path = tmp_path / "c.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(ValueError, match="c.pt") as err:
        load_checkpoint(path, MLP, (4,), 3)
    assert fragment in str(err.value) and "\x1b[" not in str(err.value)


def test_a_checkpoint_of_another_shape_names_the_architecture(tmp_path):
    torch.save(_mlp().state_dict(), tmp_path / "m.pt")
    with pytest.raises(ValueError, match=r"does not fit the chosen architecture \(it does not load into mlp with 5 "
                                         r"classes, input \(4,\), options \{'hidden': 8, 'depth': 1\}\): size mismatch"):
        load_checkpoint(tmp_path / "m.pt", MLP, (4,), 5)


def test_a_missing_file_is_both_a_value_and_a_file_not_found_error(tmp_path):
    with pytest.raises(MissingInputFile, match=r"checkpoint file '.*nope.pt' does not exist") as err:
        load_checkpoint(tmp_path / "nope.pt", MLP, (4,), 3)
    assert isinstance(err.value, ValueError) and isinstance(err.value, FileNotFoundError)


# -- data and indices -----------------------------------------------------------------------------

def test_data_files_in_every_accepted_form(tmp_path):
    x, y = torch.rand(6, 4), torch.arange(6) % 3
    torch.save({"x": x, "y": y, "indices": torch.arange(6) + 10}, tmp_path / "a.pt")
    torch.save((x, y), tmp_path / "b.pt")
    np.savez(tmp_path / "c.npz", x=x.numpy(), y=y.numpy())
    a, b, c = (load_data(tmp_path / n, "forget") for n in ("a.pt", "b.pt", "c.npz"))
    assert all(torch.equal(d.split.x, x) and torch.equal(d.split.y, y) for d in (a, b, c))
    assert a.indices.tolist() == list(range(10, 16)) and b.indices is None


@pytest.mark.parametrize("make, fragment", [
    (lambda p: torch.save({"x": torch.rand(3, 2)}, p.with_suffix(".pt")), "must hold x and y"),
    (lambda p: torch.save({"x": torch.rand(3, 2), "y": torch.rand(3)}, p.with_suffix(".pt")),
     "labels must be integer class indices, got torch.float32"),
    (lambda p: torch.save({"x": torch.rand(3, 2), "y": torch.arange(2)}, p.with_suffix(".pt")),
     "x has 3 rows but y has 2"),
    (lambda p: p.with_suffix(".csv").write_text("1,2"), "must end in .pt or .npz"),
    (lambda p: torch.save(nn.Linear(2, 2), p.with_suffix(".pt")),
     "holds a pickled torch.nn.modules.linear.Linear rather than tensors"),
    (lambda p: p.with_suffix(".npz").write_bytes(b"junk"), "could not be read"),
], ids=["no-y", "float-labels", "lengths-differ", "wrong-suffix", "pickled-object", "junk-npz"])
def test_bad_data_files_name_the_file_and_the_problem(make, fragment, tmp_path):
    make(tmp_path / "d")
    (path,) = tmp_path.iterdir()
    with pytest.raises(ValueError) as err:
        load_data(path, "retain")
    assert f"retain file '{path}'" in str(err.value) and fragment in str(err.value)
    assert "\x1b[" not in str(err.value)


def test_forget_indices_files(tmp_path):
    np.save(tmp_path / "i.npy", np.array([1, 2]))
    (tmp_path / "i.json").write_text(json.dumps([3, 4]))
    (tmp_path / "i.txt").write_text("5, 6\n7")
    (tmp_path / "bad.txt").write_text("5 six")
    (tmp_path / "bad.json").write_text("[1,")
    assert [load_indices(tmp_path / n).tolist() for n in ("i.npy", "i.json", "i.txt")] == [[1, 2], [3, 4], [5, 6, 7]]
    with pytest.raises(ValueError, match="must hold integers"):
        load_indices(tmp_path / "bad.txt")
    with pytest.raises(ValueError, match="bad.json' could not be read as a list of integers"):
        load_indices(tmp_path / "bad.json")


# -- --model package.module:function ---------------------------------------------------------------

MODULE = '''
import torch
from torch import nn


def make_net(in_shape, num_classes, hidden: int = 8):
    """A user's own classifier: the factory signature of a registered model."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_shape[0], hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def fixed_net(num_classes=3, width: int = 8):
    return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, num_classes))


def not_a_model(hidden: int = 8):
    return "a string"


BROKEN = 3
'''


@pytest.fixture()
def user_module(tmp_path, monkeypatch):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield pkg
    import sys

    for name in ("mypkg", "mypkg.models"):
        sys.modules.pop(name, None)


def test_model_factories_by_module_path(user_module):
    net = model_spec("mypkg.models:make_net", [("hidden", 5)]).build((4,), 3)
    assert net[1].out_features == 5 and net[3].out_features == 3
    assert model_spec("mypkg.models:fixed_net", [("width", 6)]).build((4,), 3)[0].out_features == 6


@pytest.mark.parametrize("name, options, fragment", [
    ("mypkg.nowhere:make_net", [], "module 'mypkg.nowhere' cannot be imported (No module named 'mypkg.nowhere'); "
                                   "install its package or put its directory on PYTHONPATH"),
    ("mypkg.models:make_nte", [], "module 'mypkg.models' has no 'make_nte'; it has fixed_net, make_net, not_a_model"),
    ("mypkg.models:BROKEN", [], "'BROKEN' is a int, not a function or class"),
    ("mypkg.models:not_a_model", [], "returned a str, not a torch.nn.Module"),
    ("mypkg.models:make_net", [("hiden", 3)], "unknown option(s) ['hiden'] (did you mean 'hidden'?)"),
    ("mypkg.models:make_net", [("hidden", "wide")], "hidden: expected int, got 'wide' (str)"),
    ("mypkg.models:make_net", [("num_classes", 4)], "--model-option num_classes: forgetkit passes in_shape and "
                                                    "num_classes from the data"),
    ("mypkg.models:make_net", [("hidden", 3), ("hidden", 4)], "--model-option hidden is given twice (3 and 4)"),
    ("nope", [], "--model 'nope' is not a registered model (known: cnn, logreg, mlp"),
], ids=["no-module", "no-attribute", "not-callable", "not-a-module", "unknown-option", "wrong-type",
        "shape-as-option", "option-twice", "unknown-name"])
def test_model_factory_errors(user_module, name, options, fragment):
    with pytest.raises(ValueError) as err:
        model_spec(name, options).build((4,), 3)
    assert fragment in str(err.value)


def test_evaluate_with_a_model_of_ones_own_module(user_module, tmp_path, capsys):
    """``forgetkit evaluate --model mypkg.models:make_net`` scores a user's checkpoint end to end."""
    from importlib import import_module

    torch.manual_seed(0)
    net = import_module("mypkg.models").make_net((4,), 3, hidden=6)
    torch.save(net.state_dict(), tmp_path / "mine.pt")
    x, y = torch.rand(60, 4), torch.arange(60) % 3
    torch.save({"x": x[:10], "y": y[:10]}, tmp_path / "forget.pt")
    torch.save({"x": x[10:40], "y": y[10:40]}, tmp_path / "retain.pt")
    torch.save({"x": x[40:], "y": y[40:]}, tmp_path / "test.pt")
    args = ["evaluate", f"mine={tmp_path / 'mine.pt'}", "--model", "mypkg.models:make_net", "--model-option", "hidden=6",
            "--forget", str(tmp_path / "forget.pt"), "--retain", str(tmp_path / "retain.pt"),
            "--test", str(tmp_path / "test.pt"), "--metrics", "FA,RA,TA", "--csv", str(tmp_path / "t.csv")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "mine" in out and (tmp_path / "t.csv").read_text().startswith("model,FA,RA,TA\nmine,")
    assert main([*args[:5], "hidden=7", *args[6:]]) == 2  # the checkpoint does not fit: one line, nothing new
    assert "does not fit the chosen architecture (it does not load into mypkg.models:make_net" in capsys.readouterr().err


def test_methods_lists_models_and_request_shapes_with_their_options(capsys):
    from forgetkit.data.requests import REQUEST_SHAPES
    from forgetkit.models import MODELS

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    models, shapes = out.split("Models (")[1].split("Request shapes (")
    assert "package.module:function" in models.splitlines()[0]
    assert "[options: hidden, depth]" in next(line for line in models.splitlines() if line.strip().startswith("mlp "))
    assert [line.split()[0] for line in models.splitlines()[1:] if line.strip()] == list(MODELS.names())
    assert [line.split()[0] for line in shapes.splitlines()[1:] if line.strip()] == list(REQUEST_SHAPES.names())
    assert "[options: fraction]" in next(line for line in shapes.splitlines() if line.strip().startswith("random "))


@pytest.mark.parametrize("csv, fragment", [
    ("table_dir", "is a directory; give the CSV file to write, e.g."),
    ("nowhere/t.csv", "the directory"),
], ids=["csv-is-a-directory", "csv-directory-missing"])
def test_evaluate_refuses_a_bad_csv_before_scoring(csv, fragment, tmp_path, capsys, monkeypatch):
    import forgetkit.cli.evaluate as evaluate

    (tmp_path / "table_dir").mkdir()
    monkeypatch.setattr(evaluate, "load_data", lambda *a: pytest.fail("data read before --csv was checked"))
    args = ["evaluate", "m=m.pt", "--model", "mlp", "--forget", "f.pt", "--retain", "r.pt", "--test", "t.pt",
            "--csv", str(tmp_path / csv)]
    assert main(args) == 2
    assert fragment in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table_dir"]


def test_evaluate_normalises_inputs_as_the_model_expects(user_module, tmp_path, capsys):
    """A model trained on normalised inputs scores the same on raw files with ``--normalize`` as it
    does on the normalised inputs themselves; a malformed ``--normalize`` is one line."""
    from importlib import import_module

    torch.manual_seed(0)
    net = import_module("mypkg.models").make_net((4,), 3, hidden=6)
    torch.save(net.state_dict(), tmp_path / "mine.pt")
    x, y = torch.rand(60, 4), torch.arange(60) % 3
    for name, part in (("forget", slice(0, 10)), ("retain", slice(10, 40)), ("test", slice(40, 60))):
        torch.save({"x": x[part], "y": y[part]}, tmp_path / f"{name}.pt")
        torch.save({"x": (x[part] - 0.5) / 0.25, "y": y[part]}, tmp_path / f"{name}-normalised.pt")

    def table(suffix, *extra):
        args = ["evaluate", f"mine={tmp_path / 'mine.pt'}", "--model", "mypkg.models:make_net", "--model-option",
                "hidden=6", "--metrics", "FA,RA,TA", *extra,
                *(a for n in ("forget", "retain", "test") for a in (f"--{n}", str(tmp_path / f"{n}{suffix}.pt")))]
        assert main(args) == 0, capsys.readouterr().err
        return capsys.readouterr().out

    assert table("", "--normalize", "{mean: 0.5, std: 0.25}") == table("-normalised")
    assert table("", "--normalize", "{mean: 0.5, std: 0.25}") != table("")
    bad = ["evaluate", f"m={tmp_path / 'mine.pt'}", "--model", "mypkg.models:make_net", "--forget",
           str(tmp_path / "forget.pt"), "--retain", str(tmp_path / "retain.pt"), "--test", str(tmp_path / "test.pt")]
    assert main([*bad, "--normalize", "{mean: [0.5, 0.5], std: 1}"]) == 2
    assert "--normalize: mean has 2 values but the inputs have 4 channels" in capsys.readouterr().err
    assert main([*bad, "--normalize", "fast"]) == 2
    assert "--normalize must be (mean, std) or a function of a batch of inputs, got 'fast'" in capsys.readouterr().err
