"""k-nearest neighbours under cosine distance, exact, by blocked float32 products.

`KNeighborsCosine` predicts what scikit-learn's
``KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")`` predicts:
the distance is computed as scikit-learn computes it (rows divided by their float32
norms, one float32 product, ``1 - s`` clipped to [0, 2], a zero row at distance 1 from
everything), the k nearest are kept, and the vote goes to the most frequent label, the
smallest one among tied counts (scikit-learn's `mode`). Where it differs is how:
scikit-learn materialises a chunk of the full distance matrix and partitions every row
of it; here each (query block, training block) product keeps only its k best per row
and a running top-k merges them, and `predict_with_fit_rows` takes the neighbours of the
training rows themselves from the upper triangle of blocks of the symmetric training
product, each product serving both its row block and its column block (about half the
multiplications for that part). Distance ties at the k-th neighbour go to the lower
training index (scikit-learn leaves them to `argpartition`'s order, which is
unspecified); the products' last bits can differ from scikit-learn's (another blocking),
so a pair of neighbours within a float32 ulp of each other may swap.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["BLOCK", "GROUP", "KNeighborsCosine"]

BLOCK = 4096  # rows per block of each product: a 4096 x 4096 float32 tile is 64 MiB
GROUP = 64  # entries per group: the groups' minima bound a row's k-th smallest value


def _unit(X: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """X's rows divided by their norms (zero rows stay zero), as sklearn's `normalize`."""
    safe = norms.copy()
    safe[safe == 0] = 1.0
    return X / safe[:, None]


def _padded(n: int) -> int:
    """n rounded up to whole GROUPs."""
    return -(-n // GROUP) * GROUP


def _tile_buffer() -> np.ndarray:
    """Room for one padded tile: `_negated_similarity` lays each product out in it."""
    return np.empty(_padded(BLOCK) ** 2, dtype=np.float32)


def _negated_similarity(A: np.ndarray, B: np.ndarray, buffer: np.ndarray) -> np.ndarray:
    """-A Bᵀ for unit rows (ordered as the cosine distance 1 - A Bᵀ is), laid out in
    `buffer` with both sides padded by +inf to whole GROUPs (no limit passes +inf)."""
    a, b = len(A), len(B)
    N = buffer[: _padded(a) * _padded(b)].reshape(_padded(a), _padded(b))
    S = np.matmul(A, B.T, out=N[:a, :b])
    np.negative(S, out=S)
    N[:a, b:] = np.inf
    N[a:] = np.inf
    return N


def _groups(N: np.ndarray, n: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(view, minima) of the first n rows of N along `axis` (0: its rows; 1: its columns),
    each row's entries split into groups by position modulo the group count g (entry j is
    member j // g of group j % g): view[row, member, group] as (n, GROUP, g), and the
    minima (n, g) of every group, by one elementwise minimum per member over N's own
    layout (a reduction across short groups runs at a fraction of that rate)."""
    if axis == 0:
        members = N[:n].reshape(n, GROUP, -1).transpose(1, 0, 2)  # (GROUP, n, g)
    else:
        members = N[:, :n].reshape(GROUP, -1, n)  # (GROUP, g, n)
    mins = members[0].copy()
    for member in members[1:]:
        np.minimum(mins, member, out=mins)
    if axis == 0:
        return members.transpose(1, 0, 2), mins
    return members.transpose(2, 0, 1), mins.T


def _merge(best: tuple[np.ndarray, np.ndarray], first: int, n: int, N: np.ndarray, base: int,
           k: int, axis: int = 0) -> None:
    """Fold a padded tile of negated similarities into the running top-k of the n rows it
    holds along `axis` (0: its rows; 1: its columns, for the transposed half of a
    symmetric product), those rows numbered from `first`, the other side from training
    index `base`; each top-k is kept sorted by (value, index).

    A row's k-th smallest entry is at most the k-th smallest of its group minima (k
    distinct groups each hold an entry at or below it), so only the groups whose minimum
    is at or below that bound are searched, and of them only the entries at or below it
    and below the row's current k-th: together they keep every entry that can enter the
    top-k. Tiles reach each row in increasing index order, so a value equal to a row's
    current k-th never displaces it."""
    kept_v, kept_i = best[0][first:first + n], best[1][first:first + n]
    view, mins = _groups(N, n, axis)
    bound = (np.partition(mins, k - 1, axis=1)[:, k - 1] if mins.shape[1] >= k
             else np.full(n, np.inf, dtype=np.float32))
    limit = np.minimum(bound, np.nextafter(kept_v[:, -1], -np.inf))
    r, group = np.nonzero(mins <= limit[:, None])
    values = view[r, :, group]  # (candidate groups, GROUP)
    p, member = np.nonzero(values <= limit[r, None])
    row = np.concatenate([r[p], np.repeat(np.arange(n), k)])
    value = np.concatenate([values[p, member], kept_v.ravel()])
    index = np.concatenate([member * mins.shape[1] + group[p] + base, kept_i.ravel()])
    order = np.lexsort((index, value, row))
    counts = np.bincount(row, minlength=n)
    take = order[(np.cumsum(counts) - counts)[:, None] + np.arange(k)]
    kept_v[...] = value[take]
    kept_i[...] = index[take]


