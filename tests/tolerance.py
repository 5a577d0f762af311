"""Tolerances for comparing floats that two code paths computed (batched and unbatched,
two BLAS kernels, float32 and float64), derived from the dtype and the scale of the values.

A sum of n terms computed in floating point with unit roundoff u lies within
γ_n·Σ|terms| of the exact sum, γ_n = n·u/(1 − n·u) ≈ n·u (Higham, *Accuracy and Stability
of Numerical Algorithms*, §3.1), whatever the order of summation. Two orders are therefore
within 2·γ_n·Σ|terms| of each other. The bounds below use that rule with u = eps/2, so
a test that uses them passes on any kernel and thread count, and still fails on an error
that is larger than rounding.
"""

from __future__ import annotations

import numpy as np


def unit_roundoff(dtype) -> float:
    """u = eps/2 of a floating dtype (float32: 5.96e-8, float16: 4.88e-4)."""
    return float(np.finfo(dtype).eps) / 2


def sum_atol(dtype, n_terms: int, magnitude: float) -> float:
    """How far two summation orders of `n_terms` terms whose absolute values add up to at
    most `magnitude` can differ, each computed in `dtype`: 2·γ_n·magnitude."""
    nu = n_terms * unit_roundoff(dtype)
    return 2 * nu / (1 - nu) * float(magnitude)


def matmul_atol(a, b, dtype=None) -> float:
    """How far two kernels' `a @ b` can differ in any element, each computed in `dtype`
    (default: the result type of a and b): 2·γ_k·max(|a| @ |b|), k the inner length."""
    a, b = np.asarray(a), np.asarray(b)
    dtype = np.result_type(a, b) if dtype is None else dtype
    magnitude = (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)).max()
    return sum_atol(dtype, a.shape[-1], magnitude)


def gamma(dtype, n_terms: int) -> float:
    """γ_n = n·u/(1 − n·u): a computed sum of n terms (any order, FMA or not) is within
    γ_n·Σ|terms| of the exact sum; a computed dot product of length n likewise."""
    nu = n_terms * unit_roundoff(dtype)
    return nu / (1 - nu)


def relu_mlp_atol(x, layers, dtype=np.float32) -> float:
    """How far two kernels' outputs of x ↦ W_L·relu(…relu(W_1 x + b_1)…) + b_L can differ
    in any element, every layer computed in `dtype` (x (rows, in); `layers` a list of
    (W (out, in), b (out,) or None), as torch.nn.Linear holds them).

    Per path, a layer's computed output is within e_i of the exact one, with
    e_i = |W_i|·e_{i−1} + γ_{k+1}·(|W_i|·(|h_{i−1}| + e_{i−1}) + |b_i|), k its fan-in: its
    own rounding (k products and the bias summed) plus the error of its input carried
    through |W_i| (ReLU is 1-Lipschitz: it carries no more than it gets). h is the exact
    activation, here in float64 (its own error is ~1e-16 relative, nothing next to
    float32's). Two paths: 2·max(e_L)."""
    h = np.asarray(x, dtype=np.float64)
    e = np.zeros_like(h)
    for i, (w, b) in enumerate(layers):
        w = np.asarray(w, dtype=np.float64)
        b = np.zeros(w.shape[0]) if b is None else np.asarray(b, dtype=np.float64)
        g = gamma(dtype, w.shape[1] + 1)
        pre = h @ w.T + b
        e = e @ np.abs(w).T + g * ((np.abs(h) + e) @ np.abs(w).T + np.abs(b))
        h = np.maximum(pre, 0) if i < len(layers) - 1 else pre
    return 2 * float(e.max())


def clear_argmax(scores, atol) -> np.ndarray:
    """Rows of `scores` (n, classes) whose argmax no change of any entry by at most `atol`
    (a scalar, or per element) can move: top − runner-up > 2·atol (the row's largest
    atol). Where two float paths each lie within atol of the exact scores, these rows
    get the same label in both; the other rows are near-ties that rounding decides."""
    scores = np.asarray(scores, dtype=np.float64)
    atol = np.broadcast_to(np.asarray(atol, dtype=np.float64), scores.shape).max(axis=1)
    top2 = np.sort(scores, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0] > 2 * atol


def dft_ipr_rtol(dtype, p: int) -> float:
    """How far, relative, two computations of the Fourier IPR Σ|X_k|⁴/(Σ|X_k|²)² of a
    length-p row (one-sided spectrum, K = ⌊p/2⌋ + 1 terms) can differ: an FFT, or the
    explicit sum X_k = Σ_j x_j·e^{−2πikj/p}, each in `dtype`.

    The explicit sum is the worse one: each |X_k| is within ε = (γ_p + (4πp + 4)·u)·‖x‖₁
    of the exact (γ_p for the sum; the angle 2πkj/p < πp takes up to 4 roundings, exp
    and the modulus a few more). First order, δIPR/IPR ≤ 8ε√K/‖X‖₂ (Cauchy–Schwarz on
    both sums), and the one-sided Parseval ‖X‖₂ ≥ √(p/2)·‖x‖₂ with ‖x‖₁ ≤ √p·‖x‖₂ turns
    that into 8√(2K)·(γ_p + (4πp + 4)·u), plus γ_{2K+4} for evaluating the ratio itself;
    twice that for two paths (p = 97, float64: 2.3e-11)."""
    k = p // 2 + 1
    u = unit_roundoff(dtype)
    per_path = 8 * np.sqrt(2 * k) * (gamma(dtype, p) + (4 * np.pi * p + 4) * u) + gamma(dtype, 2 * k + 4)
    return 2 * float(per_path)


