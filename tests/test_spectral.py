"""The fast spectral path against an explicit float64 eigendecomposition.

The reference is written here from scratch: eigh of [X_c; −X_c]ᵀ[X_c; −X_c] in float64
(d×d), k_c by the cumulative rule, MASC as the angle to the top-k_c eigenvectors and
VeLPIC as the sign-fixed top eigenvector. The fast path must give the same k_c for
every class and the same predictions.
"""

from __future__ import annotations

import numpy as np
import pytest

from analyze import spectral, subspace
from analyze.probes import MASC, VeLPIC, fit_spectral_probes

from .tolerance import clear_argmax, eigenspace_atol, eigh_perturbation, gamma, ritz_sin_theta


def reference(X, y, n, scores=False):
    """(ks, MASC predict, VeLPIC predict) from the explicit d×d float64 eigh (predict
    gives the two score matrices instead when `scores`)."""
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
        if scores:
            return masc, Xt @ V.T
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


def fast_basis_bounds(Xc, k):
    """(residual, orthonormality) bounds for the fast path's float32 basis of one class:
    ‖MQ − QH‖₂ (see ritz_sin_theta) and max |BBᵀ − I|.

    The float32 product and eigh give the exact eigenvectors U of XᵀX + E (or XXᵀ + E
    on the Gram side n < d), ‖E‖₂ ≤ eigh_perturbation (float32, the inner length the
    product has), up to ‖ΔU‖ ≤ γ_(m²) (eigh's backward stability, m the matrix size).
    Covariance side: B = U_kᵀ, so the residual is ‖E‖ + 2λ₁‖ΔU‖ and BBᵀ − I ≤ 3‖ΔU‖.
    Gram side: B's rows are XᵀU_i, each normalised (no re-orthonormalisation): Xᵀ
    carries U's residual over to V scaled by s₁/s_k, the float32 product XᵀU adds
    γ_n·√k·‖X‖_F/s_k to the span's angle, and V_iᵀV_j = −U_iᵀEU_j/(s_i s_j) for i ≠ j,
    so the off-diagonals can reach ‖E‖/s_k² (the Gram route squares the condition)."""
    Xc = np.asarray(Xc, dtype=np.float64)
    n, d = Xc.shape
    m = min(n, d)
    s = np.linalg.svd(Xc, compute_uv=False)
    lam1, fro = s[0] ** 2, np.sqrt(np.sum(Xc * Xc))
    e = eigh_perturbation(Xc, np.float32, n_terms=max(n, d) if n >= d else d)
    du = gamma(np.float32, m * m)
    if n >= d:
        return e + 2 * lam1 * du, 3 * du
    g = gamma(np.float32, n) * fro / s[k - 1]
    residual = (s[0] / s[k - 1]) * (e + 2 * lam1 * du) + 2 * lam1 * np.sqrt(k) * g
    orth = (e + 2 * lam1 * du) / s[k - 1] ** 2 + 2 * g + 2 * gamma(np.float32, d + 2)
    return residual, orth


