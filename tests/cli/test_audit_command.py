"""``forgetkit audit`` on a user's own model: ``--model package.module:function`` from a module the
test writes (on PYTHONPATH, as a user's project would be), plug-ins loaded, files read by the
command line's one loader, and Ctrl-C/SIGTERM ending it with one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

MODELS = '''
from torch import nn


def make_net(in_shape, num_classes, hidden: int = 8):
    """The user's classifier."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_shape[0], hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
'''


@pytest.fixture()
def project(tmp_path):
    """A user's project: ``mypkg/models.py``, an original and an unlearned checkpoint, data files."""
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "models.py").write_text(textwrap.dedent(MODELS))
    sys.path.insert(0, str(tmp_path))
    try:
        from mypkg.models import make_net

        torch.manual_seed(0)
        torch.save(make_net((4,), 3, hidden=6).state_dict(), tmp_path / "unlearned.pt")
        torch.save({"state_dict": make_net((4,), 3, hidden=6).state_dict()}, tmp_path / "original.pt")
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("mypkg.models", "mypkg"):
            sys.modules.pop(name, None)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(240, 4, generator=g), torch.arange(240) % 3
    torch.save({"x": x[:120], "y": y[:120], "indices": torch.arange(120)}, tmp_path / "forget.pt")
    torch.save({"x": x[120:], "y": y[120:], "indices": torch.arange(120, 240)}, tmp_path / "heldout.pt")
    return tmp_path


def _forgetkit(project, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(project), *sys.path])}
    return subprocess.run([sys.executable, "-m", "forgetkit.cli", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)


def test_audit_with_a_model_from_the_users_module(project):
    args = ["audit", "--checkpoint", "unlearned.pt", "--original", "original.pt",
            "--model", "mypkg.models:make_net", "--model-option", "hidden=6",
            "--forget", "forget.pt", "--heldout", "heldout.pt", "--min-samples", "10", "--n-boot", "30",
            "--out", "report"]
    done = _forgetkit(project, *args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("verdict: ") and "report: report/audit.md" in done.stdout
    assert sorted(p.name for p in (project / "report").iterdir()) == ["audit.html", "audit.json", "audit.md"]
    assert json.loads((project / "report" / "audit.json").read_text())["verdict"] in done.stdout

    wrong = _forgetkit(project, *[a if a != "hidden=6" else "hidden=7" for a in args[:-1]], "other")
    assert wrong.returncode == 2 and not (project / "other").exists()
    assert wrong.stderr.startswith("forgetkit: error: checkpoint 'unlearned.pt' does not fit the chosen architecture "
                                   "(it does not load into mypkg.models:make_net")
    missing = _forgetkit(project, *[a if a != "mypkg.models:make_net" else "mypkg.models:make_nett" for a in args])
    assert missing.returncode == 2
    assert "module 'mypkg.models' has no 'make_nett'; it has make_net" in missing.stderr
    assert "Traceback" not in wrong.stderr + missing.stderr


def test_audit_and_methods_load_installed_model_plugins(project):
    """A model registered by an installed package's entry point is found by ``audit`` (and listed by
    ``methods``), as ``run`` finds it."""
    info = project / "user_models-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: user-models\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[forgetkit.models]\nuser_net = mypkg.models:make_net\n")
    listed = _forgetkit(project, "methods")
    assert listed.returncode == 0 and "user_net" in listed.stdout.split("Models (")[1], listed.stderr
    done = _forgetkit(project, "audit", "--checkpoint", "unlearned.pt", "--model", "user_net", "--model-option",
                      "hidden=6", "--forget", "forget.pt", "--heldout", "heldout.pt", "--min-samples", "10",
                      "--n-boot", "30", "--out", "report")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("verdict: ")
