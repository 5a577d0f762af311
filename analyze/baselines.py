"""The scikit-learn baselines among the probes: k-NN (cosine), logistic regression,
LDA and QDA, as P1 and the papers' comparisons fit them.

Factories return unfitted scikit-learn estimators (the straightforward versions);
`FAST` holds, by probe name, the fast ones the analysis tasks fit instead
(`analyze.knn`, `analyze.linear`, `analyze.discriminant`: the same predictions from
blocked float32 products and shared class moments, tested against these). `QDA` wraps
the fast default QDA with the remedy scikit-learn's error names where its defaults cannot
fit. `analyze.probes.make_probe` builds the factories' estimators by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis, QuadraticDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from .discriminant import LinearDiscriminantAnalysis as FastLDA
from .discriminant import QuadraticDiscriminantAnalysis as FastQDA
from .knn import KNeighborsCosine
from .linear import AdamLogisticRegression, StandardizedLogisticRegression

__all__ = ["FAST", "QDA", "fast_logistic_regression", "knn_cosine", "lda", "logistic_regression"]


def knn_cosine(k: int = 5) -> KNeighborsClassifier:
    """k-nearest neighbours under cosine distance (brute force: exact, no tree).

    Parameters
    ----------
    k : int, default 5
        Number of neighbours.

    Returns
    -------
    KNeighborsClassifier
        Unfitted.
    """
    return KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")


def logistic_regression(random_state: int | None = 0) -> Pipeline:
    """Standardise, then multinomial logistic regression (lbfgs, at most 300 iterations).

    Parameters
    ----------
    random_state : int or None, default 0
        The regression's seed.

    Returns
    -------
    Pipeline
        Unfitted: StandardScaler, then LogisticRegression.
    """
    return make_pipeline(
        StandardScaler(),
        LogisticRegression(max_iter=300, random_state=random_state),
    )


def lda() -> LinearDiscriminantAnalysis:
    """scikit-learn's linear discriminant analysis with its defaults (P1's baseline), unfitted."""
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
    smallest of `SHRINKAGES` that does; where none does because the activations are
    small (the solver's rank check is absolute), the same on the units divided by their
    RMS spread (`scale_`; that solver is not scale-invariant, so this is a last resort
    that keeps the task from failing). No parameters.

    Attributes
    ----------
    estimator_ : QuadraticDiscriminantAnalysis
        The fitted scikit-learn estimator.
    shrunk_ : str, float or None
        The shrinkage used (None: none).
    scale_ : float
        The one factor the remedy's fit and predictions multiply every unit by (1.0
        where the default fitted).
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    n_features_in_ : int
        Number of units seen in `fit`.
    """

    _parameter_constraints: dict = {}
    SHRINKAGES = ("auto", 1e-3, 1e-2, 1e-1, 1.0)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> "QDA":
        """Fit with scikit-learn's defaults (by `analyze.discriminant`, float32 X kept as
        it is), or its shrinkage remedy where they fail; returns self."""
        X, y = validate_data(self, X, y, dtype=(np.float32, np.float64))
        self.shrunk_, self.scale_ = None, 1.0
        try:
            self.estimator_ = FastQDA().fit(X, y)
        except np.linalg.LinAlgError:
            self.estimator_, self.shrunk_, self.scale_ = self._remedy(X, y)
        self.classes_ = self.estimator_.classes_
        return self

    def _remedy(self, X: np.ndarray, y: np.ndarray) -> tuple:
        """(estimator, shrinkage, scale): the first of `SHRINKAGES` that fits, on X as it
        is, else on X / (its RMS deviation from the mean): the eigen solver's rank check
        (eigenvalues above an absolute tol) refuses a layer of small activations at
        every shrinkage. A last resort rather than a crash of the task: that solver's
        predictions change with the scale of the units."""
        found = self._shrunk(X, y)
        if found is not None:
            return (*found, 1.0)
        spread = float(np.sqrt(np.mean(np.var(X, axis=0, dtype=np.float64))))  # (only here)
        scale = 1.0 / spread if 0 < spread != 1.0 else 1.0
        found = self._shrunk(X * X.dtype.type(scale), y) if scale != 1.0 else None
        if found is None:
            raise np.linalg.LinAlgError(
                "QDA: no class covariance of this layer is definite at any shrinkage of "
                f"{self.SHRINKAGES}, on the units as they are or rescaled")
        return (*found, scale)

    def _shrunk(self, X: np.ndarray, y: np.ndarray) -> tuple | None:
        """(estimator, shrinkage) for the first of `SHRINKAGES` that fits X; None."""
        for shrinkage in self.SHRINKAGES:
            try:
                return QuadraticDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage).fit(X, y), shrinkage
            except np.linalg.LinAlgError:
                continue
        return None

    def predict(self, X: Any) -> np.ndarray:
        """The fitted estimator's predictions."""
        check_is_fitted(self, "estimator_")
        X = validate_data(self, X, reset=False, dtype=(np.float32, np.float64))
        return self.estimator_.predict(X if self.scale_ == 1.0 else X * X.dtype.type(self.scale_))


def fast_logistic_regression(random_state: int | None = 0, solver: str = "lbfgs") -> Any:
    """The logistic-regression probe the tasks fit: `logistic_regression`'s optimum by
    `analyze.linear.StandardizedLogisticRegression` (at most 300 iterations), or, with
    ``solver="adam"``, P1's own probe (`analyze.linear.AdamLogisticRegression`: a linear
    layer, Adam 1e-3, 20 epochs, batches of 128, seeded by `random_state`)."""
    if solver == "adam":
        return AdamLogisticRegression(random_state=random_state)
    if solver != "lbfgs":
        raise ValueError(f"solver: expected lbfgs or adam, got {solver!r}")
    return StandardizedLogisticRegression(max_iter=300)


# Probe name -> the fast estimator's factory (same parameters as the straightforward one's).
FAST = {"knn": lambda k=5: KNeighborsCosine(n_neighbors=k), "logreg": fast_logistic_regression,
        "lda": FastLDA, "qda": QDA}
