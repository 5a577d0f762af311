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
