"""The fast per-class spectra behind MASC and VeLPIC, and MASC's fast scores.

`probes.class_spectra` is the float64 reference: one eigendecomposition per class
on the smaller of the Gram (n_c × n_c) and covariance (d × d) sides, every
eigenpair kept. Here the same mathematics is arranged to cost less:

* the product X_c X_cᵀ (or X_cᵀ X_c) is formed in float32, where BLAS is twice as
  fast; its round-off moves the cumulative energy ratios by ~1e-8 (measured), far
  below the gap between successive ratios at the cut;
* the eigenvalues, which decide k_c, are computed from it in float64 (`eigvalsh`: a
  float32 eigendecomposition moves the ratios by ~1e-6, enough to change k); the
  eigenvectors, which only need to span the kept subspace, by a float32 `eigh`
  (together about 25% cheaper than one float64 `eigh`);
* the total energy is ‖X_c‖_F² (the trace of the product, the sum of all its
  eigenvalues), so dropping the float32 noise floor of the smallest eigenvalues
  never changes the ratio's denominator;
* only the k_c leading right singular vectors are formed (V = Uᵀ X_c, rows
  normalised, on the Gram side), in float32;
* classes whose matrices have the same size are decomposed in one batched call;
* a class whose cut lies within `MARGIN` of the threshold n (or in the float32
  noise floor) has its k_c decided by the eigenvalues of the float64 product, by the
  reference's rule (so k_c is the reference's unless float32 moved a ratio by more
  than MARGIN, ~20x what was measured); a class small enough for
  float64 to cost nothing (`EXACT_BELOW`) is done by the float64 reference.

Kernels run on NumPy by default, or on torch (`device="cuda"`, `"cpu"`): the same
operations, so a GPU runs them when one is present. Pure functions, no I/O.
"""

from __future__ import annotations

import socket
from typing import Any, Sequence

import numpy as np

__all__ = ["MARGIN", "EXACT_BELOW", "fast_class_spectra", "fast_class_spectra_multi", "subspace_scores"]

# A cumulative energy ratio this close to n is decided on the float64 product: four
# float32 ulps (the float32 product moves the ratios by at most ~2e-8 on ReLU
# activations, measured at 2 000 x 4 096; a float32 eigendecomposition, by ~2e-6).
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
    """Per-class (λ, V) and k: the reference's k_c, with V's first max(k_c, 1) rows.

    λ (r,) float64 descending and V (m, d) orthonormal rows, as in
    `probes.class_spectra` but with V cut to the rows MASC and VeLPIC use: float32
    where the class went the fast way, float64 where it is below `exact_below`.
    """
    out, ks = fast_class_spectra_multi(X, y, classes, (n_components,), device=device,
                                       exact_below=exact_below)
    return out, ks[0]


def fast_class_spectra_multi(X: np.ndarray, y: np.ndarray, classes: Sequence,
                             ns: Sequence[float], *, device: str | None = None,
                             exact_below: int | None = None) -> tuple[list, np.ndarray]:
    """`fast_class_spectra` for several n at once (MASC's n ablation): one decomposition
    per class, the reference's k_c for every n (`ks`: (len(ns), n_classes)), and V cut
    to the largest of them."""
    from .probes import _n_kept, _uncentered_pca  # the float64 reference

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
            ks[:, i] = [_n_kept(lam, n) for n in ns]
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
    from .probes import _n_kept

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
        ks = [_n_kept(lam, n) for n in ns]
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
    """(n, K) squared projection norms ‖B_c x‖², every class in one product per block
    of rows, in the components' precision (float32 for fast fits)."""
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
