"""Probes that read class information out of hidden-layer activations.

Every probe is a scikit-learn estimator: it declares its parameters'
constraints (`_parameter_constraints`), validates its input with scikit-learn's
`validate_data`, can be cloned, put in a pipeline and scored with `score` (mean
accuracy, from ClassifierMixin). X is an (n_samples, n_units) activation matrix
(float16/32/64 accepted; the estimators compute in float64 because the spectral probes
are sensitive to round-off), y are class labels.

The two spectral probes, MASC and VeLPIC, are both built from the uncentered PCA of
each class's activations (`analyze.spectral`); `fit_spectral_probes` fits both from one
decomposition, by the float64 reference or by the fast path (float32 products, the same
k per class, scores in float32). Pure numerics, no I/O and no torch of their own.
"""

from __future__ import annotations

from numbers import Real
from typing import Any, Callable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import InvalidParameterError, Interval, StrOptions, make_constraint
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from stores.config import PROBES as PROBE_NAMES
from stores.config import SPECTRAL_METHODS

from .baselines import QDA, knn_cosine, lda, logistic_regression
from .spectral import Spectrum, class_spectra, fast_class_spectra_multi, leading_spectra, n_kept
from .subspace import SCORE_ROWS, Tail, complement_form, subspace_scores

__all__ = [
    "MASC",
    "PROBES",
    "QDA",
    "NearestMeanCosine",
    "VeLPIC",
    "fit_masc_family",
    "fit_spectral_probes",
    "knn_cosine",
    "lda",
    "logistic_regression",
    "make_probe",
]

# Each parameter's constraints, declared as scikit-learn's estimators declare theirs,
# and what an error says the parameter accepts (in the configs' wording).
CONSTRAINTS = {
    "n_components": [Interval(Real, 0, None, closed="neither")],
    "method": [StrOptions(set(SPECTRAL_METHODS))],
}
_EXPECTED = {
    "n_components": "a fraction in (0, 1) or a count >= 1",
    "method": f"one of {', '.join(sorted(SPECTRAL_METHODS))}",
}


def _check_params(**params: Any) -> None:
    """scikit-learn's parameter check against `CONSTRAINTS`, its error worded as the
    configs word theirs: InvalidParameterError (a ValueError) "NAME: expected …, got …"."""
    for name, value in params.items():
        if not any(make_constraint(c).is_satisfied_by(value) for c in CONSTRAINTS[name]):
            raise InvalidParameterError(f"{name}: expected {_EXPECTED[name]}, got {value!r}")


def _validate_fit(est: BaseEstimator, X: Any, y: Any, dtype: Any = np.float64):
    """(X, y, classes): `validate_data` (which sets n_features_in_) + classification targets
    (integer labels, as y is after `validate_data`, are always binary or multiclass: the
    check, 0.2 ms or 4% of fitting a 64-unit slab, is skipped for them)."""
    X, y = validate_data(est, X, y, dtype=dtype)
    if y.dtype.kind not in "biu":
        check_classification_targets(y)
    return X, y, np.unique(y)


def _validate_predict(est: BaseEstimator, X: Any, dtype: Any = np.float64) -> np.ndarray:
    """check_is_fitted, then `validate_data` against the fitted feature count."""
    check_is_fitted(est)
    return validate_data(est, X, dtype=dtype, reset=False)


def _row_norms(X: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row of X."""
    return np.sqrt(np.einsum("ij,ij->i", X, X))


def _by_blocks(X: np.ndarray, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """f of float64 copies of X's rows, SCORE_ROWS at a time (never a float64 copy of
    all of a float32 X), stacked."""
    return np.concatenate([f(np.asarray(X[lo:lo + SCORE_ROWS], dtype=np.float64))
                           for lo in range(0, max(len(X), 1), SCORE_ROWS)])


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 wherever den == 0 (cosine of a zero vector is defined as 0)."""
    out = np.zeros(np.broadcast_shapes(num.shape, den.shape))
    np.divide(num, den, out=out, where=den > 0)
    return out


class _Probe(ClassifierMixin, BaseEstimator):
    """Base of the probes: scikit-learn's parameter validation, in the configs' wording."""

    _parameter_constraints: dict = {}

    def _validate_params(self) -> None:
        _check_params(**self.get_params(deep=False))


class _ArgmaxClassifier(_Probe):
    """Base for probes whose prediction is classes_[argmax decision_function]."""

    def decision_function(self, X: Any) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, X: Any) -> np.ndarray:
        """ŷ = classes_[argmax_c decision_function(X)[:, c]]."""
        scores = self.decision_function(X)
        return self.classes_[np.argmax(scores, axis=1)]


