"""The fast baselines (analyze.knn, analyze.linear, analyze.discriminant, analyze.moments)
against scikit-learn's estimators on small seeded data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis, QuadraticDiscriminantAnalysis
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from analyze import discriminant, knn, moments
from analyze.baselines import FAST, QDA, fast_logistic_regression
from analyze.linear import AdamLogisticRegression, StandardizedLogisticRegression

EPS32 = np.finfo(np.float32).eps


def _relu(n: int, d: int, k: int = 4, seed: int = 0, spread: float = 1.0):
    """Overlapping classes of ReLU-like float32 rows (no two rows equal)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = rng.normal(size=(k, d))[y] * spread + rng.normal(size=(n, d))
    return np.maximum(X, 0).astype(np.float32), y


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 20 rows (a last one of 10) and groups of 3 entries, so that k = 1 and 5
    search the groups under their bound, k = 8 (above the 7 groups of a tile) every entry."""
    monkeypatch.setattr(knn, "BLOCK", 20)
    monkeypatch.setattr(knn, "GROUP", 3)


@pytest.mark.parametrize("k", [1, 5, 8])
def test_knn_equals_scikit_learns_brute_cosine(small_blocks, k):
    X, y = _relu(120, 16, seed=k)
    train = np.arange(120) < 90
    ref = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(X[train], y[train])
    ours = knn.KNeighborsCosine(n_neighbors=k).fit(X[train], y[train])
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    np.testing.assert_array_equal(ours.predict_with_fit_rows(X, train), ref.predict(X))
    dist, ind = ours.kneighbors(X)
    ref_dist, ref_ind = ref.kneighbors(X)
    np.testing.assert_array_equal(ind, ref_ind)
    # distances agree to float32 round-off of a d-term product of unit rows
    np.testing.assert_allclose(dist, ref_dist, atol=4 * 16 * EPS32)


def test_knn_at_its_own_block_and_group_sizes_equals_scikit_learns():
    # two training blocks, the second (100 rows) padded to whole groups; k above and
    # below the 2 groups of that padded tile
    X, y = _relu(knn.BLOCK + 100 + 300, 12, seed=3)
    train = np.arange(len(X)) < knn.BLOCK + 100
    for k in (1, 5):
        ref = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(X[train], y[train])
        ours = knn.KNeighborsCosine(n_neighbors=k).fit(X[train], y[train])
        # rows whose k + 1 nearest are apart by more than the products' round-off
        ref_dist, ref_ind = ref.kneighbors(X, n_neighbors=k + 1)
        clear = np.diff(ref_dist, axis=1).min(axis=1) > 8 * 12 * EPS32
        assert clear.mean() > 0.9
        np.testing.assert_array_equal(ours.kneighbors(X)[1][clear], ref_ind[clear, :k])
        np.testing.assert_array_equal(ours.predict_with_fit_rows(X, train)[clear], ref.predict(X)[clear])


def test_knn_breaks_vote_ties_as_scikit_learn_and_distance_ties_by_index(small_blocks):
    # a zero row is at distance 1 from everything: every training row ties with it
    X, y = _relu(40, 6, k=3, seed=1)
    X[5] = 0.0
    queries = np.vstack([np.zeros((1, 6), np.float32), X[:10]])
    ours = knn.KNeighborsCosine(n_neighbors=4).fit(X, y)
    dist, ind = ours.kneighbors(queries[:1])
    np.testing.assert_array_equal(ind[0], [0, 1, 2, 3])  # all at distance 1: lowest indices
    ref = KNeighborsClassifier(n_neighbors=4, metric="cosine", algorithm="brute").fit(X, y)
    # an even k: 2-2 votes happen and go to the smallest label in both
    np.testing.assert_array_equal(ours.predict(queries[1:]), ref.predict(queries[1:]))


def test_knn_refuses_a_mask_that_is_not_the_training_set():
    X, y = _relu(30, 4)
    est = knn.KNeighborsCosine(3).fit(X[:20], y[:20])
    with pytest.raises(ValueError, match="fit_rows"):
        est.predict_with_fit_rows(X, np.arange(30) >= 10)
    assert clone(est).get_params() == {"n_neighbors": 3}


def test_class_moments_are_the_float64_scatters_and_shared_only_inside_the_context():
    X, y = _relu(300, 8, seed=2)
    m = moments.class_moments(X, y)
    for c, S in zip(m.classes, m.scatters):
        Xc = X[y == c].astype(np.float64)
        ref = (Xc - Xc.mean(0)).T @ (Xc - Xc.mean(0))
        np.testing.assert_allclose(S, ref, rtol=0, atol=len(Xc) * 4 * EPS32 * np.abs(ref).max())
    Xd = X.astype(np.float64)
    np.testing.assert_allclose(m.total(), (Xd - Xd.mean(0)).T @ (Xd - Xd.mean(0)),
                               atol=len(X) * 4 * EPS32 * np.abs(m.total()).max())
    assert moments.class_moments(X, y) is not moments.class_moments(X, y)
    with moments.shared_moments():
        first = moments.class_moments(X, y)
        assert moments.class_moments(X, y) is first
        assert moments.class_moments(X, y[::-1].copy()) is not first
    assert moments.class_moments(X, y) is not first


def test_lda_equals_scikit_learns_and_handles_a_constant_unit():
    X, y = _relu(2000, 12, seed=3, spread=0.4)
    X[:, 4] = 0.0  # a dead unit: scikit-learn's rank rule drops it
    ref = LinearDiscriminantAnalysis().fit(X.astype(np.float64), y)
    ours = FAST["lda"]().fit(X, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-4, atol=1e-4 * np.abs(ref.coef_).max())
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, atol=1e-4 * np.abs(ref.intercept_).max())
    scores = ref.decision_function(X)
    top2 = np.sort(scores, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-3 * np.abs(scores).max()  # not a near-tie
    np.testing.assert_array_equal(ours.predict(X)[clear], ref.predict(X)[clear])
    assert np.mean(ours.predict(X) == ref.predict(X)) >= 0.999


def test_qda_equals_scikit_learns_default_and_refuses_where_it_does():
    X, y = _relu(3000, 6, k=3, seed=4, spread=0.5)
    ref = QuadraticDiscriminantAnalysis().fit(X.astype(np.float64), y)
    ours = discriminant.QuadraticDiscriminantAnalysis().fit(X, y)
    scores = ref.decision_function(X)
    np.testing.assert_allclose(ours.decision_function(X), scores, rtol=1e-4, atol=1e-4 * np.abs(scores).max())
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    X[y == 1, 2] = 0.5  # constant within class 1: scikit-learn's svd solver refuses
    with pytest.raises(np.linalg.LinAlgError):
        QuadraticDiscriminantAnalysis().fit(X, y)
    with pytest.raises(np.linalg.LinAlgError):
        discriminant.QuadraticDiscriminantAnalysis().fit(X, y)
    probe = QDA().fit(X, y)  # the probe takes the remedy: shrinkage, through scikit-learn
    assert probe.shrunk_ == "auto"
    want = QuadraticDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(X, y).predict(X)
    np.testing.assert_array_equal(probe.predict(X), want)


def test_qda_remedy_does_not_depend_on_the_scale_of_the_units():
    """A layer of small activations: scikit-learn's eigen solver refuses it at every
    shrinkage (its rank check is absolute); the probe fits the units divided by their
    RMS spread instead of failing the task."""
    X, y = _relu(3000, 6, k=3, seed=4, spread=0.5)
    X[y == 1, 2] = 0.5  # the default refuses: the remedy is taken
    assert QDA().fit(X, y).scale_ == 1.0  # where shrinkage works, as before
    small = X * np.float32(1e-4)
    with pytest.raises(np.linalg.LinAlgError):
        QuadraticDiscriminantAnalysis(solver="eigen", shrinkage=1.0).fit(small, y)
    probe = QDA().fit(small, y)
    spread = np.sqrt(np.mean(np.var(small, axis=0, dtype=np.float64)))
    assert probe.shrunk_ == "auto" and probe.scale_ == pytest.approx(1 / spread)
    rescaled = small * np.float32(probe.scale_)
    want = QuadraticDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(rescaled, y)
    np.testing.assert_array_equal(probe.predict(small), want.predict(rescaled))


def test_logistic_regression_reaches_scikit_learns_optimum():
    X, y = _relu(1500, 20, k=3, seed=5, spread=0.3)
    X[:, 7] = 1.0  # constant: StandardScaler's scale 1
    tight = dict(C=1.0, tol=1e-10, max_iter=10_000)
    ref = make_pipeline(StandardScaler(), LogisticRegression(**tight)).fit(X.astype(np.float64), y)
    ours = StandardizedLogisticRegression(**tight).fit(X, y)
    coef = ours.coef_ * ours.scale_  # on the standardised units, as scikit-learn's
    lr = ref[-1]
    # the same optimum: the float32 products leave ~sqrt(n) eps32 of relative round-off
    tol = 1e-4 * np.abs(lr.coef_).max()
    np.testing.assert_allclose(coef - coef.mean(0), lr.coef_ - lr.coef_.mean(0), atol=tol)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


def test_logistic_regression_warns_at_its_iteration_limit_and_clones():
    X, y = _relu(300, 10, k=3, seed=6)
    with pytest.warns(ConvergenceWarning):
        StandardizedLogisticRegression(max_iter=1).fit(X, y)
    assert clone(fast_logistic_regression()).get_params()["max_iter"] == 300
    assert isinstance(fast_logistic_regression(solver="adam"), AdamLogisticRegression)


def test_adam_probe_is_the_authors_torch_loop():
    """The NumPy Adam probe takes the same steps as torch's Linear + Adam + cross-entropy
    from the same initialisation and batches (float32 round-off per step)."""
    X, y = _relu(256, 8, k=3, seed=7)
    est = AdamLogisticRegression(epochs=2, batch_size=64, random_state=3).fit(X, y)
    rng = np.random.default_rng(3)
    bound = 1 / np.sqrt(8)
    layer = torch.nn.Linear(8, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(rng.uniform(-bound, bound, (3, 8)).astype(np.float32)))
        layer.bias.copy_(torch.from_numpy(rng.uniform(-bound, bound, 3).astype(np.float32)))
    opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(2):
        order = rng.permutation(len(X))
        for i in range(0, len(X), 64):
            idx = torch.from_numpy(order[i:i + 64])
            opt.zero_grad()
            torch.nn.functional.cross_entropy(layer(Xt[idx]), yt[idx]).backward()
            opt.step()
    np.testing.assert_allclose(est.coef_, layer.weight.detach().numpy(), atol=8 * 1e-3 * 1e-3 + 1e-6)
    np.testing.assert_allclose(est.intercept_, layer.bias.detach().numpy(), atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert est.score(X, y) > 1 / 3