@pytest.mark.parametrize("n_train,d", [(160, 60), (600, 30)])  # Gram side, covariance side
@pytest.mark.parametrize("n", [0.99, 0.9, 0.5, 3])
@pytest.mark.parametrize("device", [None, "cpu"])  # NumPy kernels, torch kernels
def test_fast_path_matches_explicit_eigh(n_train, d, n, device):
    X, y = relu_slab(n_train + 400, d)
    Xtr, ytr, Xte = X[:n_train], y[:n_train], X[n_train:]
    masc, vel = fit_spectral_probes(Xtr, ytr, n, method="fast", device=device)
    ks, predict = reference(Xtr, ytr, n, scores=True)
    # exact: k_c is an integer, and the fast path decides it in float64 by the
    # reference's rule wherever float32 could move it (the contract under test)
    np.testing.assert_array_equal(masc.n_components_, ks)
    assert all(B.dtype == np.float32 for B in masc.components_)
    # The float32 bases are orthonormal within fast_basis_bounds and span the
    # reference's subspaces: a posteriori (ritz_sin_theta: the Ritz residual over the
    # separation from λ_(k+1), which must be positive, i.e. the span is the top-k one),
    # the residual within float32 rounding; the float64 reference within eigenspace_atol.
    exact = MASC(n).fit(Xtr, ytr)
    d_orth, d_proj = [], []
    for c, (B, B_ref) in enumerate(zip(masc.components_, exact.components_)):
        Xc, k = Xtr[ytr == c], len(B)
        sin_fast, residual, sep = ritz_sin_theta(Xc, B)
        res_bound, orth_bound = fast_basis_bounds(Xc, k)
        assert sep > 0 and residual <= res_bound, (c, residual, res_bound, sep)
        np.testing.assert_allclose(B @ B.T, np.eye(k), rtol=0, atol=orth_bound)
        Q = np.linalg.qr(B.T.astype(np.float64))[0]
        d_proj.append(sin_fast + eigenspace_atol(Xc, k))
        np.testing.assert_allclose(Q @ Q.T, B_ref.T @ B_ref, rtol=0, atol=d_proj[-1])
        # B = W·Σ·Qᵀ (its SVD, Q the span's basis): ‖Bx‖ is within max|σ_i − 1|·‖x‖ of
        # ‖Qᵀx‖ = ‖QQᵀx‖, a fact of this B (a posteriori, its σ in float64)
        d_orth.append(np.abs(np.linalg.svd(B.astype(np.float64), compute_uv=False) - 1).max())
    # Predictions agree on every row whose top two reference scores are further apart
    # than both paths' errors (clear_argmax). MASC (scores ‖B_c x‖, unnormalised here):
    # fast |‖Bx‖ − ‖Px‖| ≤ (max|σ_i(B) − 1| + sin Θ_fast)·‖x‖ plus its float32 evaluation
    # (γ_d on |x|·|B|, then the squares, the length-k sum and the root: γ_(k+2)); the
    # reference eigenspace_atol·‖x‖ (in d_proj) and γ_(d+k+2) in float64.
    ref_masc, ref_vel = predict(Xte)
    x64 = Xte.astype(np.float64)
    norms = np.linalg.norm(x64, axis=1)
    atol = np.stack([(o + p) * norms for o, p in zip(d_orth, d_proj)], axis=1)
    for i, B in enumerate(masc.components_):
        evaluation = np.linalg.norm(gamma(np.float32, d) * (np.abs(x64) @ np.abs(B.T)), axis=1)
        atol[:, i] += evaluation + (gamma(np.float32, len(B) + 2)
                                    + gamma(np.float64, d + len(B) + 2)) * ref_masc[:, i]
    sure = clear_argmax(ref_masc, atol)
    classes = np.unique(ytr)
    np.testing.assert_array_equal(masc.predict(Xte)[sure], classes[ref_masc.argmax(1)][sure])
    # VeLPIC: the sign-aligned top vectors, ‖v̂ − v‖ ≤ |‖v̂‖ − 1| + √2·sin θ per path
    # (2·sin(θ/2) ≤ √2·sin θ); the scores x·v move by ‖x‖ times that, and are
    # evaluated in float64 on both paths (γ_d on |x|·|v|).
    ref = VeLPIC().fit(Xtr, ytr).coef_
    vec = []
    for c in range(len(classes)):
        Xc = Xtr[ytr == c]
        sin_fast = ritz_sin_theta(Xc, vel.coef_[c][None])[0]
        vec.append(abs(np.linalg.norm(vel.coef_[c]) - 1)
                   + np.sqrt(2) * (sin_fast + eigenspace_atol(Xc, 1)))
    np.testing.assert_allclose(vel.coef_, ref, rtol=0, atol=max(vec))
    atol = (np.asarray(vec)[None, :] * norms[:, None]
            + 2 * gamma(np.float64, d) * (np.abs(x64) @ np.abs(ref).T))
    sure_vel = clear_argmax(ref_vel, atol)
    np.testing.assert_array_equal(vel.predict(Xte)[sure_vel], classes[ref_vel.argmax(1)][sure_vel])
    # Not tolerances: nearly every row is compared (the old ">= 0.995 agreement",
    # now on labels rounding cannot decide; none of these 400 rows is a near tie).
    assert np.mean(sure) >= 0.99 and np.mean(sure_vel) >= 0.99, (np.mean(sure), np.mean(sure_vel))


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


