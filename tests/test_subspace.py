"""MASC's scores from the complement of the kept rows (analyze.subspace) against the
scores of the kept rows themselves: in float64 on exact orthonormal bases, and on the
fast path's float32 eigenbases of ReLU classes with dead units."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.probes import fit_spectral_probes
from analyze.spectral import fast_class_spectra_multi
from analyze.subspace import Tail, complement_form, subspace_scores

from .tolerance import clear_argmax, gamma


def _evaluation_atol(x: np.ndarray, R: np.ndarray, dtype) -> np.ndarray:
    """How far a computed ‖R x‖² (products and sum in `dtype`) can lie from the exact,
    per row of x: each product within ε_j = γ_d·(|x|·|r_j|), so its square within
    2·|p_j|·ε_j + ε_j², and the sum of the squares within γ_(rows+1) of their total."""
    x, R = np.asarray(x, np.float64), np.asarray(R, np.float64)
    eps = gamma(dtype, x.shape[1]) * (np.abs(x) @ np.abs(R).T)
    p = np.abs(x @ R.T)
    return np.sum(2 * p * eps + eps ** 2, axis=1) + gamma(dtype, len(R) + 1) * np.sum(p * p, axis=1)


@pytest.mark.parametrize("lead", [None, 0, 3, 8])  # v absent, kept early, late, last
def test_complement_form_scores_what_the_kept_rows_score(lead):
    rng = np.random.default_rng(7)
    d, m = 12, 9
    U = np.linalg.qr(rng.standard_normal((d, d)))[0].T  # orthonormal rows
    if lead is None:
        V, tail = U[:m], U[m:]
    else:
        # the deflated direction v lies in the span of the last two rows (a class with
        # a null direction besides it), so the eigenbasis's own row for it is not v
        v = (U[-1] + 2 * U[-2]) / np.sqrt(5)
        V, tail = np.insert(U[:m - 1], lead, v, axis=0), U[m - 1:]
    x = rng.standard_normal((40, d))
    for k in range(1, m + 1):
        form = complement_form(V, Tail(tail, lead), k)
        got, want = subspace_scores(x, [form]), subspace_scores(x, [V[:k]])
        assert len(form.rows) <= k
        if k == m:  # the complement is the shorter side here
            assert (form.weights < 0).any()
        atol = (_evaluation_atol(x, form.rows, np.float64) + _evaluation_atol(x, V[:k], np.float64)
                + 4 * gamma(np.float64, d) * np.sum(x * x, axis=1))
        np.testing.assert_array_less(np.abs(got - want)[:, 0], atol + 1e-300)


def _relu_classes(n_per: int, d: int, classes: int, seed: int = 0):
    """ReLU classes wide enough for the fast path's d × d side, the first with dead units."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per)
    X = np.maximum(rng.standard_normal((classes, d))[y] + rng.standard_normal((len(y), d)), 0)
    X[y == 0, :7] = 0.0
    return X.astype(np.float32), y


def _fast_bounds(X, y, x):
    """Per class, the fast path's basis V, k, tail and how far the complement's score of
    each row of x can lie from the kept rows': the identity behind the form holds for the
    eigenbasis W (V without v, then the tail) up to W's own orthogonality, |Δ| ≤
    ‖W Wᵀ − I‖₂·‖x‖², plus both float32 evaluations."""
    spectra, ks, tails = fast_class_spectra_multi(X, y, np.unique(y), [0.99], tails=True)
    out = []
    for (_, V), k, tail in zip(spectra, ks[0], tails):
        assert tail is not None
        W = np.concatenate([np.delete(V, tail.lead, axis=0) if tail.lead is not None else V,
                            tail.rows]).astype(np.float64)
        assert W.shape == (X.shape[1],) * 2
        orth = np.linalg.norm(W @ W.T - np.eye(len(W)), 2)
        form = complement_form(V, tail, k)
        atol = (orth * np.sum(x.astype(np.float64) ** 2, axis=1)
                + _evaluation_atol(x, form.rows, np.float32) + _evaluation_atol(x, V[:k], np.float32))
        out.append((V, k, form, atol))
    return out


def test_fast_path_complements_score_as_its_kept_rows():
    X, y = _relu_classes(400, 150, 3)
    x = _relu_classes(50, 150, 3, seed=1)[0]
    for V, k, form, atol in _fast_bounds(X, y, x):
        assert (form.weights < 0).any() and len(form.rows) < k
        got, want = subspace_scores(x, [form])[:, 0], subspace_scores(x, [V[:k]])[:, 0]
        np.testing.assert_array_less(np.abs(got - want), atol)


def test_fast_masc_predicts_from_complements_as_from_its_components():
    X, y = _relu_classes(400, 150, 3)
    x = _relu_classes(50, 150, 3, seed=1)[0]
    masc, _ = fit_spectral_probes(X, y, 0.99, method="fast")
    assert all((f.weights < 0).any() for f in masc._forms)
    direct = subspace_scores(x, masc.components_)
    atol = np.stack([a for *_, a in _fast_bounds(X, y, x)], axis=1)
    np.testing.assert_array_less(np.abs(subspace_scores(x, masc._forms) - direct), atol)
    sure = clear_argmax(direct, atol)
    assert sure.mean() > 0.9
    np.testing.assert_array_equal(masc.predict(x)[sure], masc.classes_[direct.argmax(1)][sure])