class MASC(_ArgmaxClassifier):
    """Minimum Angle Subspace Classifier.

    Each class c is summarised by the span of its top-k_c uncentered principal
    directions B_c (k_c × d, orthonormal rows). A sample is scored by the cosine of its
    angle to each subspace, s_c(x) = ‖B_c x‖ / ‖x‖ (0 when ‖x‖ = 0), and assigned to
    the class with the smallest angle (largest s_c).

    Parameters
    ----------
    n_components : float or int, default 0.99
        Fraction of (uncentered) energy to keep per class when in (0, 1), or a fixed
        number of components when >= 1.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    n_features_in_ : int
        Number of units seen in `fit`.
    n_components_ : ndarray of shape (n_classes,)
        k_c, the components kept per class.
    components_ : list of ndarray, each of shape (k_c, n_features_in_)
        B_c per class: float64 from `fit`, float32 from the fast path.
    """

    _parameter_constraints = {"n_components": CONSTRAINTS["n_components"]}

    def __init__(self, n_components: float = 0.99):
        self.n_components = n_components

    @classmethod
    def from_spectra(cls, spectra: Sequence[Spectrum], classes: Any, X: Any, **params: Any) -> "MASC":
        """Fitted MASC from precomputed `analyze.spectral.class_spectra` (X gives
        n_features_in_); `params` are the constructor's."""
        masc = cls(**params)
        masc._validate_params()
        return masc._keep(spectra, classes, validate_data(masc, X, dtype=None))

    def _keep(self, spectra: Sequence[Spectrum], classes: Any, X: np.ndarray, ks: Any = None,
              tails: Sequence[Tail | None] | None = None) -> "MASC":
        """Keep the top-k_c directions of each class's spectrum (k_c from the spectrum
        unless given) for the validated training X, and how to score each class: from
        those directions, or from the rest of its eigenbasis (`tails`, from the fast
        path) where that is shorter (`analyze.subspace.complement_form`); returns self."""
        self.classes_ = np.asarray(classes)
        self.n_features_in_ = X.shape[1]
        if ks is None:
            n = float(self.n_components)
            ks = [n_kept(lam, n) for lam, _ in spectra]
        self.n_components_ = np.asarray(ks, dtype=int)
        # The fast path's V is cut to its family's largest k: views share it across the
        # family; an exact spectrum keeps every pair: copies, so it can go.
        self.components_ = [V[:k] if tails is not None else V[:k].copy() for (_, V), k in zip(spectra, ks)]
        tails = [None] * len(spectra) if tails is None else tails
        self._forms = [complement_form(V, tail, k) if tail is not None else B
                       for (_, V), k, tail, B in zip(spectra, ks, tails, self.components_)]
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> "MASC":
        """Fit per-class subspaces from the float64 uncentered PCA of each class; returns self."""
        X, y, classes = _validate_fit(self, X, y)
        return self._keep(class_spectra(X, y, classes), classes, X)

    def decision_function(self, X: Any) -> np.ndarray:
        """(n_samples, n_classes) scores s_c(x) = ‖B_c x‖ / ‖x‖ ∈ [0, 1], in the
        components' precision (float64 for `fit`, float32 in one product for all classes
        for the fast path of `fit_spectral_probes`)."""
        if any(B.dtype != np.float64 for B in getattr(self, "components_", [])):
            X = _validate_predict(self, X, dtype=np.float32)
            proj = np.sqrt(subspace_scores(X, self._forms))
            norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
            return _safe_divide(proj, norms[:, None])
        X = _validate_predict(self, X)
        proj = np.column_stack([_row_norms(X @ B.T) for B in self.components_])
        return _safe_divide(proj, _row_norms(X)[:, None])


class VeLPIC(_ArgmaxClassifier):
    """Linear probe from each class's top uncentered principal direction.

    v_c is the unit top right singular vector of X_c, sign-fixed so that
    mean_i(x_i · v_c) ≥ 0 over all training rows (an SVD vector's sign is arbitrary;
    this makes "positive" mean "along the data"). The score is the raw projection
    s_c(x) = x · v_c (no bias, no normalisation). No parameters.

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes, n_features_in_)
        v_c per class (a zero row for a class without a direction).
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    n_features_in_ : int
        Number of units seen in `fit`.
    """

    def __init__(self) -> None:
        pass

    @classmethod
    def from_spectra(cls, spectra: Sequence[Spectrum], classes: Any, X: Any, **params: Any) -> "VeLPIC":
        """Fitted VeLPIC from precomputed `analyze.spectral.class_spectra` and the training X."""
        velpic = cls(**params)
        velpic._validate_params()
        return velpic._keep(spectra, classes, validate_data(velpic, X, dtype=(np.float64, np.float32)))

    @classmethod
    def fast(cls, X: Any, y: Any) -> "VeLPIC":
        """Fitted VeLPIC by itself, the fast way: each class's top direction by float64
        power iteration (`analyze.spectral.leading_spectra`), no whole decomposition."""
        velpic = cls()
        X, y, classes = _validate_fit(velpic, X, y, dtype=np.float32)
        return velpic._keep(leading_spectra(X, y, classes), classes, X)

    def _keep(self, spectra: Sequence[Spectrum], classes: Any, X: np.ndarray) -> "VeLPIC":
        """coef_[c] = ±V_c[0], the sign chosen on the validated training X; returns self."""
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

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> "VeLPIC":
        """Fit v_c for every class (one float64 uncentered PCA per class); returns self."""
        X, y, classes = _validate_fit(self, X, y)
        return self._keep(class_spectra(X, y, classes), classes, X)

    def decision_function(self, X: Any) -> np.ndarray:
        """(n_samples, n_classes) raw scores X @ coef_ᵀ, in float64 (float32 X converted a
        block of rows at a time)."""
        return _by_blocks(_validate_predict(self, X, dtype=(np.float64, np.float32)),
                          lambda B: B @ self.coef_.T)


