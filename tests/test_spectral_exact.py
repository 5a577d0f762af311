"""The float64 reference's batched form: `small_class_spectra` gives each block's
`uncentered_pca` bit for bit (the same LAPACK call on the same product, only stacked),
whatever the mix of block shapes; and that reference against an explicit
eigendecomposition of [X_c; −X_c]ᵀ[X_c; −X_c]."""

from __future__ import annotations

import numpy as np

from analyze.spectral_exact import n_kept, small_class_spectra, uncentered_pca


def _blocks(seed=0):
    """Blocks of every kind: d × d products of two sizes' worth of rows, Gram-side ones
    (fewer rows than units), a rank-deficient one, an empty one, and float32 input."""
    rng = np.random.default_rng(seed)
    d = 24
    shapes = [(60, d), (40, d), (90, d), (10, d), (10, d), (17, d), (0, d), (50, d)]
    blocks = [np.maximum(rng.standard_normal(s), 0).astype(np.float32) for s in shapes]
    blocks[7] = (rng.standard_normal((50, 3)) @ rng.standard_normal((3, d))).astype(np.float32)
    return blocks


def test_small_class_spectra_are_uncentered_pca_bit_for_bit():
    blocks = _blocks()
    ns = (0.5, 0.99, 4)
    got = small_class_spectra(blocks, ns)
    assert len(got) == len(blocks)
    for block, ((lam, V), ks) in zip(blocks, got):
        lam_ref, V_ref = uncentered_pca(block.astype(np.float64))
        want = [n_kept(lam_ref, n) for n in ns]
        assert ks == want
        np.testing.assert_array_equal(lam, lam_ref)
        np.testing.assert_array_equal(V, V_ref[: max(max(want), 1)])
    assert got[6][0][0].shape == (0,) and got[6][1] == [0, 0, 0]  # the empty block
    assert len(got[7][0][0]) == 3  # rank 3: the numerically zero pairs dropped


def test_uncentered_pca_against_the_eigh_of_the_signed_stack():
    rng = np.random.default_rng(1)
    for n, d in ((80, 12), (7, 12)):  # covariance side, Gram side
        X = np.maximum(rng.standard_normal((n, d)), 0)
        lam, V = uncentered_pca(X)
        Z = np.vstack([X, -X])
        w, W = np.linalg.eigh(Z.T @ Z / 2)  # [X; −X]ᵀ[X; −X] = 2 XᵀX
        w, W = w[::-1][: len(lam)], W[:, ::-1][:, : len(lam)]
        scale = w[0] * max(n, d) * np.finfo(np.float64).eps
        np.testing.assert_allclose(lam, w, rtol=0, atol=64 * scale)
        np.testing.assert_allclose(V @ V.T, np.eye(len(lam)), rtol=0, atol=1e-10)
        # the same leading subspace: the projectors agree (signs are arbitrary)
        k = min(3, len(lam))
        np.testing.assert_allclose(V[:k].T @ V[:k], W[:, :k] @ W[:, :k].T, rtol=0, atol=1e-8)
