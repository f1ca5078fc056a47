"""Every preset in configs/ runs end to end under ``--smoke`` with no failed cell: a preset that
cannot succeed (U-LiRA cut below the shadows its leave-one-out needs, a bad option) fails here,
not in a user's first hour. Fashion-MNIST presets fall back to MNIST-5k where the Debian package
is absent (``make test`` installs it when it can)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from forgetkit.cli import main

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_preset_passes_smoke(config, tmp_path, capsys):
    raw = yaml.safe_load(config.read_text())
    command = "tune" if "method" in raw.get("tune", {}) else "run"  # a leaderboard's studies: test_tune
    args = [command, str(config), "--smoke", "--quiet", "--out", str(tmp_path / "out")]
    if raw.get("dataset", "fashion_mnist") == "fashion_mnist" and raw.get("experiment_type") != "soft-weighting" \
            and not FASHION.exists():
        args += ["--set", "dataset=mnist5k"]
    rc = main(args)
    out, err = capsys.readouterr()
    assert rc == 0, err[-3000:]
    report = Path(out.strip().splitlines()[-1].removeprefix("report: "))
    assert report.exists() and "smoke" in report.read_text().lower()
