"""Per-class spectra behind MASC and VeLPIC, and MASC's scores: the float64 reference
and the fast path that gives the same k per class at less cost.

`class_spectra` is the reference: the uncentered PCA of each class (one float64
eigendecomposition on the smaller of its Gram and covariance sides, every numerically
nonzero eigenpair kept), and `n_kept` the rule that turns a spectrum into MASC's k_c.
`fast_class_spectra` (`fast_class_spectra_multi` for several n at once) arranges the
same mathematics to cost less: the products in float32, their eigenvalues (which decide
k_c) in float64 and their eigenvectors in float32, the total energy from the trace,
only the k_c leading right singular vectors formed, same-size classes in one batched
call; a class whose cut lies within `MARGIN` of n (or in the float32 noise floor) has
its k_c decided on the float64 product by the reference's rule, and a class smaller
than `EXACT_BELOW` is done by the reference. `subspace_scores` scores every class's
subspace in one product per block of rows.

Kernels run on NumPy by default, or through torch on a device (`device="cuda"`,
`"cpu"`): the same operations, so a GPU runs them where there is one. Pure functions on
in-memory arrays, no I/O. The measurements behind these choices are in the README
(Performance).
"""

from __future__ import annotations

import socket
from typing import Any, Sequence

import numpy as np

__all__ = [
    "EXACT_BELOW",
    "MARGIN",
    "Spectrum",
    "class_spectra",
    "fast_class_spectra",
    "fast_class_spectra_multi",
    "n_kept",
    "subspace_scores",
]

# One (eigvals, V) pair per class: eigvals (r,) descending, V (r, d) orthonormal rows.
Spectrum = tuple[np.ndarray, np.ndarray]

# A cumulative energy ratio this close to n is decided on the float64 product: four
# float32 ulps, well above what the float32 product moves the ratios by (README,
# Performance) and below what a float32 eigendecomposition would.
_EPS32 = float(np.finfo(np.float32).eps)
MARGIN = 4 * _EPS32
# Classes whose smaller side is below this are decomposed in float64 throughout:
# there the reference costs next to nothing, so nothing is gained by rounding.
EXACT_BELOW = 128
# Batches of same-size matrices are split so one batch holds at most this many bytes.
BATCH_BYTES = 256 << 20
# Rows scored per block in `subspace_scores` (bounds the (rows, Σk) intermediate).
SCORE_ROWS = 2048


# --------------------------------------------------------------------------
# The float64 reference
# --------------------------------------------------------------------------


def _uncentered_pca(Xc: np.ndarray) -> Spectrum:
    """Uncentered PCA of one class block Xc (n, d).

    Returns eigenvalues λ_i = s_i² (squared singular values of Xc, descending)
    and the right singular vectors V (r, d) for the numerically nonzero λ.
    Equivalent to PCA of [Xc; −Xc], whose mean is zero by construction.
    """
    n, d = Xc.shape
    if n == 0 or d == 0:
        return np.zeros(0), np.zeros((0, d))
    gram_side = n < d
    # Work on the smaller of XcXcᵀ (n×n) and XcᵀXc (d×d): same nonzero spectrum.
    M = Xc @ Xc.T if gram_side else Xc.T @ Xc
    lam, W = np.linalg.eigh(M)
    lam, W = lam[::-1], W[:, ::-1]  # eigh is ascending; we want descending
    tol = max(lam[0], 0.0) * max(n, d) * np.finfo(np.float64).eps
    keep = lam > tol  # drop numerically-zero directions so V stays orthonormal
    lam, W = lam[keep], W[:, keep]
    if gram_side:
        # Xc = U S Vᵀ  ⇒  V = Xcᵀ U S⁻¹ (columns), returned as rows.
        V = _reorthonormalise(Xc.T @ W / np.sqrt(lam)).T
    else:
        V = W.T
    return lam, np.ascontiguousarray(V)


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
    return [_uncentered_pca(X[y == c]) for c in classes]


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


# --------------------------------------------------------------------------
# Kernels: NumPy, or torch on a device. Arrays in and out are NumPy.
# --------------------------------------------------------------------------


