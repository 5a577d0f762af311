"""Per-class spectra behind MASC and VeLPIC: the fast path that gives the float64
reference's k per class at less cost.

The reference, `class_spectra` (the uncentered PCA of each class in float64) and `n_kept`
(the rule that turns a spectrum into MASC's k_c), lives in `analyze.spectral_exact` and
is re-exported here.
`fast_class_spectra` (`fast_class_spectra_multi` for several n at once) arranges the
same mathematics to cost less. The class's dominant direction (ReLU activations have
one: the uncentered top pair carries 85% of the energy on the benchmark's slabs) is
found in float64 by power iteration and deflated, X_c − (X_c v)vᵀ; the rest is one
float32 eigendecomposition of the deflated product, whose eigenvalues, rounded on the
scale of the second eigenvalue rather than the first, decide k_c, and whose
eigenvectors give the k_c leading right singular vectors. The total energy is ‖X_c‖_F²
in float64. A class whose cut lies within `MARGIN`, plus `EIG_SAFETY` times the float32
eigensolver's rounding scale, of n (or in the float32 noise floor) has its k_c decided
on the float64 eigenvalues of the same product, and if still too close on the float64
product by the reference's rule; a class smaller than `EXACT_BELOW` is done by the
reference (a slab of small classes only on one thread, their products stacked:
`analyze.spectral_exact.small_class_spectra`). Classes are decomposed side by side,
each on one BLAS thread (`analyze.spectral_kernels.class_workers`). A class decomposed on its d × d side can also
give the rest of its eigenbasis (`analyze.subspace.Tail`), from which MASC scores the
complement where that is the smaller side.

Kernels run on NumPy by default, or through torch on a device (`device="cuda"`,
`"cpu"`): the same operations, so a GPU runs them where there is one. Pure functions on
in-memory arrays, no I/O. The measurements behind these choices are in the README
(Performance).
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from .spectral_exact import Spectrum, class_spectra, n_kept, small_class_spectra, uncentered_pca
from .spectral_kernels import backend, class_workers, one_blas_thread
from .subspace import Tail

__all__ = [
    "EIG_SAFETY",
    "EXACT_BELOW",
    "MARGIN",
    "Spectrum",
    "class_spectra",
    "fast_class_spectra",
    "fast_class_spectra_multi",
    "leading_spectra",
    "n_kept",
]

# A cumulative energy ratio this close to n is decided in float64: four float32 ulps,
# about 25 times what the float32 products (the deflated one included) were measured
# to move the ratios by (README, Performance).
_EPS32 = float(np.finfo(np.float32).eps)
MARGIN = 4 * _EPS32
# Where the float32 eigenvalues decide k, the margin grows by this many times their
# rounding scale u·√m·λ'₁/‖X_c‖_F² (λ'₁ the deflated product's largest eigenvalue, m
# its size): the shifts measured on ReLU slabs were at most 5 of those units, the
# product's own rounding included (README, Performance).
EIG_SAFETY = 20
# Power iteration for the dominant direction: at most this many steps, converged when
# the residual ‖XᵀXv − θv‖ is below POWER_TOL·θ (4 steps on ReLU slabs, where λ₂/λ₁ is
# about 0.005); deflating it moves a partial sum of eigenvalues by at most twice that.
POWER_STEPS = 30
POWER_TOL = 1e-10
# Classes whose smaller side is below this are decomposed in float64 throughout:
# there the reference costs next to nothing, so nothing is gained by rounding.
EXACT_BELOW = 128


# --------------------------------------------------------------------------
# Per-class spectra, the fast path
# --------------------------------------------------------------------------


def _cut(lam: np.ndarray, total: float, n: float, margin: float = MARGIN) -> tuple[int, bool]:
    """(k, safe): the reference rule on eigenvalues `lam` (descending) with the
    energy `total`; safe is False when a ratio within `margin` of n could change k."""
    r = len(lam)
    if n >= 1:
        return min(int(n), r), int(n) < r
    ratio = np.cumsum(lam) / total
    k = int(np.count_nonzero(ratio <= n)) + 1
    if k > r:  # the cut lies in the float32 noise floor: ask float64
        return r, False
    below = n - ratio[k - 2] if k >= 2 else np.inf
    return k, bool(min(below, ratio[k - 1] - n) > margin)


def _cuts(lam: np.ndarray, total: float, ns: Sequence[float], margin: float) -> tuple[list, bool]:
    """([k per n], all safe) by `_cut`."""
    cuts = [_cut(lam, total, n, margin) if len(lam) and total > 0 else (0, False) for n in ns]
    return [k for k, _ in cuts], all(safe for _, safe in cuts)


def _leading_pair(X: np.ndarray):
    """(θ, v, ‖r‖, X64): the top eigenpair of XᵀX by power iteration in float64 from the
    sum of the rows (θ = ‖Xv‖², v unit, r = XᵀXv − θv) and X in float64; None when it
    has not reached ‖r‖ ≤ POWER_TOL·θ in POWER_STEPS steps (no dominant direction)."""
    X64 = X.astype(np.float64)
    v = X64.sum(axis=0)
    for _ in range(POWER_STEPS):
        norm = float(np.linalg.norm(v))
        if not norm > 0:
            return None
        v = v / norm
        w = X64.T @ (X64 @ v)
        theta = float(v @ w)
        resid = float(np.linalg.norm(w - theta * v))
        if resid <= POWER_TOL * theta:
            return theta, v, resid, X64
        v = w
    return None


def leading_spectra(X: np.ndarray, y: np.ndarray, classes: Sequence) -> list[Spectrum]:
    """Per class only its top pair, what VeLPIC needs: ([θ], [v]) by float64 power
    iteration (`POWER_STEPS`, `POWER_TOL`: v within POWER_TOL·θ/(θ − λ₂) of the
    reference's), or the reference's own top pair where that does not converge."""
    out = []
    for c in classes:
        block = np.asarray(X[y == c])
        lead = _leading_pair(block) if block.size else None
        if lead is None:
            lam, V = uncentered_pca(block.astype(np.float64))
            out.append((lam[:1], V[:1]))
        else:
            out.append((np.array([lead[0]]), lead[1][None]))
    return out


def _deflate(X64: np.ndarray, v: np.ndarray) -> np.ndarray:
    """X − (Xv)vᵀ in float32, formed in place on the float64 copy (BLAS's rank-1 update)."""
    from scipy.linalg.blas import dger

    return dger(-1.0, v, X64 @ v, a=X64.T, overwrite_a=1).T.astype(np.float32)


def _fast_spectrum(kernels, block: np.ndarray, ns: Sequence[float]):
    """(λ, V), k per n of one class by the fast path (the module's docstring): k from the
    float32 eigenvalues of the deflated product where they are safe, else from its float64
    eigenvalues, else from the float64 product by the reference's own rule."""
    n_c, d = block.shape
    gram_side = n_c < d
    total = float(np.einsum("ij,ij->", block, block, dtype=np.float64))  # ‖X_c‖_F²
    theta, v, resid, work = None, None, 0.0, block
    lead = _leading_pair(block)
    if lead is not None:
        theta, v, resid, X64 = lead
        work = _deflate(X64, v)
        del lead, X64
    M = kernels.gram(work, gram_side)
    w, U_all = kernels.eigh32(M)
    U_all = U_all[:, ::-1]
    drop = 0 if theta is None else 1  # the deflated direction's zero, the smallest
    lam32, U = w[::-1][: len(w) - drop].astype(np.float64), U_all[:, : len(w) - drop]

    def merged(lam: np.ndarray) -> np.ndarray:
        lam = lam[lam > max(lam[0], 0.0) * np.sqrt(max(n_c, d)) * _EPS32] if len(lam) else lam
        return lam if theta is None else np.sort(np.append(lam, theta))[::-1]

    top = max(lam32[0], 0.0) if len(lam32) else 0.0
    slack = 2 * resid / total if total > 0 else 0.0  # the deflation's rank-2 coupling
    eig_shift = EIG_SAFETY * _EPS32 / 2 * np.sqrt(min(n_c, d)) * top / total if total > 0 else 0.0
    lam = merged(lam32)
    ks, safe = _cuts(lam, total, ns, MARGIN + eig_shift + slack)
    if not safe:  # the float64 eigenvalues of the same float32 product
        lam64 = kernels.eigvalsh(M.astype(np.float64)[None])[0, ::-1]
        lam = merged(lam64[: len(lam64) - drop])
        ks, safe = _cuts(lam, total, ns, MARGIN + slack)
    if not safe:  # the float64 product, by the reference's rule
        exact = kernels.eigvalsh(kernels.gram(block.astype(np.float64), gram_side)[None])[0, ::-1]
        lam = exact[exact > max(exact[0], 0.0) * max(n_c, d) * np.finfo(np.float64).eps]
        ks = [n_kept(lam, n) for n in ns]
    m = min(max(max(ks), 1), len(lam), U.shape[1] + drop)
    pos = None if theta is None else int(np.count_nonzero(lam32 > theta))
    V = _basis(kernels, work, U, m, gram_side, v, pos)
    return (lam, V), ks, _tail(U_all, m, gram_side, pos)


def _tail(U_all: np.ndarray, m: int, gram_side: bool, pos: int | None) -> Tail | None:
    """The eigenvectors of the d × d product after the m - 1 or m in the basis (as float32
    rows), where they are fewer than the basis's rows: MASC's complement (None on the
    Gram side, whose eigenvectors do not span the units)."""
    lead = pos if pos is not None and pos < m else None
    used = m - (lead is not None)
    if gram_side or U_all.shape[1] - used + 1 >= m:
        return None
    return Tail(np.ascontiguousarray(U_all[:, used:].T, dtype=np.float32), lead)


def _basis(kernels, work: np.ndarray, U: np.ndarray, m: int, gram_side: bool,
           v: np.ndarray | None, pos: int | None) -> np.ndarray:
    """The m leading right singular vectors as float32 rows: v (the deflated direction) at
    its place `pos` among those of the deflated block, whose product's eigenvectors are U."""
    lead = v is not None and pos < m
    rows = m - int(lead)
    if gram_side:  # X_c = U S Vᵀ  ⇒  Vᵀ = Uᵀ X_c / s, s = the norm of each row
        V = kernels.left(np.ascontiguousarray(U[:, :rows], dtype=np.float32), work)
        V /= np.sqrt(np.einsum("ij,ij->i", V, V, dtype=np.float64)).astype(np.float32)[:, None]
    else:
        V = U[:, :rows].T
    V = np.asarray(V, dtype=np.float32).reshape(rows, work.shape[1])
    if lead:
        V = np.concatenate([V[:pos], v[None].astype(np.float32), V[pos:]])
    return np.ascontiguousarray(V)


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
                             exact_below: int | None = None, tails: bool = False) -> tuple:
    """`fast_class_spectra` for several n at once (MASC's n ablation), from one
    decomposition per class; on NumPy, `class_workers` classes at a time, each on one
    BLAS thread.

    Parameters
    ----------
    X, y, classes, device, exact_below
        As for `fast_class_spectra`.
    ns : sequence of float
        Every n (each an explained fraction in (0, 1) or a count >= 1).
    tails : bool, default False
        Also return each class's `analyze.subspace.Tail`.

    Returns
    -------
    spectra : list of (eigvals, V)
        Per class, V cut to the largest k_c over `ns` (at least one row).
    ks : ndarray of shape (len(ns), n_classes)
        The reference's k_c of each class for every n.
    tails : list of Tail or None
        Only with ``tails=True``: per class, the rest of its d × d eigenbasis where that
        is shorter than V (None elsewhere: the Gram side, small classes).
    """
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    sizes = [int(np.count_nonzero(y == c)) for c in classes]
    kernels = backend(device)
    floor = max(EXACT_BELOW if exact_below is None else exact_below, 1)

    def one(c):  # each class's rows copied only while it is decomposed
        block = np.ascontiguousarray(X[y == c])
        if min(block.shape) >= floor:
            return _fast_spectrum(kernels, block, ns)
        # small: the float64 reference costs nothing here (and its float64 vectors
        # are kept, so small slabs fit exactly as `fit` does)
        lam, V = uncentered_pca(block.astype(np.float64))
        k = [n_kept(lam, n) for n in ns]
        return (lam, V[: max(max(k), 1)]), k, None

    big = sum(min(n_c, X.shape[1]) >= floor for n_c in sizes)
    workers = class_workers(device, len(classes))
    if workers > 1 and big > 1:
        with one_blas_thread(), ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(one, classes))
    elif not big:  # small classes only: their products stacked, on one thread, no pool
        with one_blas_thread() if workers > 1 else contextlib.nullcontext():
            results = [(spectrum, k, None) for spectrum, k in small_class_spectra(
                [X[y == c] for c in classes], ns)]
    else:
        results = [one(c) for c in classes]
    ks = np.array([k for _, k, _ in results], dtype=int).reshape(len(classes), len(ns)).T
    spectra = [spectrum for spectrum, _, _ in results]
    return (spectra, ks, [tail for _, _, tail in results]) if tails else (spectra, ks)