def test_velpic_alone_by_power_iteration_is_the_fits_top_direction():
    X, y = relu_slab(800, 40)
    # a fifth class whose two leading singular values are 0.5% apart: 30 power steps do
    # not reach POWER_TOL, so its pair is the reference's own
    extra = np.zeros((100, 40), np.float32)
    extra[::2, 0], extra[1::2, 1] = 1.0, np.sqrt(0.99)
    X, y = np.vstack([X, extra]), np.append(y, np.full(100, 4))
    fast, ref = VeLPIC.fast(X, y), VeLPIC().fit(X, y)
    np.testing.assert_array_equal(fast.coef_[4], ref.coef_[4])
    assert fast.coef_.dtype == np.float64 and fast.classes_.tolist() == ref.classes_.tolist()
    # the others as in the test above: ‖v̂ − v‖ ≤ |‖v̂‖ − 1| + √2·(sin θ̂ + the reference's)
    vec = [0.0] * 5
    for c in range(4):
        Xc = X[y == c]
        vec[c] = (abs(np.linalg.norm(fast.coef_[c]) - 1)
                  + np.sqrt(2) * (ritz_sin_theta(Xc, fast.coef_[c][None])[0] + eigenspace_atol(Xc, 1)))
        np.testing.assert_allclose(fast.coef_[c], ref.coef_[c], rtol=0, atol=vec[c])
    # predictions agree where no score moves by ‖x‖ times that, plus both float64 evaluations
    x64 = X.astype(np.float64)
    atol = (np.asarray(vec)[None, :] * np.linalg.norm(x64, axis=1)[:, None]
            + 2 * gamma(np.float64, X.shape[1]) * (np.abs(x64) @ np.abs(ref.coef_).T))
    sure = clear_argmax(ref.decision_function(X), atol)
    assert sure.mean() > 0.9
    np.testing.assert_array_equal(fast.predict(X)[sure], ref.predict(X)[sure])


def test_subspace_scores_equal_per_class_norms():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 7))
    comps = [np.linalg.qr(rng.standard_normal((7, k)))[0].T for k in (3, 0, 1, 5)]
    got = subspace.subspace_scores(X, comps, rows=16)
    want = np.stack([np.sum((X @ B.T) ** 2, axis=1) for B in comps], axis=1)
    # float64 both (one concatenated product in blocks of 16 rows there, one per class
    # here): the projections within 2·γ_7·(|X||B|ᵀ) of each other, squared (twice the
    # relative error, plus a rounding) and summed over ≤ 5 terms (γ_5 each path):
    # per element 2·Σ_j (2·|p_j|·err_j + err_j²) + 2·γ_6·Σ_j p_j², an atol (not an
    # rtol: a score near 0 has no relative accuracy).
    for i, B in enumerate(comps):
        p = np.abs(X @ B.T)
        err = 2 * gamma(np.float64, 7) * (np.abs(X) @ np.abs(B).T)
        atol = np.sum(2 * p * err + err ** 2, axis=1) + 2 * gamma(np.float64, 6) * np.sum(p * p, axis=1)
        np.testing.assert_allclose(got[:, i], want[:, i], rtol=0, atol=atol.max() if len(B) else 0)


def test_small_classes_fit_exactly_as_fit(monkeypatch):
    """Below EXACT_BELOW the fast path is the float64 reference, bit for bit."""
    monkeypatch.setattr(spectral, "EXACT_BELOW", 10_000)
    X, y = relu_slab(300, 40)
    masc, vel = fit_spectral_probes(X, y, 0.99, method="fast")
    exact_masc, exact_vel = fit_spectral_probes(X, y, 0.99)
    # exact: both run _uncentered_pca on the same float64 blocks (the same code)
    np.testing.assert_array_equal(masc.n_components_, exact_masc.n_components_)
    for B, B_ref in zip(masc.components_, exact_masc.components_):
        np.testing.assert_array_equal(B, B_ref)
    np.testing.assert_array_equal(vel.coef_, exact_vel.coef_)
    np.testing.assert_array_equal(masc.predict(X), exact_masc.predict(X))


def test_unknown_method():
    X, y = relu_slab(40, 5)
    with pytest.raises(ValueError, match="method: expected one of exact, fast, got 'fp16'"):
        fit_spectral_probes(X, y, method="fp16")


