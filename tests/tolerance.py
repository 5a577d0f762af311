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
