"""A user's project, built in tmp_path: their own model class, a Dataset with transforms, their own
training loop and a plug-in method from outside the package. forgetkit unlearns, judges and
conformance-checks it, from Python and from ``forgetkit evaluate``."""
import argparse
import sys
import textwrap

import numpy as np
import pytest
import torch

import forgetkit
from forgetkit.data.base import DATASETS
from forgetkit.cli.evaluate import add_parser
from forgetkit.methods.base import METHODS
from forgetkit.metrics.evaluators import EVALUATORS
from forgetkit.models import MODELS
from forgetkit.testing import check_method
from forgetkit.unlearn.weightings import WEIGHTINGS

PROJECT = {
    "user_models.py": '''
        import torch
        from torch import nn

        import forgetkit


        class DigitNet(nn.Module):
            """The user's own classifier: a hidden layer and a head."""

            def __init__(self, hidden=24, classes=10):
                super().__init__()
                self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU())
                self.head = nn.Linear(hidden, classes)

            def forward(self, x):
                return self.head(self.body(x))


        @forgetkit.register_model("digit_net")
        def digit_net(in_shape, num_classes, hidden: int = 24):
            return DigitNet(hidden, num_classes)
    ''',
    "user_data.py": '''
        import torch
        from torch.utils.data import Dataset


        class Scale:
            """uint8 0..255 -> float in [0, 1], as torchvision's ToTensor does."""

            def __call__(self, img):
                return img.float() / 255


        class Jitter:
            """A seeded brightness jitter: the kind of transform a DataLoader pipeline applies."""

            def __init__(self, amount=0.05, seed=0):
                self.amount, self.gen = amount, torch.Generator().manual_seed(seed)

            def __call__(self, img):
                return (img + self.amount * (torch.rand(1, generator=self.gen) - 0.5)).clamp(0, 1)


        class DigitsDataset(Dataset):
            def __init__(self, images, labels, transforms=()):
                self.images, self.labels, self.transforms = images, labels, list(transforms)

            def __len__(self):
                return len(self.labels)

            def __getitem__(self, i):
                img = self.images[i]
                for t in self.transforms:
                    img = t(img)
                return img, int(self.labels[i])
    ''',
    "user_method.py": '''
        from dataclasses import dataclass

        import torch.nn.functional as F

        import forgetkit
        from forgetkit.methods.base import EngineMethod
        from forgetkit.unlearn.engine import Parts
        from forgetkit.unlearn.objectives import ForgetObjective, RetainCE


        class RunnerUpCE(ForgetObjective):
            """Cross-entropy toward each forget sample's runner-up class under the current model."""

            def __call__(self, logits, batch, ctx):
                return F.cross_entropy(logits.float(), logits.detach().topk(2, 1).indices[:, 1], reduction="none")


        @forgetkit.register_method("runner_up")
        @dataclass
        class RunnerUp(EngineMethod):
            """Relabel forget samples to their runner-up class; keep fitting the retain set."""

            description = "forget samples pushed to their runner-up class, retain set fitted"
            needs = frozenset({"forget", "retain"})
            supports_weighting = True
            epochs: int = 3
            """epochs"""
            lr: float = 0.05
            """SGD learning rate"""

            def parts(self, model, ctx):
                return Parts(forget=RunnerUpCE(), retain=RetainCE())
    ''',
}


@pytest.fixture
def project(tmp_path, monkeypatch):
    registries = (METHODS, WEIGHTINGS, EVALUATORS, DATASETS, MODELS)
    saved = [dict(r._items) for r in registries]
    for name, text in PROJECT.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    mods = {}
    for name in PROJECT:
        monkeypatch.delitem(sys.modules, name[:-3], raising=False)
        mods[name[:-3]] = __import__(name[:-3])
    yield tmp_path, mods
    for r, items in zip(registries, saved):
        r._items.clear()
        r._items.update(items)


def user_training(model, x, y, epochs=15, seed=0):
    """The user's own training loop (not forgetkit's)."""
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    xf = x.float() / 255
    for _ in range(epochs):
        for b in torch.randperm(len(y)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xf[b]), y[b]).backward()
            opt.step()
    return model.eval()


@pytest.fixture
def trained(project):
    from sklearn.datasets import load_digits

    _, mods = project
    d = load_digits()
    x = torch.tensor(np.round(d.images * 255 / 16), dtype=torch.uint8).unsqueeze(1)
    y = torch.tensor(d.target)
    train_x, train_y, test_x, test_y = x[:1400], y[:1400], x[1400:], y[1400:]
    forget = np.flatnonzero(train_y.numpy() == 3)
    retain = np.setdiff1d(np.arange(1400), forget)
    torch.manual_seed(0)
    original = user_training(mods["user_models"].DigitNet(), train_x, train_y)
    torch.manual_seed(1)
    retrained = user_training(mods["user_models"].DigitNet(), train_x[retain], train_y[retain])
    return (train_x, train_y, test_x, test_y), forget, original, retrained


