"""Probes that read class information out of hidden-layer activations.

Pure numerics (NumPy + scikit-learn), no I/O and no torch.  Every probe
follows the scikit-learn estimator contract, so it can be cloned, put in a
pipeline and scored with ``score`` (mean accuracy, from ClassifierMixin).

X is an (n_samples, n_units) activation matrix (float16/32/64 accepted; the
estimators compute in float64 because the spectral probes are sensitive to
round-off), y are integer class labels.

The two spectral probes, MASC and VeLPIC, are both built from the uncentered
PCA of each class's activations; :func:`class_spectra` computes it once and
:func:`fit_spectral_probes` fits both probes from that single pass, either with
the float64 reference or with the fast path of :mod:`analyze.spectral` (float32
products, the same k per class, scores in float32).
"""

from __future__ import annotations

from numbers import Real
from typing import Any, Callable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis, QuadraticDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from .spectral import fast_class_spectra, fast_class_spectra_multi, subspace_scores

__all__ = [
    "PROBES",
    "MASC",
    "NearestMeanCosine",
    "QDA",
    "VeLPIC",
    "class_spectra",
    "fit_masc_family",
    "fit_spectral_probes",
    "knn_cosine",
    "lda",
    "logistic_regression",
    "make_probe",
]

# One (eigvals, V) pair per class: eigvals (r,) descending, V (r, d) orthonormal rows.
Spectrum = tuple[np.ndarray, np.ndarray]


# --------------------------------------------------------------------------
# Shared spectral helper
# --------------------------------------------------------------------------


def _uncentered_pca(Xc: np.ndarray) -> Spectrum:
    """Uncentered PCA of one class block Xc (n, d).

    Returns eigenvalues λ_i = s_i² (squared singular values of Xc, descending)
    and the right singular vectors V (r, d) for the numerically nonzero λ.
    Equivalent to PCA of [Xc; −Xc], whose mean is zero by construction.
    """
    n, d = Xc.shape
    if n == 0 or d == 0:
        return np.zeros(0), np.zeros((0, d))
    gram_side = n < d
    # Work on the smaller of XcXcᵀ (n×n) and XcᵀXc (d×d): same nonzero spectrum.
    M = Xc @ Xc.T if gram_side else Xc.T @ Xc
    lam, W = np.linalg.eigh(M)
    lam, W = lam[::-1], W[:, ::-1]  # eigh is ascending; we want descending
    tol = max(lam[0], 0.0) * max(n, d) * np.finfo(np.float64).eps
    keep = lam > tol  # drop numerically-zero directions so V stays orthonormal
    lam, W = lam[keep], W[:, keep]
    if gram_side:
        # Xc = U S Vᵀ  ⇒  V = Xcᵀ U S⁻¹ (columns), returned as rows.
        V = _reorthonormalise(Xc.T @ W / np.sqrt(lam)).T
    else:
        V = W.T
    return lam, np.ascontiguousarray(V)


def _reorthonormalise(Vt: np.ndarray) -> np.ndarray:
    """Orthonormalise the columns of Vt in order, keeping each column's sign.

    The Gram route squares the condition number, so columns with small s lose
    orthogonality at the eps·(s_max/s)² level.  QR is Gram–Schmidt in
    column order: leading (accurate) columns are unchanged up to round-off,
    trailing ones are cleaned against them.
    """
    Q, R = np.linalg.qr(Vt)
    return Q * np.where(np.diag(R) < 0, -1.0, 1.0)