class _Numpy:
    def gram(self, block: np.ndarray, gram_side: bool) -> np.ndarray:
        return block @ block.T if gram_side else block.T @ block

    def eigvalsh(self, stack: np.ndarray) -> np.ndarray:
        return np.linalg.eigvalsh(stack)

    def eigh32(self, stack: np.ndarray) -> np.ndarray:
        # SciPy's float32 divide and conquer (NumPy's float32 eigh is twice as slow).
        import scipy.linalg

        return np.stack([scipy.linalg.eigh(m, driver="evd", check_finite=False)[1] for m in stack])

    def left(self, U: np.ndarray, block: np.ndarray) -> np.ndarray:
        return U.T @ block

    def matmul_t(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        return A @ B.T


class _Torch:
    def __init__(self, device: str):
        import torch

        self.torch, self.device = torch, torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"analysis.device: {device!r} asked for, but torch sees no CUDA "
                             f"device on {socket.gethostname()}; use cpu or null")

    def _t(self, a: np.ndarray):
        if any(step < 0 for step in a.strides):  # torch takes no negative strides
            a = a.copy()
        return self.torch.as_tensor(a, device=self.device)

    def gram(self, block, gram_side):
        t = self._t(block)
        return (t @ t.T if gram_side else t.T @ t).cpu().numpy()

    def eigvalsh(self, stack):
        return self.torch.linalg.eigvalsh(self._t(stack)).cpu().numpy()

    def eigh32(self, stack):
        return self.torch.linalg.eigh(self._t(stack))[1].cpu().numpy()

    def left(self, U, block):
        return (self._t(U).T @ self._t(block)).cpu().numpy()

    def matmul_t(self, A, B):
        return (self._t(A) @ self._t(B).T).cpu().numpy()


def _backend(device: str | None):
    return _Numpy() if device is None else _Torch(device)


# --------------------------------------------------------------------------
# Per-class spectra
# --------------------------------------------------------------------------


def _cut(lam: np.ndarray, total: float, n: float) -> tuple[int, bool]:
    """(k, safe): the reference rule on eigenvalues `lam` (descending) with the
    energy `total`; safe is False when the float32 rounding could change k."""
    r = len(lam)
    if n >= 1:
        return min(int(n), r), int(n) < r
    ratio = np.cumsum(lam) / total
    k = int(np.count_nonzero(ratio <= n)) + 1
    if k > r:  # the cut lies in the float32 noise floor: ask float64
        return r, False
    below = n - ratio[k - 2] if k >= 2 else np.inf
    return k, bool(min(below, ratio[k - 1] - n) > MARGIN)


