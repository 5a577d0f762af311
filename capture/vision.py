"""Image datasets read through torchvision from local files, as normalised NumPy arrays.

`load_vision(config)` reads MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100 or Tiny ImageNet
from `config.root` (torchvision's own on-disk layouts) and returns a `Dataset` whose
inputs are float32 (n, C, H, W): pixels scaled to [0, 1], then normalised per channel
as the papers do (`capture.dataset.NORMALIZATION`: mean 0.5, std 0.5 for MNIST,
Fashion-MNIST and CIFAR; Tiny ImageNet only scaled to [0, 1]). No augmentation.

`n_train` / `n_test` pick a stratified, seeded subset of each split; `index_train` /
`index_test` are the (sorted) rows in the source split, so a store can point back to
the exact image. The subset is chosen from the labels before any pixel is converted
(or, for Tiny ImageNet, decoded), so a small probe set of a large split stays cheap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.model_selection import train_test_split
from torchvision.datasets import CIFAR10, CIFAR100, MNIST, FashionMNIST, ImageFolder

from stores.config import VISION_DATASETS, DataConfig

from .dataset import NORMALIZATION, Dataset, normalise

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


class DatasetError(ValueError):
    """Data files are missing or unusable; the one-line message says what was expected where."""


# ------------------------------------------------------------------ CIFAR without md5
class _LocalCIFAR10(CIFAR10):
    """torchvision's CIFAR-10 reader, trusting local files that exist.

    torchvision checks the md5 sum of every batch file on each load. Those sums guard a
    download against corruption in transit; for files already on disk they only reject
    copies that are not byte-identical to the official ones (re-pickled, or the tiny
    files the tests write). So the check here is existence only, including the meta
    file (whose md5 `_load_meta` would otherwise check). The parsing stays torchvision's.
    """

    meta = {**CIFAR10.meta, "md5": None}  # check_integrity(path, None) only tests existence

    def _check_integrity(self) -> bool:
        folder = Path(self.root, self.base_folder)
        names = [name for name, _ in self.train_list + self.test_list] + [self.meta["filename"]]
        return all((folder / name).is_file() for name in names)


class _LocalCIFAR100(_LocalCIFAR10, CIFAR100):
    """CIFAR-100 (fine labels) with the same existence-only check as `_LocalCIFAR10`."""

    # The MRO would otherwise take CIFAR-10's `meta` from _LocalCIFAR10.
    meta = {**CIFAR100.meta, "md5": None}


# ------------------------------------------------------------------ what each dataset is
@dataclass(frozen=True)
class _Spec:
    """Where a dataset lives under data.root and what it holds (normalisation: `NORMALIZATION`)."""

    folder: str                 # the folder under data.root that torchvision reads
    files: tuple[str, ...]      # files expected in `subfolder` (empty: checked by its reader)
    subfolder: str              # path of the files relative to data.root
    n_classes: int
    reader: type | None         # the torchvision class; None for Tiny ImageNet


_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

SPECS: dict[str, _Spec] = {
    "mnist": _Spec("MNIST", _IDX_FILES, "MNIST/raw", 10, MNIST),
    "fashion_mnist": _Spec("FashionMNIST", _IDX_FILES, "FashionMNIST/raw", 10, FashionMNIST),
    "cifar10": _Spec("cifar-10-batches-py",
                     tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
                     "cifar-10-batches-py", 10, _LocalCIFAR10),
    "cifar100": _Spec("cifar-100-python", ("train", "test", "meta"), "cifar-100-python", 100,
                      _LocalCIFAR100),
    "tinyimagenet": _Spec("tiny-imagenet-200", (), "tiny-imagenet-200", 200, None),
}
assert tuple(SPECS) == VISION_DATASETS and set(SPECS) <= set(NORMALIZATION)


@dataclass(frozen=True)
class _Split:
    """One split's labels, and a way to get uint8 (k, C, H, W) pixels for chosen rows."""

    labels: np.ndarray
    pixels: Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------------ entry point
