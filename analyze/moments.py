"""Per-class first and second moments of a slab, computed once and shared by the probes.

LDA needs the pooled within-class scatter, QDA each class's, and the standardised
logistic regression the total one (its preconditioner): all three follow from the
class counts, means and centred scatters (X_c - μ_c)ᵀ(X_c - μ_c). Each scatter is one
float32 product of the centred rows with themselves (NumPy runs ``Aᵀ @ A`` as a
symmetric rank-k update, half the multiplications); centring first keeps float32 from
cancelling the mean away. Inside `shared_moments()` the probes fitted on the same
array with the same labels reuse one computation; outside it nothing is kept.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np

__all__ = ["ClassMoments", "class_moments", "shared_moments"]


@dataclass(frozen=True)
class ClassMoments:
    """Counts, means and centred scatters of each class of a training set.

    Attributes
    ----------
    classes : ndarray of shape (n_classes,)
        The sorted labels.
    counts : ndarray of int, shape (n_classes,)
        Rows per class.
    means : ndarray of float64, shape (n_classes, n_features)
        μ_c.
    scatters : list of float32 ndarray, each (n_features, n_features)
        (X_c - μ_c)ᵀ(X_c - μ_c), symmetric.
    """

    classes: np.ndarray
    counts: np.ndarray
    means: np.ndarray
    scatters: list

    @property
    def n(self) -> int:
        """Training rows."""
        return int(self.counts.sum())

    @property
    def mean(self) -> np.ndarray:
        """(n_features,) the overall mean."""
        return self.counts @ self.means / self.n

    def within(self) -> np.ndarray:
        """(n_features, n_features) float64: the pooled within-class scatter Σ_c S_c."""
        out = np.zeros(self.scatters[0].shape)
        for S in self.scatters:
            out += S
        return out

    def total(self) -> np.ndarray:
        """(n_features, n_features) float64: (X - m)ᵀ(X - m), from the within-class scatter
        and the between-class part Σ_c n_c (μ_c - m)(μ_c - m)ᵀ."""
        D = (self.means - self.mean) * np.sqrt(self.counts)[:, None]
        return self.within() + D.T @ D


def _compute(X: np.ndarray, y: np.ndarray) -> ClassMoments:
    classes, inverse = np.unique(y, return_inverse=True)
    means, scatters = [], []
    for c in range(len(classes)):
        Xc = X[inverse == c]
        mu = Xc.mean(axis=0, dtype=np.float64)
        Xc -= mu.astype(X.dtype)
        means.append(mu)
        scatters.append(Xc.T @ Xc)
    counts = np.bincount(inverse, minlength=len(classes))
    return ClassMoments(classes, counts, np.stack(means), scatters)


_CACHE: list | None = None  # [X, y, moments] inside shared_moments(), else None


def class_moments(X: np.ndarray, y: np.ndarray) -> ClassMoments:
    """The moments of (X, y) (float32 X): computed, or, inside `shared_moments()`, reused
    from the last call on the very same X (the same object) with equal labels.

    Parameters
    ----------
    X : ndarray of float32, shape (n_samples, n_features)
        Not modified.
    y : ndarray of shape (n_samples,)
        Labels.

    Returns
    -------
    ClassMoments
    """
    global _CACHE
    if _CACHE is not None and _CACHE[0] is X and np.array_equal(_CACHE[1], y):
        return _CACHE[2]
    moments = _compute(X, y)
    if _CACHE is not None:
        _CACHE = [X, np.array(y, copy=True), moments]
    return moments


@contextlib.contextmanager
def shared_moments() -> Iterator[None]:
    """Within the block, probes fitted on the same array and labels share one
    `class_moments` (the array must not be modified in between); on exit it is dropped."""
    global _CACHE
    outer = _CACHE
    _CACHE = [None, None, None] if outer is None else outer
    try:
        yield
    finally:
        _CACHE = outer