def class_spectra(X: np.ndarray, y: np.ndarray, classes: Sequence) -> list[Spectrum]:
    """Per-class uncentered PCA: [(λ, V) for c in classes] with X_c = X[y == c].

    λ_i = s_i² are the squared singular values of X_c (descending) and V
    (r × d) the matching right singular vectors, numerically-zero λ dropped
    (λ ≤ λ_max · max(n_c, d) · eps).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    return [_uncentered_pca(X[y == c]) for c in classes]


# --------------------------------------------------------------------------
# Validation helpers shared by the custom probes
# --------------------------------------------------------------------------


def _validate_fit(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """check_X_y in float64 + classification targets; returns (X, y, classes)."""
    X, y = check_X_y(X, y, dtype=np.float64)
    check_classification_targets(y)
    return X, y, np.unique(y)


def _validate_predict(est: BaseEstimator, X: Any, dtype: Any = np.float64) -> np.ndarray:
    """check_is_fitted + check_array (float64 unless told) + feature-count check."""
    check_is_fitted(est)
    X = check_array(X, dtype=dtype)
    if X.shape[1] != est.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(est).__name__} is expecting "
            f"{est.n_features_in_} features as input."
        )
    return X


def _row_norms(X: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row of X."""
    return np.sqrt(np.einsum("ij,ij->i", X, X))


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 wherever den == 0 (cosine of a zero vector is defined as 0)."""
    out = np.zeros(np.broadcast_shapes(num.shape, den.shape))
    np.divide(num, den, out=out, where=den > 0)
    return out


class _ArgmaxClassifier(ClassifierMixin, BaseEstimator):
    """Base for probes whose prediction is classes_[argmax decision_function]."""

    def decision_function(self, X: Any) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, X: Any) -> np.ndarray:
        """ŷ = classes_[argmax_c decision_function(X)[:, c]]."""
        scores = self.decision_function(X)
        return self.classes_[np.argmax(scores, axis=1)]


# --------------------------------------------------------------------------
# MASC
# --------------------------------------------------------------------------


def _check_n_components(n: Any) -> float:
    """Accept a fraction in (0, 1) or a count >= 1; anything else is a ValueError."""
    ok = isinstance(n, Real) and not isinstance(n, bool) and np.isfinite(n) and n > 0
    if not ok:
        raise ValueError(
            f"n_components: expected a fraction in (0, 1) or a count >= 1, got {n!r}"
        )
    return float(n)


def _n_kept(eigvals: np.ndarray, n: float) -> int:
    """Number of components kept for one class.

    0 < n < 1: k = #{i : Σ_{j≤i} λ_j / Σ_j λ_j ≤ n} + 1 (the smallest k whose
    explained fraction exceeds n); n ≥ 1: k = int(n).  Capped at len(λ).
    """
    r = len(eigvals)
    if r == 0:
        return 0
    if n >= 1:
        return min(int(n), r)
    ratio = np.cumsum(eigvals) / eigvals.sum()
    return min(int(np.count_nonzero(ratio <= n)) + 1, r)


class MASC(_ArgmaxClassifier):
    """Minimum Angle Subspace Classifier.

    Each class c is summarised by the span of its top-k_c uncentered
    principal directions B_c (k_c × d, orthonormal rows).  A sample is scored
    by the cosine of its angle to each subspace,
        s_c(x) = ‖B_c x‖ / ‖x‖      (0 when ‖x‖ = 0),
    and assigned to the class with the smallest angle (largest s_c).

    Parameters
    ----------
    n_components : float or int, default 0.99
        Fraction of (uncentered) energy to keep per class when in (0, 1),
        or a fixed number of components when >= 1.
    """

    def __init__(self, n_components: float = 0.99):
        self.n_components = n_components

    @classmethod
    def from_spectra(
        cls, spectra: Sequence[Spectrum], classes: Any, X: Any, **params: Any
    ) -> "MASC":
        """Fitted MASC from precomputed :func:`class_spectra` (X gives n_features_in_)."""
        return cls(**params)._fit_from_spectra(spectra, classes, X)

    def _fit_from_spectra(
        self, spectra: Sequence[Spectrum], classes: Any, X: Any, ks: Any = None
    ) -> "MASC":
        """Keep the top-k_c directions of each class's spectrum (k_c from the
        spectrum unless given); returns self."""
        n = _check_n_components(self.n_components)
        X = check_array(X, dtype=None)
        self.classes_ = np.asarray(classes)
        self.n_features_in_ = X.shape[1]
        if ks is None:
            ks = [_n_kept(lam, n) for lam, _ in spectra]
        self.n_components_ = np.asarray(ks, dtype=int)
        self.components_ = [V[:k].copy() for (_, V), k in zip(spectra, ks)]
        return self

    def fit(self, X: Any, y: Any) -> "MASC":
        """Fit per-class subspaces from the uncentered PCA of each class."""
        _check_n_components(self.n_components)  # fail before the spectral pass
        X, y, classes = _validate_fit(X, y)
        return self._fit_from_spectra(class_spectra(X, y, classes), classes, X)

    def decision_function(self, X: Any) -> np.ndarray:
        """(n_samples, n_classes) scores s_c(x) = ‖B_c x‖ / ‖x‖ ∈ [0, 1].

        Computed in the components' precision: float64 for `fit`, float32 (one
        product for all classes) for the fast path of `fit_spectral_probes`.
        """
        if any(B.dtype != np.float64 for B in getattr(self, "components_", [])):
            X = _validate_predict(self, X, dtype=np.float32)
            proj = np.sqrt(subspace_scores(X, self.components_))
            norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
            return _safe_divide(proj, norms[:, None])
        X = _validate_predict(self, X)
        proj = np.column_stack([_row_norms(X @ B.T) for B in self.components_])
        return _safe_divide(proj, _row_norms(X)[:, None])


# --------------------------------------------------------------------------
# VeLPIC
# --------------------------------------------------------------------------


class VeLPIC(_ArgmaxClassifier):
    """Linear probe from each class's top uncentered principal direction.

    v_c is the unit top right singular vector of X_c, sign-fixed so that
    mean_i(x_i · v_c) ≥ 0 over ALL training rows (an SVD vector's sign is
    arbitrary; this makes "positive" mean "along the data").  The score is
    the raw projection s_c(x) = x · v_c (no bias, no normalisation).
    """

    def __init__(self) -> None:
        pass

    @classmethod
    def from_spectra(
        cls, spectra: Sequence[Spectrum], classes: Any, X: Any, **params: Any
    ) -> "VeLPIC":
        """Fitted VeLPIC from precomputed :func:`class_spectra` and the training X."""
        return cls(**params)._fit_from_spectra(spectra, classes, X)

    def _fit_from_spectra(
        self, spectra: Sequence[Spectrum], classes: Any, X: Any
    ) -> "VeLPIC":
        """coef_[c] = ±V_c[0], sign chosen on the full training X; returns self."""
        X = check_array(X, dtype=(np.float64, np.float32))
        coef = np.zeros((len(spectra), X.shape[1]))
        for i, (_, V) in enumerate(spectra):
            if len(V):  # an all-zero class has no direction: keep a zero row
                coef[i] = V[0]
        # Sign rule: the mean projection of the whole training set must be >= 0
        # (mean(X v) = mean(X) v: one pass over X, accumulated in float64).
        flip = (X.mean(axis=0, dtype=np.float64) @ coef.T) < 0
        coef[flip] *= -1
        self.classes_ = np.asarray(classes)
        self.n_features_in_ = X.shape[1]
        self.coef_ = coef
        return self

    def fit(self, X: Any, y: Any) -> "VeLPIC":
        """Fit v_c for every class in classes_ (one uncentered PCA per class)."""
        X, y, classes = _validate_fit(X, y)
        return self._fit_from_spectra(class_spectra(X, y, classes), classes, X)

    def decision_function(self, X: Any) -> np.ndarray:
        """(n_samples, n_classes) raw scores X @ coef_ᵀ."""
        X = _validate_predict(self, X)
        return X @ self.coef_.T


SPECTRAL_METHODS = ("exact", "fast")


def fit_spectral_probes(
    X: Any, y: Any, n_components: float = 0.99, *, method: str = "exact",
    device: str | None = None,
) -> tuple[MASC, VeLPIC]:
    """Fit MASC and VeLPIC from ONE shared per-class decomposition.

    method="exact": :func:`class_spectra` in float64; the result equals
    ``MASC(n_components).fit(X, y)`` and ``VeLPIC().fit(X, y)``.
    method="fast": :func:`analyze.spectral.fast_class_spectra` (float32 products,
    float64 where k_c could change, the same k_c per class); MASC then keeps float32
    components and scores in float32. `device` runs the kernels on torch there
    ("cuda", "cpu"); None uses NumPy.
    """
    _check_n_components(n_components)
    if method not in SPECTRAL_METHODS:
        raise ValueError(f"method: expected one of exact, fast, got {method!r}")
    if method == "exact":
        X, y, classes = _validate_fit(X, y)
        spectra, ks = class_spectra(X, y, classes), None
    else:
        X, y = check_X_y(X, y, dtype=np.float32)
        check_classification_targets(y)
        classes = np.unique(y)
        spectra, ks = fast_class_spectra(X, y, classes, float(n_components), device=device)
    masc = MASC(n_components=n_components)._fit_from_spectra(spectra, classes, X, ks)
    return masc, VeLPIC.from_spectra(spectra, classes, X)


def fit_masc_family(
    X: Any, y: Any, ns: Sequence[float], *, method: str = "exact", device: str | None = None,
) -> tuple[list[MASC], VeLPIC]:
    """MASC at every n of `ns` (and VeLPIC) from ONE per-class decomposition: each
    equals ``fit_spectral_probes(X, y, n, method=method)[0]``, at the cost of one."""
    for n in ns:
        _check_n_components(n)
    if method not in SPECTRAL_METHODS:
        raise ValueError(f"method: expected one of exact, fast, got {method!r}")
    if method == "exact":
        X, y, classes = _validate_fit(X, y)
        spectra = class_spectra(X, y, classes)
        ks = [None] * len(ns)
    else:
        X, y = check_X_y(X, y, dtype=np.float32)
        check_classification_targets(y)
        classes = np.unique(y)
        spectra, ks = fast_class_spectra_multi(X, y, classes, [float(n) for n in ns], device=device)
    family = [MASC(n_components=n)._fit_from_spectra(spectra, classes, X, k) for n, k in zip(ns, ks)]
    return family, VeLPIC.from_spectra(spectra, classes, X)


# --------------------------------------------------------------------------
# Nearest class mean (cosine)
# --------------------------------------------------------------------------


class NearestMeanCosine(_ArgmaxClassifier):
    """Nearest class mean by cosine similarity.

    μ_c = mean of X_c;  s_c(x) = x·μ_c / (‖x‖ ‖μ_c‖)  (0 if either norm is 0);
    prediction = argmax_c s_c(x).
    """

    def __init__(self) -> None:
        pass

    def fit(self, X: Any, y: Any) -> "NearestMeanCosine":
        """Store the class means μ_c in classes_ order."""
        X, y, classes = _validate_fit(X, y)
        self.classes_ = classes
        self.n_features_in_ = X.shape[1]
        self.means_ = np.stack([X[y == c].mean(axis=0) for c in classes])
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """(n_samples, n_classes) cosines cos(x, μ_c)."""
        X = _validate_predict(self, X)
        den = _row_norms(X)[:, None] * _row_norms(self.means_)[None, :]
        return _safe_divide(X @ self.means_.T, den)


# --------------------------------------------------------------------------
# scikit-learn baselines and registry
# --------------------------------------------------------------------------


def knn_cosine(k: int = 5) -> KNeighborsClassifier:
    """k-nearest neighbours under cosine distance (brute force: exact, no tree)."""
    return KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")


def logistic_regression(random_state: int | None = 0) -> Pipeline:
    """Standardise then multinomial logistic regression (lbfgs default)."""
    return make_pipeline(
        StandardScaler(),
        LogisticRegression(max_iter=300, random_state=random_state),
    )


def lda() -> LinearDiscriminantAnalysis:
    """scikit-learn's linear discriminant analysis with its defaults (P1's baseline)."""
    return LinearDiscriminantAnalysis()


class QDA(ClassifierMixin, BaseEstimator):
    """scikit-learn's quadratic discriminant analysis with its defaults (P1's baseline),
    where they are defined.

    The default (`solver="svd"`, no regularisation) needs a full-rank covariance in every
    class: more samples than units and no constant unit. Hidden layers break that often
    (dead ReLUs, classes smaller than the layer), and scikit-learn then refuses to fit;
    such a fit is done instead by the remedy its error names, `solver="eigen"` with
    shrinkage: Ledoit-Wolf's (`"auto"`), or, where that estimate is too small to make a
    class covariance definite (a unit constant within a class of many samples), the
    smallest of `SHRINKAGES` that does. `shrunk_` is the shrinkage used (None: none).
    """

    SHRINKAGES = ("auto", 1e-3, 1e-2, 1e-1, 1.0)

    def fit(self, X: Any, y: Any) -> "QDA":
        X, y = check_X_y(X, y)
        self.shrunk_ = None
        try:
            self.estimator_ = QuadraticDiscriminantAnalysis().fit(X, y)
        except np.linalg.LinAlgError:
            for shrinkage in self.SHRINKAGES:
                try:
                    self.estimator_ = QuadraticDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage).fit(X, y)
                except np.linalg.LinAlgError:
                    if shrinkage == self.SHRINKAGES[-1]:
                        raise
                    continue
                self.shrunk_ = shrinkage
                break
        self.classes_ = self.estimator_.classes_
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(X)


PROBES: dict[str, Callable[..., Any]] = {
    "masc": MASC,
    "velpic": VeLPIC,
    "ncm": NearestMeanCosine,
    "knn": knn_cosine,
    "logreg": logistic_regression,
    "lda": lda,
    "qda": QDA,
}


def make_probe(name: str, **params: Any) -> Any:
    """Build an unfitted probe by registry name, e.g. make_probe("masc", n_components=5)."""
    try:
        factory = PROBES[name]
    except (KeyError, TypeError):
        raise ValueError(f"probe: expected one of {', '.join(PROBES)}, got {name!r}") from None
    return factory(**params)