def fit_spectral_probes(X: Any, y: Any, n_components: float = 0.99, *, method: str = "exact",
                        device: str | None = None) -> tuple[MASC, VeLPIC]:
    """Fit MASC and VeLPIC from one shared per-class decomposition.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Training activations.
    y : array-like of shape (n_samples,)
        Training labels.
    n_components : float or int, default 0.99
        MASC's n (see `MASC`).
    method : {"exact", "fast"}, default "exact"
        "exact": `analyze.spectral.class_spectra` in float64; the result equals
        ``MASC(n_components).fit(X, y)`` and ``VeLPIC().fit(X, y)``. "fast":
        `analyze.spectral.fast_class_spectra` (float32 products, float64 where k_c could
        change, the same k_c per class); MASC then keeps float32 components and scores
        in float32.
    device : str or None, default None
        For "fast": a torch device for the kernels ("cuda", "cpu"); None uses NumPy.

    Returns
    -------
    masc : MASC
    velpic : VeLPIC
        Both fitted.
    """
    (masc,), velpic = fit_masc_family(X, y, [n_components], method=method, device=device)
    return masc, velpic


def fit_masc_family(X: Any, y: Any, ns: Sequence[float], *, method: str = "exact",
                    device: str | None = None) -> tuple[list[MASC], VeLPIC]:
    """MASC at every n of `ns` (and VeLPIC) from one per-class decomposition: each equals
    ``fit_spectral_probes(X, y, n, method=method)[0]``, at the cost of one.

    Parameters
    ----------
    X, y, method, device
        As for `fit_spectral_probes`.
    ns : sequence of float
        Every MASC n.

    Returns
    -------
    family : list of MASC
        One fitted MASC per n, in the order of `ns`.
    velpic : VeLPIC
        Fitted from the same decomposition.
    """
    for n in ns:
        _check_params(n_components=n)
    _check_params(method=method)
    velpic = VeLPIC()
    X, y, classes = _validate_fit(velpic, X, y, dtype=np.float64 if method == "exact" else np.float32)
    if method == "exact":
        spectra, ks, tails = class_spectra(X, y, classes), [None] * len(ns), None
    else:
        spectra, ks, tails = fast_class_spectra_multi(X, y, classes, [float(n) for n in ns],
                                                      device=device, tails=True)
    family = [MASC(n_components=n)._keep(spectra, classes, X, k, tails) for n, k in zip(ns, ks)]
    return family, velpic._keep(spectra, classes, X)


class NearestMeanCosine(_ArgmaxClassifier):
    """Nearest class mean by cosine similarity.

    μ_c = mean of X_c; s_c(x) = x·μ_c / (‖x‖ ‖μ_c‖) (0 if either norm is 0);
    prediction = argmax_c s_c(x). No parameters.

    Attributes
    ----------
    means_ : ndarray of shape (n_classes, n_features_in_)
        μ_c in classes_ order.
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    n_features_in_ : int
        Number of units seen in `fit`.
    """

    def __init__(self) -> None:
        pass

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> "NearestMeanCosine":
        """Store the class means μ_c in classes_ order; returns self."""
        X, y, classes = _validate_fit(self, X, y, dtype=(np.float64, np.float32))
        self.classes_ = classes
        self.means_ = np.stack([X[y == c].mean(axis=0, dtype=np.float64) for c in classes])
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """(n_samples, n_classes) cosines cos(x, μ_c), in float64."""
        X = _validate_predict(self, X, dtype=(np.float64, np.float32))
        norms = _row_norms(self.means_)[None, :]
        return _by_blocks(X, lambda B: _safe_divide(B @ self.means_.T, _row_norms(B)[:, None] * norms))


_FACTORIES: dict[str, Callable[..., Any]] = {
    "masc": MASC, "velpic": VeLPIC, "ncm": NearestMeanCosine, "knn": knn_cosine,
    "logreg": logistic_regression, "lda": lda, "qda": QDA,
}
# The probes `make_probe` builds: the vocabulary's (stores.config.PROBES), in its order,
# but masc_true, which is MASC fitted on the true labels.
PROBES: dict[str, Callable[..., Any]] = {name: _FACTORIES[name] for name in PROBE_NAMES if name in _FACTORIES}


def make_probe(name: str, **params: Any) -> Any:
    """An unfitted probe by name, e.g. ``make_probe("masc", n_components=5)``.

    Parameters
    ----------
    name : str
        One of `PROBES`.
    **params
        The factory's (or the estimator's) parameters.

    Returns
    -------
    estimator
        Unfitted.

    Raises
    ------
    ValueError
        For a name that is not one of `PROBES`.
    """
    try:
        factory = PROBES[name]
    except (KeyError, TypeError):
        raise ValueError(f"probe: expected one of {', '.join(PROBES)}, got {name!r}") from None
    return factory(**params)