def _decompose(kernels, blocks: list[np.ndarray], gram_side: bool):
    """(λ, U) per block, both descending: λ the float64 eigenvalues of the block's float32
    product (they decide k), U the eigenvectors of a float32 decomposition of it (they
    only need to span the kept subspace). Same-size products go in batched calls."""
    size = blocks[0].shape[0] if gram_side else blocks[0].shape[1]
    per_batch = max(1, BATCH_BYTES // (16 * size * size))
    for start in range(0, len(blocks), per_batch):
        group = blocks[start : start + per_batch]
        stack = np.stack([kernels.gram(b, gram_side) for b in group])
        lam, U = kernels.eigvalsh(stack.astype(np.float64)), kernels.eigh32(stack)
        for i in range(len(group)):
            yield lam[i, ::-1], U[i, :, ::-1]


def fast_class_spectra(X: np.ndarray, y: np.ndarray, classes: Sequence, n_components: float,
                       *, device: str | None = None,
                       exact_below: int | None = None) -> tuple[list, np.ndarray]:
    """Per-class spectra and MASC's k_c for one n, by the fast path.

    Parameters
    ----------
    X, y, classes
        As for `class_spectra`, X converted to float32.
    n_components : float
        MASC's n: an explained fraction in (0, 1) or a count >= 1.
    device : str or None, default None
        A torch device for the kernels ("cuda", "cpu"); None runs them on NumPy.
    exact_below : int or None, default None
        Classes whose smaller side is below this go the float64 reference's way
        (None: `EXACT_BELOW`).

    Returns
    -------
    spectra : list of (eigvals, V)
        Per class, as `class_spectra` gives them but with V cut to its first
        max(k_c, 1) rows (what MASC and VeLPIC use): float32 where the class went the
        fast way, float64 where it went the reference's.
    ks : ndarray of shape (n_classes,)
        The reference's k_c of each class.
    """
    out, ks = fast_class_spectra_multi(X, y, classes, (n_components,), device=device,
                                       exact_below=exact_below)
    return out, ks[0]


def fast_class_spectra_multi(X: np.ndarray, y: np.ndarray, classes: Sequence,
                             ns: Sequence[float], *, device: str | None = None,
                             exact_below: int | None = None) -> tuple[list, np.ndarray]:
    """`fast_class_spectra` for several n at once (MASC's n ablation), from one
    decomposition per class.

    Parameters
    ----------
    X, y, classes, device, exact_below
        As for `fast_class_spectra`.
    ns : sequence of float
        Every n (each an explained fraction in (0, 1) or a count >= 1).

    Returns
    -------
    spectra : list of (eigvals, V)
        Per class, V cut to the largest k_c over `ns` (at least one row).
    ks : ndarray of shape (len(ns), n_classes)
        The reference's k_c of each class for every n.
    """
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    blocks = [np.ascontiguousarray(X[y == c]) for c in classes]
    out: list[Any] = [None] * len(blocks)
    ks = np.zeros((len(ns), len(blocks)), dtype=int)
    kernels = _backend(device)
    floor = EXACT_BELOW if exact_below is None else exact_below
    big = [i for i, b in enumerate(blocks) if min(b.shape) >= max(floor, 1)]
    for (gram_side, _), members in _by_size(blocks, big).items():
        spectra = _decompose(kernels, [blocks[i] for i in members], gram_side)
        for i, (lam, U) in zip(members, spectra):
            out[i], ks[:, i] = _from_products(kernels, blocks[i], lam, U, gram_side, ns)
    for i, block in enumerate(blocks):
        if out[i] is None:  # small: the float64 reference costs nothing here (and
            # its float64 vectors are kept, so small slabs fit exactly as `fit` does)
            lam, V = _uncentered_pca(block.astype(np.float64))
            ks[:, i] = [n_kept(lam, n) for n in ns]
            out[i] = (lam, V[: max(ks[:, i].max(), 1)])
    return out, ks


def _by_size(blocks: list[np.ndarray], members: list[int]) -> dict[tuple[bool, int], list[int]]:
    """Class indices grouped by (Gram side?, size of the matrix to decompose)."""
    groups: dict[tuple[bool, int], list[int]] = {}
    for i in members:
        n_c, d = blocks[i].shape
        groups.setdefault((n_c < d, min(n_c, d)), []).append(i)
    return groups


def _from_products(kernels, block: np.ndarray, lam: np.ndarray, U: np.ndarray,
                   gram_side: bool, ns: Sequence[float]):
    """(λ, V), k per n of one class from its decomposed float32 product. When the
    float32 rounding could move a k, the eigenvalues of the float64 product decide them
    all, by the reference's own rule. V has the largest k's rows."""
    n_c, d = block.shape
    # Σλ over every eigenvalue is the product's trace, ‖X_c‖_F²: the total energy,
    # whatever the noise floor below does to the smallest eigenvalues.
    total = float(lam.sum())
    # Eigenvalues under the float32 product's noise floor (~eps·√d·λ_max) are not
    # resolved: drop them; a cut that falls among them is left to float64.
    lam = lam[lam > max(lam[0], 0.0) * np.sqrt(max(n_c, d)) * _EPS32]
    cuts = [_cut(lam, total, n) if len(lam) and total > 0 else (0, False) for n in ns]
    ks = [k for k, _ in cuts]
    if not all(safe for _, safe in cuts):
        exact = kernels.eigvalsh(kernels.gram(block.astype(np.float64), gram_side)[None])[0, ::-1]
        lam = exact[exact > max(exact[0], 0.0) * max(n_c, d) * np.finfo(np.float64).eps]
        ks = [n_kept(lam, n) for n in ns]
    m = min(max(max(ks), 1), len(lam), U.shape[1])
    if m == 0:
        return (lam, np.zeros((0, d), dtype=np.float32)), ks
    if gram_side:  # X_c = U S Vᵀ  ⇒  Vᵀ = Uᵀ X_c / s, s = the norm of each row
        V = kernels.left(np.ascontiguousarray(U[:, :m], dtype=np.float32), block)
        V /= np.sqrt(np.einsum("ij,ij->i", V, V, dtype=np.float64)).astype(np.float32)[:, None]
    else:
        V = U[:, :m].T
    return (lam, np.ascontiguousarray(V, dtype=np.float32)), ks


# --------------------------------------------------------------------------
# MASC scores
# --------------------------------------------------------------------------


def subspace_scores(X: np.ndarray, components: Sequence[np.ndarray], *,
                    device: str | None = None, rows: int = SCORE_ROWS) -> np.ndarray:
    """Squared projection norms ‖B_c x‖² of every row on every class's subspace.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The rows to score.
    components : sequence of ndarray, each of shape (k_c, n_features)
        Each class's orthonormal rows B_c.
    device : str or None, default None
        A torch device for the products; None runs them on NumPy.
    rows : int, default SCORE_ROWS
        Rows per block: every class is scored in one product per block.

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
        ‖B_c x‖², float64, computed in the components' precision (float32 for fast fits).
    """
    dtype = np.result_type(*[B.dtype for B in components], np.float32)
    B = np.concatenate([np.asarray(b, dtype=dtype) for b in components], axis=0)
    sizes = [len(b) for b in components]
    starts = np.cumsum([0, *sizes[:-1]])
    X = np.asarray(X, dtype=dtype)
    kernels = _backend(device)
    out = np.zeros((len(X), len(components)), dtype=np.float64)
    nonempty = np.asarray(sizes) > 0
    for lo in range(0, len(X), rows):
        P = kernels.matmul_t(X[lo : lo + rows], B)
        np.square(P, out=P)
        if nonempty.any():
            sums = np.add.reduceat(P, starts[nonempty], axis=1)
            out[lo : lo + rows, nonempty] = sums
    return out
