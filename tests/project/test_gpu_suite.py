"""benchmarks/gpu_suite.py runs end to end in its CPU mode (tiny sizes) and writes its two files."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_suite.py"


def _suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_suite"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_cpu_mode_writes_json_and_markdown(tmp_path):
    assert _suite().main(["--cpu", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert result["machine"]["device"].startswith("cpu")
    training = result["training"]
    assert training["forgetkit_images_per_s"] > 0 and training["bare_images_per_s"] > 0
    assert training["ratio"] == pytest.approx(training["forgetkit_images_per_s"] / training["bare_images_per_s"],
                                              rel=0.01)
    assert result["evaluation"]["images_per_s"] > 0
    sweep = result["falw_sweep"]
    assert len(sweep["seconds_per_gamma"]) == 2 and sweep["seconds"] > 0
    assert result["shadows"]["trained_per_min"] >= result["shadows"]["trained_and_unlearned_per_min"] > 0
    table = (tmp_path / "gpu_suite.md").read_text()
    assert table.count("\n| ") == 5  # the header and the four parts


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the full suite")
def test_without_cuda_the_full_suite_refuses_and_names_the_cpu_mode(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        _suite().main(["--out", str(tmp_path)])
    assert exit_.value.code == 2 and "--cpu" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
