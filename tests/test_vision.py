"""Vision datasets: tiny files in torchvision's on-disk formats, read back by load_vision.

Nothing is downloaded. Each fixture writes a few images in the official layout (IDX for
MNIST, Python 2 pickles for CIFAR, JPEG folders for Tiny ImageNet) into tmp_path.
"""

from __future__ import annotations

import dataclasses
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from capture.vision import DatasetError, load_vision
from stores.config import DataConfig

from .tolerance import gamma

# The papers' constants (PUBLISHED.md: mean 0.5 / std 0.5 per channel for MNIST,
# Fashion-MNIST and CIFAR; Tiny ImageNet only scaled to [0, 1]), written out here so a
# typo in capture/dataset.py shows up.
STATS = {
    "mnist": ((0.5,), (0.5,)),
    "fashion_mnist": ((0.5,), (0.5,)),
    "cifar10": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "cifar100": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "tinyimagenet": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


# How far pixels_of(normalise(k)) can be from the byte k. normalise: fl(k/255) (within
# u32·k/255), then − mean (exact for 0; for 0.5 within u32·|x − 0.5| ≤ u32/2), then / std
# (a power of two: exact); pixels_of undoes the last two exactly in float64 and rounds
# once more in ·255 (u64). So |error| ≤ 255·(u32 + u32/2 + u64) < 255·γ_2(float32) = 3.0e-5.
PIXEL_ATOL = 255 * gamma(np.float32, 2)


def pixels_of(x: np.ndarray, name: str) -> np.ndarray:
    """Undo the normalisation: back to 0..255 pixel values (float), within PIXEL_ATOL."""
    mean, std = (np.asarray(v, dtype=np.float64).reshape(1, -1, 1, 1) for v in STATS[name])
    return (x.astype(np.float64) * std + mean) * 255.0


def config(name: str, root: Path | None, **kw) -> DataConfig:
    return DataConfig(name=name, root=None if root is None else str(root), **kw)


# ------------------------------------------------------------------ MNIST / Fashion-MNIST
def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: big-endian magic (0x0803 images, 0x0801 labels), dims as >i4, then uint8 data."""
    magic = {3: 0x00000803, 1: 0x00000801}[array.ndim]
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str, n_train: int = 40, n_test: int = 20) -> dict:
    """Random 28x28 images, labels cycling through all ten classes (shuffled)."""
    rng = np.random.default_rng(1)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        out[prefix] = (images, labels)
    return out


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_formats_roundtrip(tmp_path, name, folder):
    written = write_mnist(tmp_path, folder)
    data = load_vision(config(name, tmp_path))
    assert data.n_classes == 10
    for x, y, index, (images, labels) in (
        (data.x_train, data.y_train, data.index_train, written["train"]),
        (data.x_test, data.y_test, data.index_test, written["t10k"]),
    ):
        assert x.shape == (len(images), 1, 28, 28) and x.dtype == np.float32
        assert x.flags.c_contiguous
        np.testing.assert_allclose(pixels_of(x, name)[:, 0], images, rtol=0, atol=PIXEL_ATOL)
        np.testing.assert_array_equal(y, labels)
        assert y.dtype == np.int64
        np.testing.assert_array_equal(index, np.arange(len(images)))


def test_normalised_values_are_the_papers_constants(tmp_path):
    """(k/255 - 0.5) / 0.5 for MNIST: a black pixel is -1 and a white one +1, exactly
    (every step is exact in float32 for these constants)."""
    written = write_mnist(tmp_path, "MNIST")
    data = load_vision(config("mnist", tmp_path))
    pixels = written["train"][0]
    expected = (pixels.astype(np.float32) / np.float32(255.0) - np.float32(0.5)) / np.float32(0.5)
    np.testing.assert_array_equal(data.x_train[:, 0], expected)
    assert data.x_train[:, 0][pixels == 0].tolist() == [-1.0] * int((pixels == 0).sum())
    assert data.x_train.min() >= -1.0 and data.x_train.max() <= 1.0


# ------------------------------------------------------------------ CIFAR
class Py2Str(bytes):
    """A Python 2 `str`, as the official CIFAR pickles hold for keys and label names."""


class Py2Pickler(pickle._Pickler):
    """Writes `Py2Str` with the protocol-2 string opcodes, as Python 2's cPickle did.

    Loaded with encoding="bytes" (the CIFAR page's recipe) these are bytes (b"data");
    with encoding="latin1" (what torchvision uses) they are str ("data").
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        n = len(obj)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + bytes(obj))
        self.memoize(obj)

    dispatch[Py2Str] = save_py2_str


def dump_py2(path: Path, mapping: dict) -> None:
    """A dict with Python 2 str keys (and str values where given as str), pickled protocol 2."""
    def convert(v):
        if isinstance(v, str):
            return Py2Str(v.encode())
        if isinstance(v, list):
            return [convert(item) for item in v]
        return v

    with open(path, "wb") as f:
        Py2Pickler(f, protocol=2).dump({Py2Str(k.encode()): convert(v) for k, v in mapping.items()})


def cifar_rows(rng, n: int, n_classes: int) -> tuple[np.ndarray, list[int]]:
    """Random uint8 rows of 3072 and Python-int labels (as in the official pickles), every class present."""
    labels = [int(v) for v in rng.permutation(np.arange(n) % n_classes)]
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), labels