def test_unlearn_evaluate_and_check_a_users_project(project, trained):
    _, mods = project
    (train_x, train_y, test_x, test_y), forget, original, retrained = trained
    data = mods["user_data"]
    transforms = [data.Scale(), data.Jitter()]
    train_ds = data.DigitsDataset(train_x, train_y, transforms)
    test_ds = data.DigitsDataset(test_x, test_y, [data.Scale()])

    res = forgetkit.unlearn(original, train_ds, forget, method="runner_up", test=test_ds, reference=retrained,
                            forget_classes=[3])
    assert res.original_metrics["FA"] > 90 and res.metrics["FA"] < 20  # class 3 forgotten
    assert res.metrics["RA"] > 85
    assert res.metrics["AvgGap"] < res.original_metrics["AvgGap"]

    retain = np.setdiff1d(np.arange(len(train_y)), forget)
    table = forgetkit.evaluate({"runner_up": res.model, "original": original}, reference=retrained,
                               forget=(train_x[forget], train_y[forget]), retain=(train_x[retain], train_y[retain]),
                               test=test_ds, metrics=["FA", "RA", "TA", "AvgGap", "class_acc"], forget_classes=[3])
    assert table["runner_up"]["Acc_f"] < 20 < 60 < table["original"]["Acc_f"]
    assert table["runner_up"]["AvgGap"] < table["original"]["AvgGap"]
    assert "runner_up" in str(table) and table.to_pandas().shape[0] == 3

    assert check_method(mods["user_method"].RunnerUp, options={"epochs": 1}) == \
        ["contract", "needs_enforced", "efficacy"]


def test_check_method_fails_a_method_that_mutates_its_input(project):
    from dataclasses import dataclass

    from forgetkit.methods.base import Method

    @dataclass
    class Sloppy(Method):
        """Zeroes the model it is given instead of a copy."""

        def unlearn(self, model, ctx, weighting=None, progress=None):
            with torch.no_grad():
                for p in model.parameters():
                    p.zero_()
            return model, {}

    with pytest.raises(AssertionError, match="must return a copy"):
        check_method(Sloppy)
    from forgetkit.testing import accuracy, conformance_problem

    problem = conformance_problem()  # the shared problem survived the sloppy method
    assert accuracy(problem.model, problem.retain) > 0.85


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="forgetkit")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_forgetkit_evaluate_on_checkpoints(project, trained, capsys):
    root, mods = project
    (train_x, train_y, test_x, test_y), forget, original, retrained = trained
    torch.save(original.state_dict(), root / "original.pt")
    torch.save({"state_dict": retrained.state_dict()}, root / "retrained.pt")
    np.savez(root / "train.npz", x=train_x.numpy(), y=train_y.numpy())
    torch.save({"x": test_x, "y": test_y}, root / "test.pt")
    np.save(root / "forget.npy", forget)
    common = ["evaluate", f"orig={root / 'original.pt'}", "--model", "digit_net", "--model-option", "hidden=24",
              "--train", str(root / "train.npz"), "--forget-indices", str(root / "forget.npy"),
              "--test", str(root / "test.pt")]
    assert run_cli([*common, "--reference", str(root / "retrained.pt"), "--csv", str(root / "table.csv")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:2] == ["model", "FA"] and "orig" in out and "reference" in out
    import pandas as pd

    df = pd.read_csv(root / "table.csv", index_col=0)
    assert df.loc["orig", "FA"] > 90 and df.loc["reference", "FA"] < 20 and "AvgGap" in df.columns

    with pytest.raises(ValueError, match=r"checkpoint 'orig' .* does not fit the chosen architecture"):
        run_cli([*common[:5], "hidden=16", *common[6:], "--csv", str(root / "bad.csv")])
    assert not (root / "bad.csv").exists()  # nothing written
    with pytest.raises(FileNotFoundError, match="test file .*missing.pt' does not exist"):
        run_cli([*common[:-1], str(root / "missing.pt")])
    with pytest.raises(ValueError, match="forget indices out of range"):
        np.save(root / "bad_idx.npy", np.array([0, 5000]))
        run_cli([*common[:9], str(root / "bad_idx.npy"), *common[10:]])
