"""Per-neuron analysis of the modular-arithmetic network of Doshi et al. (2023).

The network ("To grok or not to grok", Doshi, Das, He, Gromov) maps
one-hot(m) ‖ one-hot(n) (length 2p) through

    h = (W1 x)²  [→ BatchNorm1d(N)]  →  logits = W2 h,

with W1 (N, 2p) and W2 (p, N), both bias-free.  Neuron k reads the row
u_k = W1[k, :p] from m, the row v_k = W1[k, p:] from n, and writes the
column w_k = W2[:, k] to the p classes.  Generalising neurons are periodic
in these three vectors (a few Fourier modes, IPR near 1); memorising neurons
look like lookup tables (flat spectrum, low IPR).

Pure numerics: NumPy in, NumPy (or Python scalars) out, no I/O and no torch.
All computation is done in float64 — the arrays are small and the pruning
curve compares argmaxes, where round-off matters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scipy.stats import spearmanr

__all__ = [
    "PHASES",
    "bn_effective_gain",
    "fourier_ipr",
    "gain_ratio",
    "ipr_histogram",
    "neuron_ipr",
    "phase",
    "prune_orders",
    "pruning_curve",
    "settled_train_accuracy",
    "two_stage",
]

PHASES = ("coexistence", "partial_inversion", "full_inversion", "memorization", "forgetting")

# Generalisation threshold of the 2023 paper: test accuracy ≥ 90 %.
_T_GEN = 0.90
# Slack for threshold comparisons: 1.05 − ξ is not exact in binary
# (1.05 − 0.35 = 0.7000000000000001), and an accuracy that equals a threshold
# must count as reaching it.  Accuracies are k/n with n ≪ 1e9, so 1e-9 never
# merges two genuinely different accuracies.
_TOL = 1e-9


# --------------------------------------------------------------------------
# Fourier inverse participation ratio
# --------------------------------------------------------------------------


def fourier_ipr(x: np.ndarray) -> np.ndarray:
    """IPR of the one-sided DFT magnitudes along the last axis.

    Parameters
    ----------
    x : array-like of shape (..., p)

    Returns
    -------
    ndarray of shape (...,)
        With x̃ = |rfft(x)| (k = 0..⌊p/2⌋), IPR = Σ_k x̃_k⁴ / (Σ_k x̃_k²)² ∈
        [1/(⌊p/2⌋+1), 1], and 0 for an all-zero row (instead of 0/0). A pure cosine of
        frequency 1 ≤ k ≤ ⌊p/2⌋ has IPR 1; a one-hot row (flat spectrum) 1/(⌊p/2⌋+1).
        Invariant to scaling and to cyclic shifts (a shift only changes phases).
    """
    mag2 = np.abs(np.fft.rfft(np.asarray(x, dtype=np.float64), axis=-1)) ** 2
    num = np.sum(mag2 * mag2, axis=-1)
    den = np.sum(mag2, axis=-1) ** 2
    out = np.zeros(np.shape(num))
    np.divide(num, den, out=out, where=den > 0)  # zero row → 0, not NaN
    return out


def neuron_ipr(w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    """Per-neuron IPR: mean of fourier_ipr(u_k), fourier_ipr(v_k), fourier_ipr(w_k).

    Parameters
    ----------
    w1, w2 : array-like of shapes (N, 2p) and (p, N), or (E, N, 2p) and (E, p, N)
        The two layers' weights (with a leading epoch axis, or not); u_k =
        w1[..., k, :p], v_k = w1[..., k, p:], w_k = w2[..., :, k].

    Returns
    -------
    ndarray of shape (N,) or (E, N)
    """
    w1 = np.asarray(w1, dtype=np.float64)
    w2 = np.asarray(w2, dtype=np.float64)
    if w1.ndim not in (2, 3) or w2.ndim != w1.ndim:
        raise ValueError(
            f"expected w1 (N, 2p) and w2 (p, N), or (E, N, 2p) and (E, p, N), "
            f"got {w1.shape} and {w2.shape}"
        )
    p, n = w2.shape[-2:]
    if w1.shape[-2:] != (n, 2 * p) or w1.shape[:-2] != w2.shape[:-2]:
        raise ValueError(
            f"expected w1 of shape {w2.shape[:-2] + (n, 2 * p)} to match w2 {w2.shape}, "
            f"got {w1.shape}"
        )
    # Swap W2's last two axes so all three vectors of neuron k lie along the last axis.
    parts = (w1[..., :p], w1[..., p:], np.swapaxes(w2, -1, -2))
    return sum(fourier_ipr(part) for part in parts) / 3.0


def ipr_histogram(ipr: np.ndarray, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of IPR values over [0, 1].

    Values are clipped to [0, 1] first: IPR is in [0, 1] mathematically, and
    np.histogram would silently drop a 1 + 1e-16 produced by round-off.
    The last bin is closed, so IPR = 1 is counted.

    Returns
    -------
    counts : ndarray of shape (bins,)
    edges : ndarray of shape (bins + 1,)
    """
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins: expected a positive integer, got {bins!r}")
    values = np.clip(np.asarray(ipr, dtype=np.float64).ravel(), 0.0, 1.0)
    return np.histogram(values, bins=int(bins), range=(0.0, 1.0))


