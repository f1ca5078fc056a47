"""Every preset in configs/ runs end to end under ``--smoke`` with no failed cell: a preset that
cannot succeed (U-LiRA cut below the shadows its leave-one-out needs, a bad option) fails here,
not in a user's first hour. Fashion-MNIST presets fall back to MNIST-5k where the Debian package
is absent (``make test`` installs it when it can)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from forgetkit.cli import main

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
CHECKED_ONLY = {c.stem for c in CONFIGS if c.stem.startswith("leaderboard-")}
"""the leaderboard presets, checked up to the first cell: config, tune section, every method's and evaluator's options, data
and model. A smoke run of a leaderboard (21 methods, tuned rows beside them) costs ~100 s of CPU;
its machinery runs end to end in test_tune.py and test_leaderboard.py, every method in
test_method_conformance.py"""


@pytest.mark.slow
@pytest.mark.parametrize("config", [c for c in CONFIGS if c.stem not in CHECKED_ONLY],
                         ids=[c.stem for c in CONFIGS if c.stem not in CHECKED_ONLY])
def test_preset_passes_smoke(config, tmp_path, capsys, shared_model_cache):
    raw = yaml.safe_load(config.read_text())
    command = "tune" if "method" in raw.get("tune", {}) else "run"  # a leaderboard's studies: test_tune
    args = [command, str(config), "--smoke", "--quiet", "--out", str(tmp_path / "out")]
    if raw.get("experiment_type") != "soft-weighting":  # the soft-weighting kind trains no cached originals
        args += ["--set", f"cache_dir={shared_model_cache}"]
    if raw.get("dataset", "fashion_mnist") == "fashion_mnist" and raw.get("experiment_type") != "soft-weighting" \
            and not FASHION.exists():
        args += ["--set", "dataset=mnist5k"]
    rc = main(args)
    out, err = capsys.readouterr()
    assert rc == 0, err[-3000:]
    report = Path(out.strip().splitlines()[-1].removeprefix("report: "))
    assert report.exists() and "smoke" in report.read_text().lower()


@pytest.mark.parametrize("name", sorted(CHECKED_ONLY))
def test_leaderboard_preset_checks_up_to_the_first_cell(name, tmp_path):
    from forgetkit.bench.config import parse_config, smoke
    from forgetkit.bench.runner import check_data, preflight
    from forgetkit.bench.tune import check_spec, split_tune, with_tuned_rows
    from forgetkit.bench.workspace import Workspace

    raw = yaml.safe_load((CONFIGS[0].parent / f"{name}.yaml").read_text())
    if "tune" in raw:  # a setting run at reference defaults only (leaderboard-fmnist-cnn-cpu) has none
        check_spec(split_tune(raw)[0], parse_config(split_tune(raw)[1]))
    raw = smoke(with_tuned_rows(raw))
    if not FASHION.exists():
        raw["dataset"] = "mnist5k"
    cfg = parse_config(raw)
    preflight(cfg)
    check_data(Workspace(cfg, tmp_path / "cache", out_dir=tmp_path / "out"))
