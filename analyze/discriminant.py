"""LDA and QDA with scikit-learn's default solutions, from the shared class moments.

`LinearDiscriminantAnalysis` follows scikit-learn's `solver="svd"` step by step, with
the SVD of the n × d centred, scaled data replaced by the eigendecomposition of its
d × d Gram (the pooled within-class scatter, `analyze.moments`): the same singular
values (square roots of the eigenvalues), the same rank rule (σ > tol), the same
between-class SVD and the same coef_ and intercept_. `QuadraticDiscriminantAnalysis`
is scikit-learn's default QDA (`solver="svd"`, maximum-likelihood class covariances
S_c / n_c, refused where one has an eigenvalue at or below tol): its log-posterior is
computed from a Cholesky factor per class (log det from its diagonal, the Mahalanobis
norm as ‖L_c⁻¹(x - μ_c)‖², one float32 triangular solve per row block: half the
multiplications of scikit-learn's product with the rotation) instead of an SVD of
each class's rows. The scatters are float32 products (round-off ~1e-7 of their norm),
the factorisations float64: the predictions are scikit-learn's but for rows whose two
best classes are within that round-off of each other.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
from scipy.linalg.blas import strsm
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .moments import class_moments

__all__ = ["LinearDiscriminantAnalysis", "QuadraticDiscriminantAnalysis", "ROWS"]

ROWS = 8192  # rows per block of a prediction
TOL = 1e-4  # scikit-learn's default `tol` of both


def _fit_input(est: BaseEstimator, X: Any, y: Any):
    X, y = validate_data(est, X, y, dtype=np.float32, order="C")
    check_classification_targets(y)
    moments = class_moments(X, y)
    if len(moments.classes) < 2:
        raise ValueError(f"y: expected at least 2 classes, got {len(moments.classes)}")
    return X, moments


class _Discriminant(ClassifierMixin, BaseEstimator):
    _parameter_constraints: dict = {}

    def predict(self, X: Any) -> np.ndarray:
        """classes_[argmax decision_function]."""
        return self.classes_[np.argmax(self._scores(X), axis=1)]

    def decision_function(self, X: Any) -> np.ndarray:
        """(n_samples, n_classes) scores (scikit-learn's, but 2-D for two classes too)."""
        return self._scores(X)


class LinearDiscriminantAnalysis(_Discriminant):
    """scikit-learn's `LinearDiscriminantAnalysis()` (solver "svd", tol 1e-4), its SVD of
    the centred data done as an eigendecomposition of the shared within-class scatter.

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes, n_features)
    intercept_ : ndarray of shape (n_classes,)
    means_, priors_, xbar_, scalings_ : as scikit-learn's
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    """

    def __init__(self) -> None:
        pass

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> "LinearDiscriminantAnalysis":
        """Fit from the class moments of (X, y); returns self."""
        _, m = _fit_input(self, X, y)
        n, K = m.n, len(m.classes)
        self.classes_, self.priors_, self.means_ = m.classes, m.counts / n, m.means
        self.xbar_ = self.priors_ @ self.means_
        W = m.within()
        std = np.sqrt(np.diag(W) / n)
        std[std == 0] = 1.0
        lam, V = np.linalg.eigh(W / np.outer(std, std) / n)  # Gram of sqrt(1/n) Xc / std
        S, V = np.sqrt(np.clip(lam[::-1], 0, None)), V[:, ::-1]
        rank = int(np.sum(S > TOL))
        scalings = (V[:, :rank] / std[:, None]) / S[:rank]
        centred = self.means_ - self.xbar_
        Xm = (np.sqrt(n * self.priors_ / (K - 1))[:, None] * centred) @ scalings
        _, S2, Vt2 = scipy.linalg.svd(Xm, full_matrices=False)
        self.scalings_ = scalings @ Vt2.T[:, : int(np.sum(S2 > TOL * S2[0]))]
        coef = centred @ self.scalings_
        self.intercept_ = -0.5 * np.sum(coef**2, axis=1) + np.log(self.priors_)
        self.coef_ = coef @ self.scalings_.T
        self.intercept_ -= self.xbar_ @ self.coef_.T
        return self

    def _scores(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, dtype=(np.float32, np.float64), reset=False)
        out = np.empty((len(X), len(self.classes_)))
        for i in range(0, len(X), ROWS):
            out[i:i + ROWS] = X[i:i + ROWS].astype(np.float64) @ self.coef_.T
        return out + self.intercept_


class QuadraticDiscriminantAnalysis(_Discriminant):
    """scikit-learn's `QuadraticDiscriminantAnalysis()` (solver "svd", no regularisation,
    tol 1e-4) from Cholesky factors of the shared class scatters.

    Raises `numpy.linalg.LinAlgError` in `fit` where scikit-learn does: a class
    covariance S_c / n_c with an eigenvalue at or below tol (checked as the failure of a
    Cholesky factorisation of S_c / n_c - tol I).

    Attributes
    ----------
    means_, priors_ : as scikit-learn's
    factors_ : list of float32 ndarray (n_features, n_features)
        L_c per class (Fortran order), the Cholesky factor of the class covariance.
    log_dets_ : ndarray of shape (n_classes,)
        log det of each class covariance.
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    """

    def __init__(self) -> None:
        pass

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> "QuadraticDiscriminantAnalysis":
        """Fit from the class moments of (X, y); returns self."""
        _, m = _fit_input(self, X, y)
        self.classes_, self.priors_, self.means_ = m.classes, m.counts / m.n, m.means
        factors, log_dets = [], []
        for label, S, count in zip(m.classes, m.scatters, m.counts):
            cov = S.astype(np.float64) / count
            try:
                np.linalg.cholesky(cov - TOL * np.eye(len(cov)))
                L = np.linalg.cholesky(cov)
            except np.linalg.LinAlgError:
                raise np.linalg.LinAlgError(
                    f"The covariance matrix of class {label} is not full rank (an eigenvalue "
                    f"at or below tol={TOL}, as scikit-learn's svd solver decides)") from None
            factors.append(np.asfortranarray(L, dtype=np.float32))
            log_dets.append(2 * np.log(np.diag(L)).sum())
        self.factors_, self.log_dets_ = factors, np.asarray(log_dets)
        return self

    def _scores(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "factors_")
        X = validate_data(self, X, dtype=np.float32, order="C", reset=False)
        norm2 = np.empty((len(X), len(self.classes_)))
        for c, (mu, F) in enumerate(zip(self.means_, self.factors_)):
            mu = mu.astype(np.float32)
            for i in range(0, len(X), ROWS):
                Xm = X[i:i + ROWS] - mu  # centred first: float32 keeps the small part
                # Z = Xm L⁻ᵀ, as Zᵀ = L⁻¹ Xmᵀ: one triangular solve in place (half a product)
                Z = strsm(1.0, F, Xm.T, side=0, lower=1, trans_a=0, overwrite_b=1).T
                norm2[i:i + ROWS, c] = np.einsum("ij,ij->i", Z, Z, dtype=np.float64)
        return -0.5 * (norm2 + self.log_dets_) + np.log(self.priors_)