def _empty(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n, k), np.inf, dtype=np.float32), np.full((n, k), np.iinfo(np.int64).max, dtype=np.int64)


def _distances(best: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(1 - s clipped to [0, 2], indices) from the running top-k of negated similarities."""
    return np.clip(1 + best[0], 0, 2), best[1]


class KNeighborsCosine(ClassifierMixin, BaseEstimator):
    """Exact k-NN classifier under cosine distance (scikit-learn's brute-force cosine k-NN).

    Parameters
    ----------
    n_neighbors : int, default 5
        k.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    n_features_in_ : int
        Number of units seen in `fit`.
    n_samples_fit_ : int
        Training rows.
    """

    _parameter_constraints: dict = {"n_neighbors": [Interval(Integral, 1, None, closed="left")]}

    def __init__(self, n_neighbors: int = 5):
        self.n_neighbors = n_neighbors

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> "KNeighborsCosine":
        """Keep the training rows (float32, not copied when already so) and labels; returns self."""
        X, y = validate_data(self, X, y, dtype=np.float32, order="C")
        check_classification_targets(y)
        self.classes_, self._y = np.unique(y, return_inverse=True)
        self._fit_X = X
        self._fit_norms = np.sqrt(np.einsum("ij,ij->i", X, X))
        self.n_samples_fit_ = len(X)
        return self

    def _k(self) -> int:
        if self.n_neighbors > self.n_samples_fit_:
            raise ValueError(f"n_neighbors: expected at most {self.n_samples_fit_} (the training "
                             f"rows), got {self.n_neighbors}")
        return self.n_neighbors

    def _train_blocks(self):
        X, norms = self._fit_X, self._fit_norms
        for j in range(0, len(X), BLOCK):
            yield j, _unit(X[j:j + BLOCK], norms[j:j + BLOCK])

    def kneighbors(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """(distances, indices) of shape (n_queries, k): each query's k nearest training
        rows, nearest first (ties: lower index first)."""
        check_is_fitted(self, "_fit_X")
        X = validate_data(self, X, dtype=np.float32, order="C", reset=False)
        k = self._k()
        best = _empty(len(X), k)
        tile = _tile_buffer()
        q_norms = np.sqrt(np.einsum("ij,ij->i", X, X))
        for i in range(0, len(X), BLOCK):
            Q = _unit(X[i:i + BLOCK], q_norms[i:i + BLOCK])
            for j, T in self._train_blocks():
                _merge(best, i, len(Q), _negated_similarity(Q, T, tile), j, k)
        return _distances(best)

    def _fit_neighbors(self) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest training rows of every training row (itself included, as a query
        equal to a training row has it), from the upper triangle of the symmetric product."""
        k = self._k()
        best = _empty(self.n_samples_fit_, k)
        tile = _tile_buffer()
        blocks = list(range(0, self.n_samples_fit_, BLOCK))
        X, norms = self._fit_X, self._fit_norms
        for i in blocks:
            A = _unit(X[i:i + BLOCK], norms[i:i + BLOCK])
            for j in (b for b in blocks if b >= i):
                B = A if j == i else _unit(X[j:j + BLOCK], norms[j:j + BLOCK])
                N = _negated_similarity(A, B, tile)
                _merge(best, i, len(A), N, j, k)
                if j != i:
                    _merge(best, j, len(B), N, i, k, axis=1)
        return _distances(best)

    def _vote(self, ind: np.ndarray) -> np.ndarray:
        labels = self._y[ind]
        counts = np.zeros((len(ind), len(self.classes_)), dtype=np.int64)
        for j in range(labels.shape[1]):
            np.add.at(counts, (np.arange(len(ind)), labels[:, j]), 1)
        return self.classes_[np.argmax(counts, axis=1)]  # first max: the smallest tied label

    def predict(self, X: Any) -> np.ndarray:
        """The majority label of each row's k nearest training rows (ties: smallest label)."""
        return self._vote(self.kneighbors(X)[1])

    def predict_with_fit_rows(self, X: Any, fit_rows: Any) -> np.ndarray:
        """`predict(X)` where ``X[fit_rows]`` are the training rows, in order (a whole
        slab whose training split was fitted): those rows' neighbours come from the
        symmetric training product, the others' from `kneighbors`.

        Raises
        ------
        ValueError
            Where ``X[fit_rows]`` is not the training set.
        """
        check_is_fitted(self, "_fit_X")
        X = validate_data(self, X, dtype=np.float32, order="C", reset=False)
        fit_rows = np.asarray(fit_rows, dtype=bool)
        step = max(1, self.n_samples_fit_ // 64)  # a sample of the rows: no copy of them all
        if fit_rows.shape != (len(X),) or fit_rows.sum() != self.n_samples_fit_ or not np.array_equal(
                X[np.flatnonzero(fit_rows)[::step]], self._fit_X[::step]):
            raise ValueError("fit_rows: expected a mask selecting the training rows of X, in order")
        pred = np.empty(len(X), dtype=self.classes_.dtype)
        pred[fit_rows] = self._vote(self._fit_neighbors()[1])
        if (~fit_rows).any():
            pred[~fit_rows] = self.predict(X[~fit_rows])
        return pred
