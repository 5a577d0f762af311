"""The float64 reference behind MASC and VeLPIC: each class's uncentered PCA, the rule
that turns its spectrum into MASC's k_c, and the same decompositions for many small
classes at once.

`class_spectra` is the reference: the uncentered PCA of each class (one float64
eigendecomposition on the smaller of its Gram and covariance sides, every numerically
nonzero eigenpair kept), and `n_kept` the rule that turns a spectrum into MASC's k_c.
`small_class_spectra` gives the same spectra, bit for bit, for classes whose products
are small (the fast path's classes below `analyze.spectral.EXACT_BELOW`), their products
of one size stacked into one batched `eigh`. Pure functions on in-memory arrays, no I/O.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["Spectrum", "class_spectra", "n_kept", "small_class_spectra", "uncentered_pca"]

# One (eigvals, V) pair per class: eigvals (r,) descending, V (r, d) orthonormal rows.
Spectrum = tuple[np.ndarray, np.ndarray]


def _product(Xc: np.ndarray) -> np.ndarray:
    """Xc Xcᵀ (n × n) where n < d, else Xcᵀ Xc (d × d): the same nonzero spectrum."""
    return Xc @ Xc.T if Xc.shape[0] < Xc.shape[1] else Xc.T @ Xc


def _from_eigh(Xc: np.ndarray, lam: np.ndarray, W: np.ndarray) -> Spectrum:
    """(λ descending, V rows) of Xc from the ascending eigenpairs of `_product(Xc)`."""
    n, d = Xc.shape
    lam, W = lam[::-1], W[:, ::-1]
    tol = max(lam[0], 0.0) * max(n, d) * np.finfo(np.float64).eps
    keep = lam > tol  # drop numerically-zero directions so V stays orthonormal
    lam, W = lam[keep], W[:, keep]
    if n < d:  # Xc = U S Vᵀ  ⇒  V = Xcᵀ U S⁻¹ (columns), returned as rows.
        V = _reorthonormalise(Xc.T @ W / np.sqrt(lam)).T
    else:
        V = W.T
    return lam, np.ascontiguousarray(V)


def uncentered_pca(Xc: np.ndarray) -> Spectrum:
    """Uncentered PCA of one float64 class block Xc (n, d).

    Returns eigenvalues λ_i = s_i² (squared singular values of Xc, descending) and the
    right singular vectors V (r, d) for the numerically nonzero λ (λ > λ_max · max(n, d)
    · eps). Equivalent to PCA of [Xc; −Xc], whose mean is zero by construction.
    """
    if Xc.size == 0:
        return np.zeros(0), np.zeros((0, Xc.shape[1]))
    return _from_eigh(Xc, *np.linalg.eigh(_product(Xc)))


def _reorthonormalise(Vt: np.ndarray) -> np.ndarray:
    """Orthonormalise the columns of Vt in order, keeping each column's sign.

    The Gram route squares the condition number, so columns with small s lose
    orthogonality at the eps·(s_max/s)² level.  QR is Gram–Schmidt in
    column order: leading (accurate) columns are unchanged up to round-off,
    trailing ones are cleaned against them.
    """
    Q, R = np.linalg.qr(Vt)
    return Q * np.where(np.diag(R) < 0, -1.0, 1.0)


def class_spectra(X: np.ndarray, y: np.ndarray, classes: Sequence) -> list[Spectrum]:
    """Per-class uncentered PCA in float64, every numerically nonzero eigenpair kept.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Activations (converted to float64).
    y : array-like of shape (n_samples,)
        Class labels.
    classes : sequence
        The classes to decompose, in order; X_c = X[y == c].

    Returns
    -------
    list of (eigvals, V)
        Per class: eigvals (r,) the squared singular values of X_c, descending, and V
        (r, n_features) the matching right singular vectors as orthonormal rows, the
        numerically zero ones (λ ≤ λ_max · max(n_c, d) · eps) dropped.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    return [uncentered_pca(X[y == c]) for c in classes]


def n_kept(eigvals: np.ndarray, n: float) -> int:
    """MASC's number of components kept for one class.

    Parameters
    ----------
    eigvals : ndarray of shape (r,)
        The class's eigenvalues, descending.
    n : float
        In (0, 1): the explained fraction to exceed; >= 1: a count.

    Returns
    -------
    int
        0 < n < 1: k = #{i : Σ_{j≤i} λ_j / Σ_j λ_j ≤ n} + 1 (the smallest k whose
        explained fraction exceeds n); n ≥ 1: k = int(n). Capped at r.
    """
    r = len(eigvals)
    if r == 0:
        return 0
    if n >= 1:
        return min(int(n), r)
    ratio = np.cumsum(eigvals) / eigvals.sum()
    return min(int(np.count_nonzero(ratio <= n)) + 1, r)


def small_class_spectra(blocks: Sequence[np.ndarray],
                        ns: Sequence[float]) -> list[tuple[Spectrum, list[int]]]:
    """`uncentered_pca` of every block, bit for bit, and MASC's k_c for each n of `ns`:
    the products of one size stacked into one batched `eigh` (one LAPACK call per matrix
    as `uncentered_pca` makes, without a Python round trip each). For small blocks only:
    the stack holds every product at once.

    Returns
    -------
    list of ((eigvals, V), ks)
        Per block, its spectrum with V cut to max(max(ks), 1) rows, and k_c per n.
    """
    blocks = [np.asarray(b, dtype=np.float64) for b in blocks]
    products = [_product(b) for b in blocks]
    sizes: dict[tuple, list[int]] = {}
    for i, b in enumerate(blocks):
        if b.size:
            sizes.setdefault(products[i].shape, []).append(i)
    pairs = {}
    for members in sizes.values():
        lam, W = np.linalg.eigh(np.stack([products[i] for i in members]))
        pairs.update({i: (lam[j], W[j]) for j, i in enumerate(members)})
    out = []
    for i, b in enumerate(blocks):
        lam, V = _from_eigh(b, *pairs[i]) if i in pairs else uncentered_pca(b)
        ks = [n_kept(lam, n) for n in ns]
        out.append(((lam, V[: max(max(ks), 1)]), ks))
    return out
