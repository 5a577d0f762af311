"""Multinomial logistic regression on standardised units: scikit-learn's optimum, fast,
and the authors' cheaper probe (a linear layer trained by Adam).

`StandardizedLogisticRegression` minimises what ``make_pipeline(StandardScaler(),
LogisticRegression(C=C))`` minimises (the mean cross-entropy plus ‖W‖² / (2 C n), the
intercept unpenalised), by L-BFGS as scikit-learn does, but (1) never forms the
standardised copy of X: (X - m) / s Wᵀ is X (W / s)ᵀ - m (W / s)ᵀ, so every product is one
float32 GEMM of the slab as it is; and (2) in whitened coordinates: W = Θ L⁻¹ with L the
Cholesky factor of H₀ = Gram / 4 + I / (C n), the Gram of the standardised units taken from
the shared class moments (`analyze.moments`), an approximation of the loss's Hessian
(softmax curvature is at most 1/4 per unit of x xᵀ). The change of variables leaves the
optimum where it is; it only makes the problem well conditioned, so L-BFGS needs a few
tens of iterations where scikit-learn's stops at its limit. The loss and gradient are
accumulated in float64 from float32 products.

`AdamLogisticRegression` is P1's logistic-regression probe (MASC_DNN,
Compare_experiments/stronger_baselines/probe/logistic_regression_probe.py): one linear
layer with a bias on the raw activations, cross-entropy, Adam (lr 1e-3, betas 0.9 /
0.999, eps 1e-8), 20 epochs of shuffled mini-batches of 128, initialised as
`torch.nn.Linear` is (uniform in ±1/√d); here in NumPy, seeded by `random_state`.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import Any

import numpy as np
import scipy.linalg
import scipy.optimize
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from .moments import class_moments

__all__ = ["AdamLogisticRegression", "StandardizedLogisticRegression"]


def _log_softmax(Z: np.ndarray) -> np.ndarray:
    Z = Z - Z.max(axis=1, keepdims=True)
    return Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))


class _Linear(ClassifierMixin, BaseEstimator):
    def decision_function(self, X: Any) -> np.ndarray:
        """(n_samples, n_classes) logits X coef_ᵀ + intercept_ (float64 from a float32 product)."""
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, dtype=np.float32, order="C", reset=False)
        return (X @ self.coef_.T.astype(np.float32)).astype(np.float64) + self.intercept_

    def predict(self, X: Any) -> np.ndarray:
        """classes_[argmax of the logits]."""
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]


class StandardizedLogisticRegression(_Linear):
    """``make_pipeline(StandardScaler(), LogisticRegression(C=C, tol=tol, max_iter=max_iter))``'s
    optimum, by whitened L-BFGS on float32 products.

    Parameters
    ----------
    C : float, default 1.0
        Inverse penalty strength, as scikit-learn's.
    tol : float, default 1e-4
        L-BFGS stops when the largest gradient entry (in whitened coordinates) is below it.
    max_iter : int, default 100
        L-BFGS iterations at most (a ConvergenceWarning where reached, as scikit-learn's).

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes, n_features)
        The weights on the raw (unstandardised) units: W / s.
    intercept_ : ndarray of shape (n_classes,)
        On the raw units: b - (W / s) m.
    mean_, scale_ : ndarray of shape (n_features,)
        The standardisation (scale 1 for a constant unit), as StandardScaler's.
    n_iter_ : int
        L-BFGS iterations.
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    """

    _parameter_constraints: dict = {
        "C": [Interval(Real, 0, None, closed="neither")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, C: float = 1.0, tol: float = 1e-4, max_iter: int = 100):
        self.C = C
        self.tol = tol
        self.max_iter = max_iter

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> "StandardizedLogisticRegression":
        """Minimise the penalised mean cross-entropy; returns self."""
        X, y = validate_data(self, X, y, dtype=np.float32, order="C")
        check_classification_targets(y)
        m = class_moments(X, y)
        n, d, K = m.n, X.shape[1], len(m.classes)
        self.classes_ = m.classes
        target = np.searchsorted(m.classes, y)
        self.mean_ = m.mean
        self.scale_ = np.sqrt(np.diag(m.total()) / n)
        self.scale_[self.scale_ < 10 * np.finfo(np.float64).eps] = 1.0  # StandardScaler's rule
        gram = m.total() / np.outer(self.scale_, self.scale_) / n
        L = np.linalg.cholesky(gram / 4 + np.eye(d) / (self.C * n))
        objective = _Objective(X, target, K, self.mean_, self.scale_, 1 / (self.C * n), L)
        start = np.zeros(K * d + K)
        # One BLAS thread for the iterations: their products have K columns (memory-bound)
        # or K rows, where a second thread costs more in wake-ups than it brings (10x
        # slower on the two-core machine under load, README Performance).
        with threadpool_limits(1):
            result = scipy.optimize.minimize(
                objective, start, jac=True, method="L-BFGS-B",
                options={"maxiter": self.max_iter, "gtol": self.tol, "ftol": 64 * np.finfo(float).eps})
        if result.nit >= self.max_iter:
            warnings.warn(f"L-BFGS stopped at max_iter={self.max_iter} before tol={self.tol}",
                          ConvergenceWarning, stacklevel=2)
        W, b = objective.unpack(result.x)
        self.n_iter_ = int(result.nit)
        self.coef_ = W / self.scale_
        self.intercept_ = b - self.coef_ @ self.mean_
        return self


class _Objective:
    """f(Θ, b) and its gradient, for W = Θ L⁻¹ on the standardised units (L⁻¹ formed once:
    two d × d products per evaluation)."""

    def __init__(self, X, target, K, mean, scale, alpha, L):
        self.X, self.target, self.K, self.mean, self.scale, self.alpha, self.L = (
            X, target, K, mean, scale, alpha, L)
        self.n, self.d = X.shape
        self.L_inv = scipy.linalg.solve_triangular(L, np.eye(len(L)), lower=True)

    def unpack(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        theta, b = v[: self.K * self.d].reshape(self.K, self.d), v[self.K * self.d:]
        return theta @ self.L_inv, b

    def __call__(self, v: np.ndarray) -> tuple[float, np.ndarray]:
        W, b = self.unpack(v)
        raw = W / self.scale  # weights on the raw units
        Z = (self.X @ raw.T.astype(np.float32)).astype(np.float64) + (b - raw @ self.mean)
        logp = _log_softmax(Z)
        rows = np.arange(self.n)
        loss = -logp[rows, self.target].mean() + 0.5 * self.alpha * np.sum(W * W)
        G = np.exp(logp)
        G[rows, self.target] -= 1
        G /= self.n
        raw_grad = (self.X.T @ G.astype(np.float32)).T.astype(np.float64)
        grad_W = (raw_grad - np.outer(G.sum(axis=0), self.mean)) / self.scale + self.alpha * W
        grad_theta = grad_W @ self.L_inv.T
        return loss, np.concatenate([grad_theta.ravel(), G.sum(axis=0)])


class AdamLogisticRegression(_Linear):
    """P1's logistic-regression probe: a linear layer on the raw units, Adam, mini-batches.

    Parameters
    ----------
    lr : float, default 1e-3
    epochs : int, default 20
    batch_size : int, default 128
    random_state : int or None, default 0
        Seeds the initialisation and the shuffles.

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes, n_features)
    intercept_ : ndarray of shape (n_classes,)
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    """

    _parameter_constraints: dict = {
        "lr": [Interval(Real, 0, None, closed="neither")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, lr: float = 1e-3, epochs: int = 20, batch_size: int = 128,
                 random_state: int | None = 0):
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> "AdamLogisticRegression":
        """Train the layer for `epochs` shuffled passes; returns self."""
        X, y = validate_data(self, X, y, dtype=np.float32, order="C")
        check_classification_targets(y)
        self.classes_, target = np.unique(y, return_inverse=True)
        rng = np.random.default_rng(self.random_state)
        n, d = X.shape
        bound = 1 / np.sqrt(d)
        params = [rng.uniform(-bound, bound, (len(self.classes_), d)).astype(np.float32),
                  rng.uniform(-bound, bound, len(self.classes_)).astype(np.float32)]
        moments = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
        step = 0
        for _ in range(self.epochs):
            order = rng.permutation(n)
            for i in range(0, n, self.batch_size):
                idx = order[i:i + self.batch_size]
                step += 1
                _adam_step(params, moments, _batch_grads(params, X[idx], target[idx]), self.lr, step)
        self.coef_, self.intercept_ = params[0].astype(np.float64), params[1].astype(np.float64)
        return self


def _batch_grads(params, Xb: np.ndarray, yb: np.ndarray) -> list[np.ndarray]:
    """Gradients of the batch's mean cross-entropy for (weight, bias)."""
    P = np.exp(_log_softmax(Xb @ params[0].T + params[1]))
    P[np.arange(len(yb)), yb] -= 1
    P /= len(yb)
    return [P.T @ Xb, P.sum(axis=0)]


def _adam_step(params, moments, grads, lr: float, step: int,
               betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
    """torch.optim.Adam's update (no weight decay), in place."""
    for p, (m, v), g in zip(params, moments, grads):
        m *= betas[0]
        m += (1 - betas[0]) * g
        v *= betas[1]
        v += (1 - betas[1]) * g * g
        m_hat = m / (1 - betas[0] ** step)
        v_hat = v / (1 - betas[1] ** step)
        p -= (lr * m_hat / (np.sqrt(v_hat) + eps)).astype(p.dtype)