def load_vision(config: DataConfig) -> Dataset:
    """The image dataset `config.name` from `config.root`, optionally subsampled per split.

    Parameters
    ----------
    config : stores.config.DataConfig
        The run's data block: `name`, `root`, `download`, `n_train`, `n_test`, `split_seed`.

    Returns
    -------
    capture.dataset.Dataset
        float32 (n, C, H, W) inputs, normalised per channel (`NORMALIZATION`).

    Raises
    ------
    DatasetError
        When the files are missing or unusable, or a subset cannot be drawn.
    """
    if config.name not in SPECS:
        raise DatasetError(f"data.name: expected one of {', '.join(VISION_DATASETS)}, got {config.name!r}")
    spec = SPECS[config.name]
    root = _root(config, spec)
    if spec.reader is None:
        (train, test), n_classes = _tiny_imagenet(config, root)
    else:
        train, test = (_torchvision_split(config, spec, root, is_train) for is_train in (True, False))
        n_classes = spec.n_classes
    for split, labels in (("train", train.labels), ("test", test.labels)):
        if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
            raise DatasetError(f"{config.name}: {split} labels outside 0..{n_classes - 1} under {root}")
    rows_train = _pick(train.labels, config.n_train, "n_train", "train", config)
    rows_test = _pick(test.labels, config.n_test, "n_test", "test", config)
    return Dataset(
        x_train=normalise(train.pixels(rows_train), config.name),
        y_train=train.labels[rows_train],
        index_train=rows_train,
        x_test=normalise(test.pixels(rows_test), config.name),
        y_test=test.labels[rows_test],
        index_test=rows_test,
        n_classes=n_classes,
    )


def _root(config: DataConfig, spec: _Spec) -> str:
    """data.root, with `~` expanded; a missing root is reported like missing files."""
    if config.root is None:
        raise DatasetError(_missing_message(config.name, spec, "<data.root>", root_unset=True))
    return os.path.expanduser(config.root)


def _missing_message(name: str, spec: _Spec, root: str, *, root_unset: bool = False) -> str:
    """One line: the expected files, the folder, and how to get them."""
    where = f"{root}/{spec.subfolder}" if root_unset else os.path.join(root, spec.subfolder)
    if spec.reader is None:
        expected = "train/<wnid>/images/*.JPEG, val/images/*.JPEG and val/val_annotations.txt"
        fix = f"or unzip {TINY_IMAGENET_URL} there (data.download: true is not supported for {name})"
    else:
        expected = ", ".join(spec.files)
        fix = "or data.download: true to fetch it"
    head = f"{name}: data.root is not set; expected" if root_unset else f"{name}: expected"
    missing = [] if root_unset else [f for f in spec.files if not os.path.isfile(os.path.join(where, f))]
    note = f" (missing: {', '.join(missing)})" if missing and len(missing) < len(spec.files) else ""
    return f"{head} {expected} under {where}{note}; set data.root to the folder that holds {spec.folder}/, {fix}"


# ------------------------------------------------------------------ torchvision datasets
def _torchvision_split(config: DataConfig, spec: _Spec, root: str, train: bool) -> _Split:
    """MNIST / Fashion-MNIST / CIFAR through torchvision, kept as whole uint8 arrays."""
    try:
        dataset = spec.reader(root, train=train, download=config.download)
    except RuntimeError as err:
        # torchvision says "Dataset not found ..." (or a download failed): rewrite it
        # into what we expected where; anything with the files present is not ours.
        if not _files_missing(spec, root):
            raise
        if config.download:
            raise _download_failed(config.name, spec, root, err) from err
        raise DatasetError(_missing_message(config.name, spec, root)) from err
    except OSError as err:  # URLError and friends, raised while downloading
        if not (config.download and _files_missing(spec, root)):
            raise
        raise _download_failed(config.name, spec, root, err) from err
    data = dataset.data
    if issubclass(spec.reader, MNIST):
        pixels = data.numpy()[:, None]                  # torch uint8 (n, H, W) -> (n, 1, H, W)
        labels = dataset.targets.numpy().astype(np.int64)
    else:
        pixels = data.transpose(0, 3, 1, 2)             # CIFAR keeps HWC; back to CHW
        labels = np.asarray(dataset.targets, dtype=np.int64)
    return _Split(labels, lambda rows: pixels[rows])


def _files_missing(spec: _Spec, root: str) -> bool:
    folder = os.path.join(root, spec.subfolder)
    return not all(os.path.isfile(os.path.join(folder, f)) for f in spec.files)