def write_cifar10(root: Path, per_batch: int = 4, n_test: int = 10) -> dict:
    """Five training batches of `per_batch` rows each (all ten classes overall) and a test batch."""
    rng = np.random.default_rng(2)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    data, labels = cifar_rows(rng, 5 * per_batch, 10)
    for i in range(5):
        rows = slice(i * per_batch, (i + 1) * per_batch)
        dump_py2(folder / f"data_batch_{i + 1}", {"batch_label": f"training batch {i + 1} of 5",
                                                   "labels": labels[rows], "data": data[rows],
                                                   "filenames": ["x.png"] * per_batch})
    test_data, test_labels = cifar_rows(rng, n_test, 10)
    dump_py2(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": test_labels,
                                     "data": test_data, "filenames": ["x.png"] * n_test})
    dump_py2(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)],
                                       "num_cases_per_batch": per_batch, "num_vis": 3072})
    return {"train": (data, labels), "test": (test_data, test_labels)}


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 100) -> dict:
    rng = np.random.default_rng(3)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        data, fine = cifar_rows(rng, n, 100)
        dump_py2(folder / split, {"filenames": ["x.png"] * n, "batch_label": split,
                                  "fine_labels": fine, "coarse_labels": [f // 5 for f in fine],
                                  "data": data})
        out[split] = (data, fine)
    dump_py2(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                               "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    return out


def test_cifar_pickles_look_official(tmp_path):
    """The writer's files load as the CIFAR page describes: bytes keys under encoding="bytes"."""
    write_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    assert {b"data", b"labels", b"batch_label", b"filenames"} <= set(batch)
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (4, 3072)


@pytest.mark.parametrize("name, writer, n_classes",
                         [("cifar10", write_cifar10, 10), ("cifar100", write_cifar100, 100)])
def test_cifar_roundtrip(tmp_path, name, writer, n_classes):
    written = writer(tmp_path)
    data = load_vision(config(name, tmp_path))
    assert data.n_classes == n_classes
    for x, y, index, (rows, labels) in (
        (data.x_train, data.y_train, data.index_train, written["train"]),
        (data.x_test, data.y_test, data.index_test, written["test"]),
    ):
        assert x.shape == (len(rows), 3, 32, 32) and x.dtype == np.float32
        assert x.flags.c_contiguous
        # Each row of 3072 is channel-major: 1024 red, 1024 green, 1024 blue, row by row.
        np.testing.assert_allclose(pixels_of(x, name), rows.reshape(-1, 3, 32, 32), rtol=0,
                                   atol=PIXEL_ATOL)
        np.testing.assert_array_equal(y, labels)
        np.testing.assert_array_equal(index, np.arange(len(rows)))


def test_cifar_pixel_layout_spot_check(tmp_path):
    """Byte 1024 * c + 32 * h + w of a row is channel c, row h, column w."""
    written = write_cifar10(tmp_path)
    x = pixels_of(load_vision(config("cifar10", tmp_path)).x_train, "cifar10")
    rows = written["train"][0]
    for c, h, w in [(0, 0, 1), (1, 5, 7), (2, 31, 30)]:
        assert abs(x[3, c, h, w] - rows[3, 1024 * c + 32 * h + w]) <= PIXEL_ATOL


# ------------------------------------------------------------------ Tiny ImageNet
WNIDS = ["n03", "n01", "n02"]  # written out of order: class index = sorted position


def write_tiny(root: Path, per_class: int = 4) -> dict:
    """train/<wnid>/images/*.JPEG (one grayscale), val/images + val_annotations.txt."""
    rng = np.random.default_rng(4)
    base = root / "tiny-imagenet-200"
    train_paths = {}
    for wnid in WNIDS:
        images = base / "train" / wnid / "images"
        images.mkdir(parents=True)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("")  # as in the zip; not an image
        paths = []
        for i in range(per_class):
            path = images / f"{wnid}_{i}.JPEG"
            pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
            image = Image.fromarray(pixels)
            (image.convert("L") if (wnid, i) == ("n02", 1) else image).save(path, format="JPEG")
            paths.append(path)
        train_paths[wnid] = paths
    (base / "val" / "images").mkdir(parents=True)
    val_wnids = ["n02", "n03", "n01", "n02", "n01", "n03"]
    lines = []
    for i, wnid in enumerate(val_wnids):
        path = base / "val" / "images" / f"val_{i}.JPEG"
        Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(path, format="JPEG")
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return {"train": train_paths, "val_wnids": val_wnids,
            "val_paths": [base / "val" / "images" / f"val_{i}.JPEG" for i in range(len(val_wnids))]}


def decoded(path: Path) -> np.ndarray:
    """What PIL decodes, as (3, H, W): the reference for the loader's pixels."""
    return np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)


def test_tinyimagenet_roundtrip(tmp_path):
    written = write_tiny(tmp_path)
    data = load_vision(config("tinyimagenet", tmp_path))
    order = sorted(WNIDS)
    assert data.n_classes == 3
    assert data.x_train.shape == (12, 3, 64, 64) and data.x_test.shape == (6, 3, 64, 64)
    # ImageFolder order: classes sorted, files sorted within each class.
    train_paths = [p for wnid in order for p in sorted(written["train"][wnid])]
    np.testing.assert_array_equal(data.y_train, np.repeat(np.arange(3), 4))
    # the loader decodes with PIL too (torchvision's loader), so only the scaling differs
    np.testing.assert_allclose(pixels_of(data.x_train, "tinyimagenet"),
                               np.stack([decoded(p) for p in train_paths]), rtol=0, atol=PIXEL_ATOL)
    # Test split: val_annotations.txt rows in file order, labelled by the sorted wnid position.
    np.testing.assert_array_equal(data.y_test, [order.index(w) for w in written["val_wnids"]])
    np.testing.assert_array_equal(data.index_test, np.arange(6))
    np.testing.assert_allclose(pixels_of(data.x_test, "tinyimagenet"),
                               np.stack([decoded(p) for p in written["val_paths"]]), rtol=0,
                               atol=PIXEL_ATOL)


def test_tinyimagenet_grayscale_becomes_rgb(tmp_path):
    written = write_tiny(tmp_path)
    data = load_vision(config("tinyimagenet", tmp_path))
    row = 4 + 1  # n02 is the second class; its image 1 was saved grayscale
    gray = pixels_of(data.x_train[row:row + 1], "tinyimagenet")[0]
    assert written["train"]["n02"][1].name == "n02_1.JPEG"
    # exact: PIL's L -> RGB copies the byte into all three channels, and every channel
    # then goes through the same arithmetic (mean 0, std 1) on the same value
    np.testing.assert_array_equal(gray[0], gray[1])
    np.testing.assert_array_equal(gray[1], gray[2])


def test_tinyimagenet_subset_decodes_only_picked_rows(tmp_path):
    write_tiny(tmp_path)
    full = load_vision(config("tinyimagenet", tmp_path))
    sub = load_vision(config("tinyimagenet", tmp_path, n_train=6, n_test=3, split_seed=5))
    assert np.bincount(sub.y_train, minlength=3).tolist() == [2, 2, 2]
    assert np.bincount(sub.y_test, minlength=3).tolist() == [1, 1, 1]
    np.testing.assert_array_equal(sub.x_train, full.x_train[sub.index_train])
    np.testing.assert_array_equal(sub.y_test, full.y_test[sub.index_test])


def test_tinyimagenet_unknown_val_wnid(tmp_path):
    write_tiny(tmp_path)
    annotations = tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    annotations.write_text(annotations.read_text().replace("\tn01\t", "\tn99\t", 1))
    with pytest.raises(DatasetError, match="'n99' has no folder"):
        load_vision(config("tinyimagenet", tmp_path))


# ------------------------------------------------------------------ stratified subsets
@pytest.fixture
def mnist_root(tmp_path) -> Path:
    write_mnist(tmp_path, "MNIST", n_train=40, n_test=20)  # 4 and 2 per class
    return tmp_path


def test_subset_sizes_and_strata(mnist_root):
    full = load_vision(config("mnist", mnist_root))
    sub = load_vision(config("mnist", mnist_root, n_train=20, n_test=10))
    assert len(sub.y_train) == 20 and len(sub.y_test) == 10
    assert np.bincount(sub.y_train, minlength=10).tolist() == [2] * 10  # half of each class
    assert np.bincount(sub.y_test, minlength=10).tolist() == [1] * 10
    for split in ("train", "test"):
        index = getattr(sub, f"index_{split}")
        assert np.all(np.diff(index) > 0)  # sorted, distinct
        np.testing.assert_array_equal(getattr(sub, f"x_{split}"), getattr(full, f"x_{split}")[index])
        np.testing.assert_array_equal(getattr(sub, f"y_{split}"), getattr(full, f"y_{split}")[index])


def test_subset_is_seeded(mnist_root):
    base = config("mnist", mnist_root, n_train=20, n_test=10, split_seed=0)
    a, b = load_vision(base), load_vision(base)
    c = load_vision(dataclasses.replace(base, split_seed=1))
    np.testing.assert_array_equal(a.index_train, b.index_train)
    np.testing.assert_array_equal(a.index_test, b.index_test)
    assert not np.array_equal(a.index_train, c.index_train)


def test_subset_of_full_size_takes_everything(mnist_root):
    data = load_vision(config("mnist", mnist_root, n_train=40, n_test=20))
    np.testing.assert_array_equal(data.index_train, np.arange(40))
    np.testing.assert_array_equal(data.index_test, np.arange(20))


@pytest.mark.parametrize("key, value, size", [("n_train", 41, 40), ("n_test", 500, 20)])
def test_subset_too_large(mnist_root, key, value, size):
    with pytest.raises(DatasetError) as err:
        load_vision(config("mnist", mnist_root, **{key: value}))
    message = str(err.value)
    assert f"data.{key} = {value}" in message and f"({size} rows)" in message


def test_subset_smaller_than_class_count(mnist_root):
    with pytest.raises(DatasetError, match=r"data.n_train = 5: cannot draw a stratified subset .*10 classes"):
        load_vision(config("mnist", mnist_root, n_train=5))


# ------------------------------------------------------------------ missing data
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100", "tinyimagenet"])
def test_root_not_set(name):
    with pytest.raises(DatasetError) as err:
        load_vision(config(name, None))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{name}: data.root is not set")
    assert "download: true" in message


@pytest.mark.parametrize("name, folder, files", [
    ("mnist", "MNIST/raw", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    ("fashion_mnist", "FashionMNIST/raw", ["train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"]),
    ("cifar10", "cifar-10-batches-py", ["data_batch_1", "data_batch_5", "test_batch", "batches.meta"]),
    ("cifar100", "cifar-100-python", ["train", "test", "meta"]),
])
def test_missing_files(tmp_path, name, folder, files):
    with pytest.raises(DatasetError) as err:
        load_vision(config(name, tmp_path))
    message = str(err.value)
    assert "\n" not in message
    assert all(f in message for f in files)
    assert f"under {tmp_path / folder}" in message
    assert "data.download: true" in message


def test_missing_one_cifar_file_is_named(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DatasetError, match=r"\(missing: test_batch\)"):
        load_vision(config("cifar10", tmp_path))


def test_missing_tinyimagenet(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_vision(config("tinyimagenet", tmp_path, download=True))
    message = str(err.value)
    assert "\n" not in message
    assert "val/val_annotations.txt" in message and f"under {tmp_path / 'tiny-imagenet-200'}" in message
    assert "tiny-imagenet-200.zip" in message
    assert "download: true is not supported" in message


def test_unknown_name(tmp_path):
    with pytest.raises(DatasetError, match="expected one of mnist"):
        load_vision(config("digits", tmp_path))