def eigh_perturbation(X, dtype=np.float64, n_terms: int | None = None) -> float:
    """A bound on ‖E‖₂, where the eigenpairs one path computes from a product of the
    block X (n, d), XᵀX or XXᵀ formed and then passed to `eigh`, in `dtype`, are
    those of the exact XᵀX + E (the nonzero spectrum is the same on both sides).

    Forming it: every entry within γ_len·(|X|ᵀ|X|)_ij (len the inner length, n or d;
    `n_terms`, default 2·max(n, d), which also covers stacking [X; −X]), so
    ‖ΔM‖₂ ≤ ‖ΔM‖_F ≤ γ_len·‖X‖_F². Decomposing it: Householder tridiagonalisation
    and the tridiagonal solver are normwise backward stable, the worst-case constant
    of order m² for an m×m matrix (Higham §19.3: γ_{cm²}; c = 1 taken), m = min(n, d):
    γ_{m²}·‖M‖_F ≤ γ_{m²}·‖X‖_F². Then Weyl: each computed eigenvalue is within ‖E‖₂
    of the exact one, and Davis–Kahan bounds the subspaces (`eigenspace_atol`)."""
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    m = min(n, d)
    fro2 = float(np.sum(X * X))
    n_terms = 2 * max(n, d) if n_terms is None else n_terms
    return (gamma(dtype, n_terms) + gamma(dtype, m * m)) * fro2


def eigenspace_atol(X, k: int, dtype=np.float64) -> float:
    """How far (2-norm, so any element too) one path's orthogonal projector onto the
    top-k right singular subspace of X (n, d) can lie from the exact one, the
    subspace computed as in `eigh_perturbation` (and, on the Gram side n < d, mapped
    back as V = XᵀU·S⁻¹ and re-orthonormalised by QR). Twice it for two paths.

    Davis–Kahan: ‖sin Θ‖₂ ≤ ‖E‖₂ / (gap − 2‖E‖₂), gap = s_k² − s_{k+1}² (s_{k+1} = 0
    past the rank), which is ‖P̂ − P‖₂. Gram side: U's span moves by that much, and
    Xᵀ maps it with tan θ scaled by s_{k+1}/s_k ≤ 1; the product XᵀU_k adds
    γ_n·√k·‖X‖_F over σ_min = s_k; QR is backward stable (γ_{dk}·√k on the
    near-orthonormal columns), which keeps the leading span. Exact singular values
    from a float64 SVD of X (their own error, ~1e-16·s₁, is nothing next to these).
    Infinite if the gap is not resolved (then no projector comparison is meaningful)."""
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    s = np.linalg.svd(X, compute_uv=False)
    lam = s ** 2
    e = eigh_perturbation(X, dtype)
    gap = lam[k - 1] - (lam[k] if k < len(lam) else 0.0)
    if gap <= 2 * e:
        return float("inf")
    out = e / (gap - 2 * e)
    if n < d:
        out += gamma(dtype, n) * np.sqrt(k) * np.sqrt(float(np.sum(X * X))) / s[k - 1]
        out += gamma(dtype, d * k) * np.sqrt(k)
    return float(out)


def ritz_sin_theta(X, B) -> tuple[float, float, float]:
    """A posteriori distance of span(rows of B) (k, d), any precision, from the exact
    top-k right singular subspace of X (n, d): (sin_theta, residual, separation).

    Q = an orthonormal basis of the rows' span (float64 QR), H = QᵀMQ, M = XᵀX and
    R = MQ − QH, all in float64 (their own rounding, ~1e-16·‖M‖, is nothing next to a
    float32 basis). Davis–Kahan's sin Θ theorem: ‖sin Θ‖₂ ≤ ‖R‖₂ / δ with δ =
    λ_min(H) − λ_{k+1}(M) (0 past the rank) > 0; δ ≤ 0 means the span is not (close
    to) the top-k subspace, and sin_theta is then infinite."""
    X = np.asarray(X, dtype=np.float64)
    Q = np.linalg.qr(np.asarray(B, dtype=np.float64).T)[0]
    k = Q.shape[1]
    M = X.T @ X
    H = Q.T @ M @ Q
    residual = float(np.linalg.norm(M @ Q - Q @ H, 2))
    lam = np.linalg.eigvalsh(M)[::-1]
    below = lam[k] if k < len(lam) else 0.0
    sep = float(np.linalg.eigvalsh((H + H.T) / 2)[0] - max(below, 0.0))
    return (residual / sep if sep > 0 else float("inf")), residual, sep