def _download_failed(name: str, spec: _Spec, root: str, err: BaseException) -> DatasetError:
    return DatasetError(f"{name}: data.download: true could not fetch the files into "
                        f"{os.path.join(root, spec.subfolder)}: {_first_line(err)}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# ------------------------------------------------------------------ Tiny ImageNet
def _tiny_imagenet(config: DataConfig, root: str) -> tuple[tuple[_Split, _Split], int]:
    """Train from the class folders (ImageFolder), test from val/ and its annotations."""
    spec = SPECS["tinyimagenet"]
    base = Path(root, spec.subfolder)
    annotations = base / "val" / "val_annotations.txt"
    if not ((base / "train").is_dir() and (base / "val" / "images").is_dir() and annotations.is_file()):
        raise DatasetError(_missing_message(config.name, spec, root))
    try:
        train_set = ImageFolder(str(base / "train"))
    except FileNotFoundError as err:  # no class folders, or a class folder without images
        raise DatasetError(f"{_missing_message(config.name, spec, root)} ({_first_line(err)})") from err
    files, labels = _read_val(annotations, train_set.class_to_idx, config.name)
    train_paths = [path for path, _ in train_set.samples]
    train = _Split(np.asarray(train_set.targets, dtype=np.int64),
                   lambda rows: _decode([train_paths[i] for i in rows], train_set.loader, config.name))
    test = _Split(labels, lambda rows: _decode([files[i] for i in rows], train_set.loader, config.name))
    return (train, test), len(train_set.classes)


def _read_val(annotations: Path, class_to_idx: dict[str, int], name: str) -> tuple[list[str], np.ndarray]:
    """val_annotations.txt rows (filename, wnid, x, y, w, h), in file order: the test split."""
    files, labels = [], []
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise DatasetError(f"{name}: {annotations} line {number}: expected tab-separated "
                               f"filename, wnid, x, y, w, h, got {line!r}")
        filename, wnid = parts[0], parts[1]
        if wnid not in class_to_idx:
            raise DatasetError(f"{name}: {annotations} line {number}: wnid {wnid!r} has no folder "
                               f"under {annotations.parent.parent / 'train'}")
        path = annotations.parent / "images" / filename
        if not path.is_file():
            raise DatasetError(f"{name}: {annotations} line {number}: expected image {path}")
        files.append(str(path))
        labels.append(class_to_idx[wnid])
    if not files:
        raise DatasetError(f"{name}: {annotations} lists no images")
    return files, np.asarray(labels, dtype=np.int64)


def _decode(paths: list[str], loader: Callable, name: str) -> np.ndarray:
    """Decode images to RGB (grayscale JPEGs included) as uint8 (k, 3, H, W)."""
    images = []
    for path in paths:
        try:
            image = np.asarray(loader(path))  # torchvision's loader: PIL, converted to RGB
        except OSError as err:
            raise DatasetError(f"{name}: cannot decode {path}: {_first_line(err)}") from err
        if images and image.shape != images[0].shape:
            raise DatasetError(f"{name}: {path} is {image.shape[1]}x{image.shape[0]}, "
                               f"expected {images[0].shape[1]}x{images[0].shape[0]} like the others")
        images.append(image)
    if not images:
        return np.zeros((0, 3, 64, 64), dtype=np.uint8)
    return np.stack(images).transpose(0, 3, 1, 2)


# ------------------------------------------------------------------ subsets, scaling
def _pick(labels: np.ndarray, size: int | None, key: str, split: str, config: DataConfig) -> np.ndarray:
    """Sorted rows of a stratified, seeded subset of `size` rows (None or all: every row)."""
    n = len(labels)
    if size is None or size == n:
        return np.arange(n, dtype=np.int64)
    if size > n:
        raise DatasetError(f"{config.name}: data.{key} = {size} is larger than the {split} split "
                           f"({n} rows)")
    try:
        rows, _ = train_test_split(np.arange(n, dtype=np.int64), train_size=size, stratify=labels,
                                   random_state=config.split_seed)
    except ValueError as err:  # e.g. fewer rows asked (or left out) than there are classes
        n_classes = len(np.unique(labels))
        raise DatasetError(f"{config.name}: data.{key} = {size}: cannot draw a stratified subset of "
                           f"the {split} split ({n} rows, {n_classes} classes): {err}") from err
    return np.sort(rows)