@pytest.mark.parametrize("n_train,d", [(300, 120), (900, 60)])  # Gram side, covariance side
def test_float32_eigenvalues_of_the_deflated_product_stay_within_the_margin(monkeypatch, n_train, d):
    """Where the float32 eigenvalues of the deflated product decide k (MARGIN and
    EIG_SAFETY set to 0 here, so they always do), their cumulative energy ratios lie
    within the margin the fast path allows them, MARGIN + EIG_SAFETY·u·√m·λ'₁/‖X_c‖²_F,
    of the float64 reference's (λ'₁ the deflated product's largest eigenvalue: the
    second of the spectrum, the first being the deflated direction's)."""
    X, y = relu_slab(n_train, d, seed=3)
    allowed = {}
    for c in np.unique(y):
        Xc = X[y == c].astype(np.float64)
        T = float(np.sum(Xc * Xc))
        exact = np.linalg.eigvalsh(Xc @ Xc.T if len(Xc) < d else Xc.T @ Xc)[::-1]
        allowed[c] = (np.cumsum(exact) / T, T, min(Xc.shape))
    monkeypatch.setattr(spectral, "MARGIN", 0.0)
    monkeypatch.setattr(spectral, "EIG_SAFETY", 0)
    out, _ = spectral.fast_class_spectra(X, y, np.unique(y), 0.99)
    u = np.finfo(np.float32).eps / 2
    for c, (lam, V) in zip(np.unique(y), out):
        ratio, T, m = allowed[c]
        r = len(lam)
        assert r >= 0.5 * m and lam[0] / T > 0.5  # resolved, and a dominant direction deflated
        margin = 4 * np.finfo(np.float32).eps + 20 * u * np.sqrt(m) * lam[1] / T
        shift = np.abs(np.cumsum(lam) / T - ratio[:r]).max()
        assert shift <= margin, (c, shift, margin)


def test_no_dominant_direction_is_not_deflated():
    """Orthogonal rows of energies 1, 0.99, 0.98, ...: power iteration gains a factor
    0.99 a step and does not converge in POWER_STEPS, the class is not deflated, and k
    still is the reference's."""
    X = np.zeros((6, 10), dtype=np.float32)
    X[np.arange(6), np.arange(6)] = np.sqrt(1 - 0.01 * np.arange(6))
    assert spectral._leading_pair(X) is None
    for n in (0.3, 0.99, 2):
        masc, _ = fit_spectral_probes(X, np.zeros(6, int), n, method="fast")
        np.testing.assert_array_equal(masc.n_components_, reference(X, np.zeros(6, int), n)[0])


def test_leading_pair_is_the_top_singular_pair():
    X, _ = relu_slab(200, 40, seed=4)
    theta, v, resid, _ = spectral._leading_pair(X)
    s, Vt = np.linalg.svd(X.astype(np.float64), full_matrices=False)[1:]
    # θ within the residual (‖r‖ ≥ min_i |λ_i − θ|, and the rest of the spectrum is far
    # below) plus float64 rounding of the products; v within ‖r‖/(θ − λ₂) of ±v₁
    assert abs(theta - s[0] ** 2) <= resid + 4 * gamma(np.float64, X.size) * s[0] ** 2
    sin = np.sqrt(max(0.0, 1 - float(v @ Vt[0]) ** 2))
    assert sin <= resid / (theta - s[1] ** 2) + 1e-12, sin


@pytest.mark.parametrize("eig_safety", [0, 20, 10 ** 12])  # float32 decides / default / float64 does
def test_every_level_gives_the_reference_k(monkeypatch, eig_safety):
    monkeypatch.setattr(spectral, "EIG_SAFETY", eig_safety)
    X, y = relu_slab(700, 90, seed=5)
    for n in (0.5, 0.9, 0.99):
        masc, _ = fit_spectral_probes(X, y, n, method="fast")
        np.testing.assert_array_equal(masc.n_components_, reference(X, y, n)[0])


def test_classes_side_by_side_equal_one_at_a_time(monkeypatch):
    """Two worker threads, each on one BLAS thread, give bit for bit what one thread
    gives on one BLAS thread: the same kernels on the same blocks."""
    from analyze import spectral_kernels

    X, y = relu_slab(900, 150, n_classes=5, seed=6)
    classes = np.unique(y)
    monkeypatch.setattr(spectral, "class_workers", lambda device, n: 2)
    pooled, ks_pooled = spectral.fast_class_spectra_multi(X, y, classes, [0.9, 0.99])
    monkeypatch.setattr(spectral, "class_workers", lambda device, n: 1)
    with spectral_kernels.one_blas_thread():
        alone, ks_alone = spectral.fast_class_spectra_multi(X, y, classes, [0.9, 0.99])
    np.testing.assert_array_equal(ks_pooled, ks_alone)
    for (lam_p, V_p), (lam_a, V_a) in zip(pooled, alone):
        np.testing.assert_array_equal(lam_p, lam_a)
        np.testing.assert_array_equal(V_p, V_a)
