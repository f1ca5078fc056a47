"""Every preset under configs/papers/ runs under ``--smoke`` on small files in the exact CIFAR
on-disk format (python pickles, as the official archives hold them), and its report shows the
paper's numbers beside ours."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml

from forgetkit.bench.papers import split_paper
from forgetkit.cli import main

PAPERS = sorted((Path(__file__).resolve().parents[2] / "configs" / "papers").glob("*.yaml"))
PER_CLASS = {"cifar10": 24, "cifar100": 6}
"""training images per class: ``--smoke`` keeps 600 training images in all"""
SMOKE_HELDOUT = {"cifar100": 0.4}
"""CIFAR-100 at 6 images a class: FaLW's per-class statistics need 2 held-out images of each class"""


def _dump(path: Path, obj) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def _images(rng, n: int) -> np.ndarray:
    return rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)


def write_cifar10(root: Path, per_class: int) -> Path:
    """``cifar-10-batches-py``: five training batches, a test batch and batches.meta."""
    folder, rng = root / "cifar-10-batches-py", np.random.default_rng(0)
    folder.mkdir(parents=True)
    labels = np.tile(np.arange(10), per_class)
    for i, part in enumerate(np.array_split(np.arange(len(labels)), 5), 1):
        _dump(folder / f"data_batch_{i}", {b"batch_label": f"training batch {i} of 5".encode(),
                                          b"labels": labels[part].tolist(), b"data": _images(rng, len(part))})
    test = np.tile(np.arange(10), 4)
    _dump(folder / "test_batch", {b"labels": test.tolist(), b"data": _images(rng, len(test))})
    _dump(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072})
    return root


def write_cifar100(root: Path, per_class: int) -> Path:
    """``cifar-100-python``: train, test and meta with fine and coarse labels."""
    folder, rng = root / "cifar-100-python", np.random.default_rng(0)
    folder.mkdir(parents=True)
    for name, n in (("train", per_class), ("test", 2)):
        fine = np.tile(np.arange(100), n)
        _dump(folder / name, {b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist(),
                              b"data": _images(rng, len(fine))})
    _dump(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                            b"coarse_label_names": [f"k{i}".encode() for i in range(20)]})
    return root


WRITERS = {"cifar10": write_cifar10, "cifar100": write_cifar100}


@pytest.mark.slow
@pytest.mark.parametrize("preset", PAPERS, ids=[p.stem for p in PAPERS])
def test_paper_preset_passes_smoke_and_reports_the_paper(preset, tmp_path, capsys, shared_model_cache):
    raw = yaml.safe_load(preset.read_text())
    data = WRITERS[raw["dataset"]](tmp_path / "data", PER_CLASS[raw["dataset"]])
    rc = main(["run", str(preset), "--smoke", "--quiet", "--out", str(tmp_path / "out"),
               "--set", f"data_dir={data}", "--set", "model.options.width=4",
               "--set", f"cache_dir={shared_model_cache}"]
              + (["--set", f"heldout_fraction={SMOKE_HELDOUT[raw['dataset']]}"] if raw["dataset"] in SMOKE_HELDOUT else []))
    out, err = capsys.readouterr()
    assert rc == 0, err[-3000:]
    report = Path(out.strip().splitlines()[-1].removeprefix("report: ")).read_text()
    paper, _ = split_paper(raw)
    section = report.split(f"## Beside the paper: {paper.table}")[1].split("\n## ")[0]
    ran = [r["name"] for r in raw["requests"]][:2]  # --smoke keeps the first two requests
    for request in ran:
        table = section.split(f"**{request}**")[1].split("\n\n")[1]
        rows = [line for line in table.splitlines() if line.startswith("| ") and "paper / ours" not in line]
        assert len(rows) == sum(r.request == request for r in paper.rows)
        for line in rows:  # every paper row found its row of ours: a number beside the paper's, never "–"
            assert "/ –" not in line, line


@pytest.mark.parametrize("preset", PAPERS, ids=[p.stem for p in PAPERS])
def test_paper_block_names_a_table_and_requests_the_preset_runs(preset):
    raw = yaml.safe_load(preset.read_text())
    paper, rest = split_paper(raw)
    assert paper is not None and "table" in paper.table.lower()
    names = {r.get("name") for r in rest["requests"]}
    assert {r.request for r in paper.rows} <= names


def test_a_bad_paper_block_is_an_error_naming_the_field():
    raw = {"paper": {"table": "T", "setting": "S", "metrics": ["FA", "RA"],
                     "rows": [{"request": "r", "method": "Retrain", "values": [1.0]}]}}
    with pytest.raises(ValueError, match="rows.0 .*1 values but metrics lists 2"):
        split_paper(raw)
    raw["paper"]["colour"] = "red"
    with pytest.raises(ValueError, match="(?s)paper: .*colour"):
        split_paper(raw)
