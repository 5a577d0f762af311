"""The fast spectral path against an explicit float64 eigendecomposition.

The reference is written here from scratch: eigh of [X_c; −X_c]ᵀ[X_c; −X_c] in float64
(d×d), k_c by the cumulative rule, MASC as the angle to the top-k_c eigenvectors and
VeLPIC as the sign-fixed top eigenvector. The fast path must give the same k_c for
every class and the same predictions.
"""

from __future__ import annotations

import numpy as np
import pytest

from analyze import spectral
from analyze.probes import MASC, VeLPIC, fit_spectral_probes


def reference(X, y, n):
    """(ks, MASC predict, VeLPIC predict) from the explicit d×d float64 eigh."""
    classes = np.unique(y)
    ks, bases, tops = [], [], []
    X64 = X.astype(np.float64)
    for c in classes:
        Z = np.vstack([X64[y == c], -X64[y == c]])
        w, W = np.linalg.eigh(Z.T @ Z)
        w, W = w[::-1], W[:, ::-1]
        k = min(int(n), len(w)) if n >= 1 else int(np.sum(np.cumsum(w) / w.sum() <= n)) + 1
        ks.append(k)
        bases.append(W[:, :k])
        tops.append(W[:, 0])
    V = np.stack(tops)
    V[(X64 @ V.T).mean(axis=0) < 0] *= -1

    def predict(Xt):
        Xt = Xt.astype(np.float64)
        masc = np.stack([np.linalg.norm(Xt @ B, axis=1) for B in bases], axis=1)
        return classes[masc.argmax(1)], classes[(Xt @ V.T).argmax(1)]

    return np.asarray(ks), predict


def relu_slab(n, d, n_classes=4, latent=24, seed=0):
    """ReLU-like activations with a decaying class spectrum (k_c well below rank)."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((latent, d)) / np.sqrt(latent)
    protos = rng.standard_normal((n_classes, latent))
    y = rng.integers(0, n_classes, n)
    Z = protos[y] + rng.standard_normal((n, latent)) * 0.8 ** np.arange(latent)
    X = np.maximum(Z @ W + 0.05 * rng.standard_normal((n, d)), 0)
    return X.astype(np.float16).astype(np.float32), y  # as a slab is read from a store


@pytest.fixture(autouse=True)
def float32_everywhere(monkeypatch):
    """Small test classes would otherwise be done in float64 (EXACT_BELOW)."""
    monkeypatch.setattr(spectral, "EXACT_BELOW", 1)


@pytest.mark.parametrize("n_train,d", [(160, 60), (600, 30)])  # Gram side, covariance side
@pytest.mark.parametrize("n", [0.99, 0.9, 0.5, 3])
@pytest.mark.parametrize("device", [None, "cpu"])  # NumPy kernels, torch kernels
def test_fast_path_matches_explicit_eigh(n_train, d, n, device):
    X, y = relu_slab(n_train + 400, d)
    Xtr, ytr, Xte = X[:n_train], y[:n_train], X[n_train:]
    masc, vel = fit_spectral_probes(Xtr, ytr, n, method="fast", device=device)
    ks, predict = reference(Xtr, ytr, n)
    np.testing.assert_array_equal(masc.n_components_, ks)
    assert all(B.dtype == np.float32 for B in masc.components_)
    ref_masc, ref_vel = predict(Xte)
    assert np.mean(masc.predict(Xte) == ref_masc) >= 0.995
    assert np.mean(vel.predict(Xte) == ref_vel) >= 0.995
    # The float32 bases are orthonormal and span the reference's subspaces.
    exact = MASC(n).fit(Xtr, ytr)
    for B, B_ref in zip(masc.components_, exact.components_):
        np.testing.assert_allclose(B @ B.T, np.eye(len(B)), atol=2e-3)
        np.testing.assert_allclose(B.T @ B, B_ref.T @ B_ref, atol=2e-3)
    np.testing.assert_allclose(vel.coef_, VeLPIC().fit(Xtr, ytr).coef_, atol=1e-4)


def test_cut_too_close_to_call_goes_to_float64():
    """Orthogonal rows with energies 0.5, 0.49, 0.01: the cumulative ratio is exactly
    0.99 after two components, so n = 0.99 keeps three; float32 cannot tell."""
    d = 8
    X = np.zeros((3, d), dtype=np.float32)
    X[[0, 1, 2], [0, 1, 2]] = np.sqrt([0.5, 0.49, 0.01])
    lam = np.array([0.5, 0.49, 0.01])
    assert spectral._cut(lam * (1 + 1e-9), 1.0, 0.99)[1] is False
    masc, _ = fit_spectral_probes(X, np.zeros(3, int), 0.99, method="fast")
    ks, _ = reference(X, np.zeros(3, int), 0.99)
    np.testing.assert_array_equal(masc.n_components_, ks)


def test_cut_rule():
    lam = np.array([4.0, 3.0, 2.0, 1.0])
    assert spectral._cut(lam, 10.0, 0.65) == (2, True)  # ratios .4 .7 .9 1.
    assert spectral._cut(lam, 10.0, 0.7 + 1e-9)[1] is False  # within MARGIN of .7
    assert spectral._cut(lam, 10.0, 0.1) == (1, True)
    assert spectral._cut(lam[:2], 10.0, 0.8) == (2, False)  # the cut is past what is resolved
    assert spectral._cut(lam, 10.0, 3) == (3, True)
    assert spectral._cut(lam, 10.0, 9) == (4, False)  # more than resolved: ask float64


def test_subspace_scores_equal_per_class_norms():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 7))
    comps = [np.linalg.qr(rng.standard_normal((7, k)))[0].T for k in (3, 0, 1, 5)]
    got = spectral.subspace_scores(X, comps, rows=16)
    want = np.stack([np.sum((X @ B.T) ** 2, axis=1) for B in comps], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_small_classes_fit_exactly_as_fit(monkeypatch):
    """Below EXACT_BELOW the fast path is the float64 reference, bit for bit."""
    monkeypatch.setattr(spectral, "EXACT_BELOW", 10_000)
    X, y = relu_slab(300, 40)
    masc, vel = fit_spectral_probes(X, y, 0.99, method="fast")
    exact_masc, exact_vel = fit_spectral_probes(X, y, 0.99)
    np.testing.assert_array_equal(masc.n_components_, exact_masc.n_components_)
    for B, B_ref in zip(masc.components_, exact_masc.components_):
        np.testing.assert_array_equal(B, B_ref)
    np.testing.assert_array_equal(vel.coef_, exact_vel.coef_)
    np.testing.assert_array_equal(masc.predict(X), exact_masc.predict(X))


def test_unknown_method():
    X, y = relu_slab(40, 5)
    with pytest.raises(ValueError, match="method: expected one of exact, fast, got 'fp16'"):
        fit_spectral_probes(X, y, method="fp16")
