"""Extension from outside the package: decorators, entry points, and what a clash or a broken plug-in does."""
import sys
import textwrap
from dataclasses import dataclass

import pytest
import torch

import forgetkit
from forgetkit.data.base import DataBundle, Split
from forgetkit.methods.base import METHODS, EngineMethod
from forgetkit.metrics.evaluators import EVALUATORS
from forgetkit.models import MODELS, build_model
from forgetkit.plugins import load_plugins
from forgetkit.unlearn.engine import Parts
from forgetkit.unlearn.objectives import NegativeCE
from forgetkit.unlearn.weightings import WEIGHTINGS, Weighting



pytestmark = pytest.mark.usefixtures("clean_registries")


def tiny_data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(40, 6, generator=g), torch.arange(40) % 4


def test_register_method_and_weighting_then_use_them():
    @forgetkit.register_method("half_ga")
    @dataclass
    class HalfGA(EngineMethod):
        """Gradient ascent on the forget set (a user's copy)."""

        mixing = "forget_only"
        supports_weighting = True
        epochs: int = 1
        """epochs"""

        def parts(self, model, ctx):
            return Parts(forget=NegativeCE())

    @forgetkit.register_weighting("halves")
    class Halves(Weighting):
        """Every forget sample weighs 0.5."""

        def __call__(self, logits, batch, ctx):
            return torch.full((len(batch.y),), 0.5, device=logits.device)

    assert METHODS.get("half_ga") is HalfGA and WEIGHTINGS.get("halves") is Halves
    x, y = tiny_data()
    torch.manual_seed(0)
    model = build_model("mlp", (6,), 4, hidden=8, depth=1)
    res = forgetkit.unlearn(model, (x, y), [0, 1, 2], method="half_ga", weighting="halves", lr=0.1)
    assert res.info["steps"] == 1
    assert not torch.equal(res.model[-1].weight, model[-1].weight)


def test_reregistration_is_refused_unless_override():
    with pytest.raises(ValueError, match="method 'ga' is already registered; pick another name or pass override=True"):
        @forgetkit.register_method("ga")
        @dataclass
        class Mine(EngineMethod):
            pass
    assert METHODS.get("ga").__name__ == "GA"

    @forgetkit.register_method("ga", override=True)
    @dataclass
    class Replacement(EngineMethod):
        pass

    assert METHODS.get("ga") is Replacement


def test_registration_checks_the_kind_of_object():
    with pytest.raises(TypeError, match="@dataclass subclass of forgetkit.methods.base.Method"):
        forgetkit.register_method("not_a_method")(object)
    with pytest.raises(TypeError, match="subclass of forgetkit.unlearn.weightings.Weighting"):
        forgetkit.register_weighting("w")(dict)
    with pytest.raises(TypeError, match="register_model expects a function"):
        forgetkit.register_model("m")(3)
    with pytest.raises(ValueError, match="non-empty string name"):
        forgetkit.register_dataset("")
    assert "not_a_method" not in METHODS and "w" not in WEIGHTINGS and "m" not in MODELS


def test_register_evaluator_dataset_and_model():
    @forgetkit.register_evaluator("forget_size", references=lambda options: 0)
    def forget_size(cell, scale: float = 1.0):
        """How many samples were forgotten (times scale)."""
        return {"n_forget_scaled": scale * len(cell.forget)}

    @forgetkit.register_dataset("four_blobs")
    def four_blobs(data_dir=None):
        """Four classes of random features."""
        x, y = tiny_data()
        return DataBundle("four_blobs", Split(x, y), Split(x[:8], y[:8]), 4, kind="tabular")

    @forgetkit.register_model("two_layer")
    def two_layer(in_shape, num_classes, width: int = 5):
        return torch.nn.Sequential(torch.nn.Linear(in_shape[0], width), torch.nn.ReLU(), torch.nn.Linear(width, num_classes))

    assert EVALUATORS.get("forget_size").references_for({}) == 0  # the runner can plan its cost
    from forgetkit.data import load_dataset

    b = load_dataset("four_blobs")
    model = build_model("two_layer", b.input_shape, b.num_classes, width=7)
    assert model[0].out_features == 7
    table = forgetkit.evaluate({"m": model}, forget=b.train.subset(range(5)), retain=b.train.subset(range(5, 40)),
                               test=b.test, metrics=["FA", "forget_size"], options={"forget_size": {"scale": 2.0}})
    assert table["m"]["n_forget_scaled"] == 10.0


def write_plugin_distribution(root, entry_points: str):
    """A real installed distribution on sys.path: a dist-info folder with entry_points.txt."""
    (root / "user_plugin_pkg.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from forgetkit.methods.base import EngineMethod
        from forgetkit.unlearn.engine import Parts
        from forgetkit.unlearn.objectives import NegativeCE
        from forgetkit.unlearn.weightings import Weighting


        @dataclass
        class PluginGA(EngineMethod):
            """Gradient ascent from an installed plug-in."""

            description = "plug-in gradient ascent"
            mixing = "forget_only"
            supports_weighting = True
            epochs: int = 1

            def parts(self, model, ctx):
                return Parts(forget=NegativeCE())


        class Ones(Weighting):
            description = "all ones"

            def __call__(self, logits, batch, ctx):
                return logits.new_ones(len(batch.y))
    '''))
    (root / "user_broken_pkg.py").write_text("raise ImportError('a dependency is missing')\n")
    info = root / "user_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: user-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


def test_entry_points_load_and_a_broken_one_is_named(tmp_path, monkeypatch):
    write_plugin_distribution(tmp_path, """
        [forgetkit.methods]
        plugin_ga = user_plugin_pkg:PluginGA
        broken = user_broken_pkg:Thing
        ga = user_plugin_pkg:PluginGA

        [forgetkit.weightings]
        ones = user_plugin_pkg:Ones
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    for mod in ("user_plugin_pkg", "user_broken_pkg"):
        monkeypatch.delitem(sys.modules, mod, raising=False)
    with pytest.warns(RuntimeWarning) as caught:
        loaded = load_plugins()
    messages = [str(w.message) for w in caught]
    assert any("plug-in 'broken' (forgetkit.methods = user_broken_pkg:Thing) was skipped: ImportError: "
               "a dependency is missing" in m for m in messages)
    assert any("plug-in 'ga'" in m and "already registered" in m for m in messages)
    assert loaded == ["forgetkit.methods:plugin_ga", "forgetkit.weightings:ones"]
    assert METHODS.get("ga").__name__ == "GA"  # the clash did not replace the built-in
    with pytest.warns(RuntimeWarning) as again:
        assert load_plugins() == []  # idempotent: a second call registers nothing new
    assert len(again) == 2  # the same two refusals, nothing else
    x, y = tiny_data()
    res = forgetkit.unlearn(build_model("mlp", (6,), 4, hidden=8, depth=1), (x, y), [0, 1], method="plugin_ga",
                            weighting="ones")
    assert res.info["steps"] == 1