# --------------------------------------------------------------------------
# Pruning
# --------------------------------------------------------------------------


def _check_pruning_inputs(hidden: np.ndarray, w2: np.ndarray, order: np.ndarray,
                          labels: np.ndarray, groups: dict[str, np.ndarray]) -> None:
    """Shape checks for pruning_curve; order must be a permutation of range(N)."""
    n_samples, n = hidden.shape
    if w2.ndim != 2 or w2.shape[1] != n:
        raise ValueError(f"w2: expected shape (p, {n}), got {w2.shape}")
    # A repeated neuron would be subtracted twice, so a permutation is required.
    if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
        raise ValueError(f"order: expected a permutation of range({n}), got {order!r}")
    if labels.shape != (n_samples,):
        raise ValueError(f"labels: expected shape ({n_samples},), got {labels.shape}")
    for name, mask in groups.items():
        if mask.shape != (n_samples,) or mask.dtype != bool:
            raise ValueError(
                f"groups[{name!r}]: expected a boolean mask of shape ({n_samples},), "
                f"got {mask.dtype} {mask.shape}"
            )


def pruning_curve(hidden: np.ndarray, w2: np.ndarray, order: np.ndarray,
                  labels: np.ndarray, groups: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Accuracy per group as neurons order[0], order[1], … are removed.

    Parameters
    ----------
    hidden : array-like of shape (n_samples, N)
        The last layer's input.
    w2 : array-like of shape (p, N)
        Its weight.
    order : array-like of shape (N,)
        A permutation of the neurons.
    labels : array-like of shape (n_samples,)
    groups : dict of str to boolean mask of shape (n_samples,)

    Returns
    -------
    dict of str to ndarray of shape (N + 1,)
        name → acc with

        acc[n] = mean_{s ∈ group} [argmax_c z_n[s, c] = labels[s]],
        z_n = hidden @ w2ᵀ − Σ_{j<n} hidden[:, order[j], None] * w2[None, :, order[j]].

    z_n is updated by one rank-1 subtraction per neuron (O(N · n_samples · p)).
    At n = N every logit is exactly 0 and argmax returns class 0 (NumPy's
    first-maximum rule), so acc[N] is the group's fraction of label 0.
    An empty group gives NaN.
    """
    hidden = np.asarray(hidden, dtype=np.float64)
    w2 = np.asarray(w2, dtype=np.float64)
    order, labels = np.asarray(order), np.asarray(labels)
    groups = {k: np.asarray(v) for k, v in groups.items()}
    _check_pruning_inputs(hidden, w2, order, labels, groups)
    n = hidden.shape[1]
    logits = hidden @ w2.T
    curves = {name: np.full(n + 1, np.nan) for name in groups}
    for step in range(n + 1):
        if step == n:
            logits = np.zeros_like(logits)  # exact 0, not the round-off residue
        elif step > 0:
            i = order[step - 1]
            logits -= hidden[:, i, None] * w2[None, :, i]
        correct = np.argmax(logits, axis=1) == labels
        for name, mask in groups.items():
            if mask.any():
                curves[name][step] = correct[mask].mean()
    return curves


def prune_orders(ipr: np.ndarray) -> dict[str, np.ndarray]:
    """Neuron removal orders from per-neuron IPR (N,).

    Returns
    -------
    dict of str to ndarray of shape (N,)
        "ascending": low-IPR (memorising) neurons first, argsort(ipr, stable);
        "descending": high-IPR (generalising) neurons first, argsort(−ipr, stable).
        Ties keep index order in both, so the orders are deterministic.
    """
    ipr = np.asarray(ipr, dtype=np.float64)
    if ipr.ndim != 1:
        raise ValueError(f"ipr: expected shape (N,), got {ipr.shape}")
    return {
        "ascending": np.argsort(ipr, kind="stable"),
        "descending": np.argsort(-ipr, kind="stable"),
    }


# --------------------------------------------------------------------------
# Phases of the 2023 paper
# --------------------------------------------------------------------------


def _check_unit(name: str, value: Any) -> np.ndarray:
    """float64 array of value, every entry in [0, 1] (NaN rejected), else ValueError."""
    arr = np.asarray(value, dtype=np.float64)
    if not np.all((arr >= 0.0) & (arr <= 1.0)):
        raise ValueError(f"{name}: expected values in [0, 1], got {value!r}")
    return arr


def phase(train_acc: float, test_acc: float, xi: float) -> str:
    """Phase of one run from its final accuracies (fractions in [0, 1]) and corruption ξ.

    Returns one of PHASES. With t_gen = 0.90 and t_full = 1.05 − ξ, applied in this order:
      test < t_gen:  train ≥ 0.90 → "memorization", else "forgetting";
      test ≥ t_gen:  train ≥ 0.90 → "coexistence",
                     else train < t_full → "full_inversion",
                     else → "partial_inversion" (t_full ≤ train < 0.90).
    Coexistence is checked first: for ξ < 0.15, t_full > 0.90 and a full inversion
    cannot be told from coexistence by train accuracy (at ξ = 0 they are the same
    network), and calling every ξ = 0 run an inversion would misread the diagram.
    A value equal to a threshold (within 1e-9) counts as reaching it.
    """
    train, test, xi = (float(_check_unit(k, v)) for k, v in
                       (("train_acc", train_acc), ("test_acc", test_acc), ("xi", xi)))
    fits = train >= _T_GEN - _TOL
    if test < _T_GEN - _TOL:
        return "memorization" if fits else "forgetting"
    if fits:
        return "coexistence"
    return "full_inversion" if train < 1.05 - xi - _TOL else "partial_inversion"


# --------------------------------------------------------------------------
# Two-stage training curve
# --------------------------------------------------------------------------


def settled_train_accuracy(xi: float, p: int) -> float:
    """Train accuracy on observed labels of a net that predicts the TRUE labels.

    (1 − ξ) + ξ / p: the clean fraction is right, and a corrupted label drawn
    uniformly over the p classes equals the truth with probability 1/p.
    """
    xi = float(_check_unit("xi", xi))
    if int(p) != p or p < 1:
        raise ValueError(f"p: expected a positive integer, got {p!r}")
    return (1.0 - xi) + xi / p


def two_stage(epochs: np.ndarray, train_acc: np.ndarray, xi: float, p: int,
              tol: float = 0.02) -> dict:
    """Find the memorise-then-invert shape of a train-accuracy curve.

    Parameters
    ----------
    epochs, train_acc : array-like of shape (T,)
    xi, p : float, int
        The corruption rate and the number of classes: target =
        settled_train_accuracy(xi, p).
    tol : float, default 0.02

    Returns
    -------
    dict
        {"peak_epoch", "peak_train_acc", "settle_epoch", "settled_train_acc" (mean of
        train_acc[settle:], None if no settle), "target"}: peak = first index of
        max(train_acc); settle = first index i > peak with |train_acc[j] − target| ≤ tol
        for every j ≥ i, None if there is none or if the peak itself is within tol of
        target (no first stage above it).
    """
    epochs = np.asarray(epochs)
    acc = np.asarray(train_acc, dtype=np.float64)
    if acc.ndim != 1 or acc.size == 0 or epochs.shape != acc.shape:
        raise ValueError(
            f"expected epochs and train_acc of equal shape (T,), T ≥ 1, "
            f"got {epochs.shape} and {acc.shape}"
        )
    if not np.all(np.isfinite(acc)):
        raise ValueError(f"train_acc: expected finite values, got {train_acc!r}")
    target = settled_train_accuracy(xi, p)
    peak = int(np.argmax(acc))  # argmax returns the first maximum
    out = {"peak_epoch": epochs[peak].item(), "peak_train_acc": float(acc[peak]),
           "settle_epoch": None, "settled_train_acc": None, "target": target}
    if abs(acc[peak] - target) <= tol:
        return out
    near = np.abs(acc - target) <= tol
    # stays[i]: every entry from i to the end is within tol (suffix AND).
    stays = np.logical_and.accumulate(near[::-1])[::-1]
    candidates = np.flatnonzero(stays[peak + 1:])
    if candidates.size:
        settle = peak + 1 + int(candidates[0])
        out["settle_epoch"] = epochs[settle].item()
        out["settled_train_acc"] = float(acc[settle:].mean())
    return out


# --------------------------------------------------------------------------
# BatchNorm gain against IPR
# --------------------------------------------------------------------------


def bn_effective_gain(weight: np.ndarray, running_var: np.ndarray,
                      eps: float = 1e-5) -> np.ndarray:
    """Eval-mode BatchNorm scale per neuron: g_k = γ_k / sqrt(var_k + ε).

    weight (γ) and running_var, shape (N,) or (..., N) → same shape.  In eval
    mode BatchNorm is h ↦ g·(h − μ) + β, so g is how much it amplifies neuron k.
    """
    weight = np.asarray(weight, dtype=np.float64)
    running_var = np.asarray(running_var, dtype=np.float64)
    if weight.shape != running_var.shape:
        raise ValueError(
            f"expected weight and running_var of equal shape, "
            f"got {weight.shape} and {running_var.shape}"
        )
    return weight / np.sqrt(running_var + eps)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman ρ = Pearson correlation of the ranks; NaN if n < 2 or an input is constant."""
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")  # undefined; avoids scipy's ConstantInputWarning
    return float(spearmanr(a, b).statistic)


def gain_ratio(gain: np.ndarray, ipr: np.ndarray, threshold: float = 0.5) -> dict:
    """Compare |BatchNorm gain| of high-IPR (≥ threshold) and low-IPR neurons.

    Parameters
    ----------
    gain, ipr : array-like of shape (N,)
    threshold : float, default 0.5

    Returns
    -------
    dict
        {"high_mean_gain": mean |g| over ipr ≥ threshold, "low_mean_gain": mean |g|
        over ipr < threshold, "ratio": high / low (NaN if either group is empty, inf if
        only the low mean is 0), "n_high", "n_low", "spearman": Spearman ρ(|g|, ipr)}.
    """
    g = np.abs(np.asarray(gain, dtype=np.float64))
    ipr = np.asarray(ipr, dtype=np.float64)
    if g.ndim != 1 or g.shape != ipr.shape:
        raise ValueError(
            f"expected gain and ipr of equal shape (N,), got {g.shape} and {ipr.shape}"
        )
    high = ipr >= threshold
    n_high, n_low = int(high.sum()), int((~high).sum())
    # Explicit NaN for an empty group: np.mean of nothing would warn.
    high_mean = float(g[high].mean()) if n_high else float("nan")
    low_mean = float(g[~high].mean()) if n_low else float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):  # low mean 0 → inf (or NaN for 0/0)
        ratio = float(np.float64(high_mean) / low_mean) if n_high and n_low else float("nan")
    return {"high_mean_gain": high_mean, "low_mean_gain": low_mean, "ratio": ratio,
            "n_high": n_high, "n_low": n_low, "spearman": _spearman(g, ipr)}
