"""The import contracts of ``.importlinter`` hold, and they are live: a planted break is caught.

`make test` runs ``lint-imports`` before pytest; this runs it again inside the suite so that
``pytest`` alone also fails on a layering break or an import cycle.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(cwd: Path, env: dict | None = None, contract: str | None = None) -> subprocess.CompletedProcess:
    """``lint-imports`` over every contract, or over ``contract`` (its id in .importlinter) alone."""
    if not LINT.is_file():
        pytest.fail(f"{LINT} not found: install the test extra (`pip install -e '.[test]'`)")
    only = ["--contract", contract] if contract else []
    return subprocess.run([str(LINT), "--no-cache", "--no-logo", str(ROOT / ".importlinter"), *only],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_import_contracts_are_kept():
    res = lint(ROOT)
    assert res.returncode == 0, f"import contracts broken (see .importlinter):\n{res.stdout}{res.stderr}"


def planted_copy(tmp_path: Path, plants: dict[str, str]) -> dict:
    """A copy of the package with one line appended to some modules; the env that imports it."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "forgetkit", src / "forgetkit",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for module, line in plants.items():
        with open(src / "forgetkit" / module, "a") as f:
            f.write(f"\n{line}\n")
    return {**os.environ, "PYTHONPATH": str(src)}


@pytest.mark.parametrize("module, line, expected", [
    ("metrics/core.py", "from ..bench import store  # noqa", "forgetkit.metrics.core -> forgetkit.bench.store"),
    ("data/base.py", "from .. import unlearn  # noqa", "forgetkit.data.base -> forgetkit.unlearn"),
    ("models/__init__.py", "from ..data import base  # noqa", "forgetkit.models -> forgetkit.data.base"),
    ("registry.py", "from .data import base  # noqa", "forgetkit.registry -> forgetkit.data.base"),
])
def test_a_planted_upward_import_is_reported(tmp_path, module, line, expected):
    res = lint(tmp_path, planted_copy(tmp_path, {module: line}))
    assert res.returncode != 0 and expected in res.stdout, res.stdout + res.stderr


def test_a_planted_cycle_inside_a_subpackage_is_reported(tmp_path):
    """Layers say nothing about modules inside one subpackage; the acyclic contract does."""
    env = planted_copy(tmp_path, {"data/requests/__init__.py": "from .. import tabular  # noqa",
                                  "data/tabular.py": "from . import requests  # noqa"})
    res = lint(tmp_path, env)
    assert res.returncode != 0 and "No cycles are allowed in forgetkit.data" in res.stdout, res.stdout


@pytest.mark.parametrize("module, line, expected", [
    ("api.py", "from .bench import store  # noqa", "forgetkit.api -> forgetkit.bench.store"),
    ("methods/ga.py", "from ..bench import store  # noqa", "forgetkit.methods.ga -> forgetkit.bench.store"),
    ("unlearn/engine.py", "from ..bench import store  # noqa", "forgetkit.unlearn.engine -> forgetkit.bench.store"),
    ("inputs/splits.py", "from ..bench import store  # noqa", "forgetkit.inputs.splits -> forgetkit.bench.store"),
])
def test_a_planted_bench_import_below_bench_is_reported(tmp_path, module, line, expected):
    """The API may import bench as far as the layers go (it sits above); the forbidden contract, checked
    alone here, says it must not, and neither may anything below bench."""
    res = lint(tmp_path, planted_copy(tmp_path, {module: line}), contract="nothing-below-bench-imports-bench")
    assert res.returncode != 0 and expected in res.stdout, res.stdout + res.stderr
