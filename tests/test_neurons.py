"""Tests for analyze.neurons against independent float64 references.

The references are written here from scratch: the DFT as an explicit sum,
the pruning curve by zeroing columns and recomputing every logit, and a
hand-built modular-addition network whose Fourier and lookup-table neurons
are known in closed form.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import rankdata

from analyze.neurons import (
    PHASES,
    bn_effective_gain,
    fourier_ipr,
    gain_ratio,
    ipr_histogram,
    neuron_ipr,
    phase,
    prune_orders,
    pruning_curve,
    settled_train_accuracy,
    two_stage,
)

from .tolerance import clear_argmax, dft_ipr_rtol, sum_atol, unit_roundoff
from .tolerance import gamma as gamma_n

# --------------------------------------------------------------------------
# Independent references
# --------------------------------------------------------------------------


def ref_ipr(row: np.ndarray) -> float:
    """IPR from an explicit one-sided DFT: X_k = Σ_j x_j e^{−2πi k j / p}, k = 0..⌊p/2⌋."""
    p = len(row)
    j = np.arange(p)
    mags = np.array([abs(np.sum(row * np.exp(-2j * np.pi * k * j / p)))
                     for k in range(p // 2 + 1)])
    return float(np.sum(mags**4) / np.sum(mags**2) ** 2)


def cosine(p: int, k: int, phi: float = 0.0) -> np.ndarray:
    """cos(2πk·j/p + φ) for j = 0..p−1."""
    return np.cos(2 * np.pi * k * np.arange(p) / p + phi)


def brute_force_curve(hidden, w2, order, labels, mask, sure=False):
    """Accuracy after zeroing W2[:, order[:n]], recomputed from scratch for each n.

    With `sure`, also the fraction of the group's rows whose label rounding cannot
    decide, per n: pruning_curve reaches the same logits by one product and n rank-1
    subtractions, within γ_(2N+1)·2·(|h||W2|ᵀ) (the product's γ_N, each subtraction's
    two roundings on a running value bounded by the full magnitudes), and this
    product within γ_N·(|h||W|ᵀ); a row whose top-two margin here exceeds twice the
    sum (clear_argmax) gets the same label on both, and a row with nothing left is
    exactly 0 on both (argmax: class 0)."""
    n_units = hidden.shape[1]
    full = np.abs(hidden) @ np.abs(np.asarray(w2, dtype=np.float64)).T
    accs, slack = [], []
    for n in range(len(order) + 1):
        w = np.array(w2, dtype=np.float64)
        w[:, order[:n]] = 0.0
        logits = hidden @ w.T
        pred = np.argmax(logits, axis=1)
        accs.append(np.mean(pred[mask] == labels[mask]))
        mag = np.abs(hidden) @ np.abs(w).T
        err = gamma_n(np.float64, 2 * n_units + 1) * 2 * full + gamma_n(np.float64, n_units) * mag
        clear = clear_argmax(logits, err) | (mag.max(axis=1) == 0)
        slack.append(np.sum(mask & ~clear) / mask.sum())
    return (np.array(accs), np.array(slack)) if sure else np.array(accs)


# --------------------------------------------------------------------------
# fourier_ipr
# --------------------------------------------------------------------------


@pytest.mark.parametrize("p", [97, 10, 7, 2 * 3 * 5])
def test_pure_cosine_has_ipr_one(p):
    rows = [cosine(p, k, phi) for k in range(1, p // 2 + 1)
            for phi in (0.0, 0.3, 1.1, -2.0)]
    np.testing.assert_allclose(fourier_ipr(np.stack(rows)), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("p, expected", [(97, 1 / 49), (10, 1 / 6), (7, 1 / 4)])
def test_one_hot_has_flat_spectrum(p, expected):
    eye = np.eye(p)
    assert expected == 1 / (p // 2 + 1)
    np.testing.assert_allclose(fourier_ipr(eye), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("p", [97, 10])
def test_matches_explicit_dft(p):
    rows = np.random.default_rng(p).normal(size=(8, p))
    expected = [ref_ipr(r) for r in rows]
    # FFT against the explicit float64 sum: the DFT IPR bound (p = 97: 2.3e-11)
    np.testing.assert_allclose(fourier_ipr(rows), expected, rtol=dft_ipr_rtol(np.float64, p), atol=0)


def test_scale_and_shift_invariance_and_leading_shape():
    x = np.random.default_rng(0).normal(size=(3, 4, 97))
    base = fourier_ipr(x)
    assert base.shape == (3, 4) and base.dtype == np.float64
    # The same FFT on other inputs: each computation within half the DFT IPR bound of
    # the exact IPR (which ignores scale and shifts); −3.7·x rounds each element once
    # more (u relative: 8·√(2K)·u on the IPR to first order, as in dft_ipr_rtol).
    rtol = dft_ipr_rtol(np.float64, 97)
    k = 97 // 2 + 1
    np.testing.assert_allclose(fourier_ipr(-3.7 * x), base,
                               rtol=rtol + 8 * np.sqrt(2 * k) * unit_roundoff(np.float64))
    for shift in (1, 13, 96):
        np.testing.assert_allclose(fourier_ipr(np.roll(x, shift, axis=-1)), base, rtol=rtol)
    # float32 input gives the float64 answer of the same values; exact: the upcast is
    # exact, so both run the same float64 code on the same values
    x32 = x.astype(np.float32)
    np.testing.assert_array_equal(fourier_ipr(x32), fourier_ipr(x32.astype(np.float64)))


def test_zero_row_is_zero_not_nan():
    x = np.zeros((2, 11))
    x[1, 3] = 1.0
    out = fourier_ipr(x)
    assert out[0] == 0.0 and not np.isnan(out).any()
    assert out[1] == pytest.approx(1 / 6)


def test_constant_row_is_pure_dc():
    assert fourier_ipr(np.full(12, 2.5)) == pytest.approx(1.0, abs=1e-12)


# --------------------------------------------------------------------------
# neuron_ipr and ipr_histogram
# --------------------------------------------------------------------------


def hand_network(p: int = 97):
    """Neuron 0 all cosine (IPR 1), neuron 1 all one-hot (1/(⌊p/2⌋+1)), neuron 2 mixed."""
    w1 = np.zeros((3, 2 * p))
    w2 = np.zeros((p, 3))
    w1[0, :p], w1[0, p:], w2[:, 0] = cosine(p, 5, 0.2), cosine(p, 5, 1.0), cosine(p, 5, -0.4)
    w1[1, 4], w1[1, p + 9], w2[30, 1] = 1.0, 1.0, 2.0
    w1[2, :p], w1[2, p + 1], w2[:, 2] = cosine(p, 3), 1.0, cosine(p, 7)
    return w1, w2


def test_neuron_ipr_is_mean_of_three():
    p = 97
    w1, w2 = hand_network(p)
    out = neuron_ipr(w1, w2)
    assert out.shape == (3,)
    np.testing.assert_allclose(out, [1.0, 1 / 49, (1 + 1 / 49 + 1) / 3], atol=1e-12)
    # and on random weights, against the explicit-DFT reference
    rng = np.random.default_rng(1)
    w1, w2 = rng.normal(size=(5, 2 * 10)), rng.normal(size=(10, 5))
    expected = [np.mean([ref_ipr(w1[k, :10]), ref_ipr(w1[k, 10:]), ref_ipr(w2[:, k])])
                for k in range(5)]
    # FFTs against explicit sums (p = 10: the DFT IPR bound, 8.6e-13), then a mean of
    # three positive terms on each side (γ_3 more, relative)
    np.testing.assert_allclose(neuron_ipr(w1, w2), expected,
                               rtol=dft_ipr_rtol(np.float64, 10) + 2 * gamma_n(np.float64, 3))


def test_neuron_ipr_epoch_axis():
    rng = np.random.default_rng(2)
    w1, w2 = rng.normal(size=(4, 6, 22)), rng.normal(size=(4, 11, 6))
    out = neuron_ipr(w1, w2)
    assert out.shape == (4, 6)
    # Batched (24 rows per FFT call) against one epoch at a time: the FFT may take
    # other (vectorised) code for other row counts, so not exact; each within half the
    # DFT IPR bound (p = 11) of the exact value, and the mean of three adds γ_3.
    rtol = dft_ipr_rtol(np.float64, 11) + 2 * gamma_n(np.float64, 3)
    for e in range(4):
        np.testing.assert_allclose(out[e], neuron_ipr(w1[e], w2[e]), rtol=rtol, atol=0)


@pytest.mark.parametrize("shape1, shape2", [
    ((6, 20), (11, 6)),        # 2p mismatch
    ((6, 22), (11, 5)),        # N mismatch
    ((6, 22), (11, 6, 1)),     # ndim mismatch
    ((3, 6, 22), (4, 11, 6)),  # epoch mismatch
    ((22,), (11,)),            # 1-D
])
def test_neuron_ipr_shape_errors(shape1, shape2):
    with pytest.raises(ValueError, match="expected .*, got"):
        neuron_ipr(np.ones(shape1), np.ones(shape2))


def test_ipr_histogram():
    ipr = np.array([0.0, 0.02, 0.5, 0.99, 1.0, 1.0 + 1e-16])
    counts, edges = ipr_histogram(ipr, bins=10)
    np.testing.assert_allclose(edges, np.linspace(0, 1, 11))
    assert counts.sum() == 6
    assert counts[0] == 2 and counts[5] == 1 and counts[-1] == 3
    assert ipr_histogram(np.random.default_rng(0).random((4, 5)))[0].sum() == 20
    with pytest.raises(ValueError, match="expected"):
        ipr_histogram(ipr, bins=0)


# --------------------------------------------------------------------------
# Pruning
# --------------------------------------------------------------------------


def test_prune_orders():
    ipr = np.array([0.3, 0.9, 0.1, 0.9, 0.3, 0.5])
    orders = prune_orders(ipr)
    np.testing.assert_array_equal(orders["ascending"], [2, 0, 4, 5, 1, 3])
    np.testing.assert_array_equal(orders["descending"], [1, 3, 5, 0, 4, 2])
    for order in orders.values():
        np.testing.assert_array_equal(np.sort(order), np.arange(6))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pruning_curve_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_samples, n, p = 60, 12, 7
    hidden = rng.normal(size=(n_samples, n)) ** 2
    w2 = rng.normal(size=(p, n))
    labels = rng.integers(0, p, n_samples)
    groups = {"train": np.arange(n_samples) < 40, "test": np.arange(n_samples) >= 40,
              "all": np.ones(n_samples, bool)}
    unpruned = np.argmax(hidden @ w2.T, axis=1) == labels
    for order in prune_orders(rng.random(n)).values():
        curves = pruning_curve(hidden, w2, order, labels, groups)
        assert set(curves) == set(groups)
        for name, mask in groups.items():
            assert curves[name].shape == (n + 1,)
            # Incremental against recomputed logits: equal but for near-tie rows
            # (brute_force_curve's slack), plus one rounding of each mean (2·u).
            want, slack = brute_force_curve(hidden, w2, order, labels, mask, sure=True)
            gap = np.abs(curves[name] - want)
            assert np.all(gap <= slack + 2 * unit_roundoff(np.float64)), (name, gap, slack)
            # exact: step 0 is the same float64 product hidden @ w2.T on the same arrays
            assert curves[name][0] == unpruned[mask].mean()
            # nothing left: all logits 0, argmax is class 0
            assert curves[name][-1] == np.mean(labels[mask] == 0)


def test_pruning_curve_errors_and_empty_group():
    hidden, w2, labels = np.ones((4, 3)), np.ones((5, 3)), np.zeros(4, int)
    curves = pruning_curve(hidden, w2, np.arange(3), labels, {"none": np.zeros(4, bool)})
    assert np.isnan(curves["none"]).all()
    good = {"all": np.ones(4, bool)}
    for args in [
        (hidden, np.ones((5, 2)), np.arange(3), labels, good),
        (hidden, w2, np.array([0, 0, 1]), labels, good),
        (hidden, w2, np.arange(2), labels, good),
        (hidden, w2, np.arange(3), np.zeros(3, int), good),
        (hidden, w2, np.arange(3), labels, {"x": np.ones(4, int)}),
    ]:
        with pytest.raises(ValueError, match="expected .*, got"):
            pruning_curve(*args)


def coexistence_network(p: int = 7, phases: int = 3):
    """A modular-addition net that fits corrupted labels with lookup neurons.

    Fourier neurons: u = cos(θm + φ), v = cos(θn + ψ), w[q] = cos(θq + φ + ψ)
    for θ = 2πf/p, f = 1..(p−1)/2, φ, ψ ∈ {2πj/phases}.  Summed over the
    phases, (u + v)² · w leaves only cos(θ(m + n − q)), so the logits are
    ∝ p·[q = m + n] − 1: the true rule, margin scaled to 1 below.
    Lookup neuron for a corrupted pair (m*, n*) → y': u = e_{m*}, v = e_{n*},
    w = c·e_{y'}; it adds 4c to y' on (m*, n*) and c where one index matches.
    With c = 0.4 and all m*, n* distinct, 4c > 1 > 2c: the corrupted pairs
    are memorised and no other pair is flipped.
    """
    thetas = [2 * np.pi * f / p for f in range(1, (p - 1) // 2 + 1)]
    angles = 2 * np.pi * np.arange(phases) / phases
    j = np.arange(p)
    u, v, w = [], [], []
    for theta, phi, psi in itertools.product(thetas, angles, angles):
        u.append(np.cos(theta * j + phi))
        v.append(np.cos(theta * j + psi))
        w.append(np.cos(theta * j + phi + psi))
    # logit margin of the sum: (phases²/2) · p/2 (true class minus any other)
    w = [wk / (phases**2 / 2 * p / 2) for wk in w]
    n_fourier = len(u)
    corrupted = [(i, (2 * i + 3) % p) for i in range(3)]  # distinct m's and n's
    wrong = {pair: (sum(pair) + 1 + k) % p for k, pair in enumerate(corrupted)}
    for (m, n), y in wrong.items():
        u.append(np.eye(p)[m])
        v.append(np.eye(p)[n])
        w.append(0.4 * np.eye(p)[y])
    w1 = np.hstack([np.array(u), np.array(v)])
    return w1, np.array(w).T, n_fourier, wrong


def test_pruning_low_ipr_first_removes_memorisation():
    p = 7
    w1, w2, n_fourier, wrong = coexistence_network(p)
    m, n = np.divmod(np.arange(p * p), p)
    x = np.hstack([np.eye(p)[m], np.eye(p)[n]])
    hidden = (x @ w1.T) ** 2
    truth = (m + n) % p
    observed = truth.copy()
    corrupted = np.zeros(p * p, bool)
    for (mm, nn), y in wrong.items():
        observed[mm * p + nn], corrupted[mm * p + nn] = y, True
    assert np.all(observed[corrupted] != truth[corrupted])
    # precondition: the hand-built net fits every observed label (coexistence)
    np.testing.assert_array_equal(np.argmax(hidden @ w2.T, axis=1), observed)

    ipr = neuron_ipr(w1, w2)
    np.testing.assert_allclose(ipr[:n_fourier], 1.0, atol=1e-12)
    np.testing.assert_allclose(ipr[n_fourier:], 1 / (p // 2 + 1), atol=1e-12)
    orders = prune_orders(ipr)
    n_mem = len(wrong)
    assert set(orders["ascending"][:n_mem]) == set(range(n_fourier, n_fourier + n_mem))

    groups = {"clean": ~corrupted, "corrupted": corrupted}
    asc = pruning_curve(hidden, w2, orders["ascending"], observed, groups)
    inverted = pruning_curve(hidden, w2, orders["ascending"], truth, {"corrupted": corrupted})
    assert asc["clean"][0] == 1.0 and asc["corrupted"][0] == 1.0
    # memorising neurons gone: corrupted rows revert to the true rule
    np.testing.assert_array_equal(asc["clean"][1:n_mem + 1], 1.0)
    assert asc["corrupted"][n_mem] == 0.0
    assert inverted["corrupted"][n_mem] == 1.0
    assert np.all(np.diff(asc["corrupted"][:n_mem + 1]) < 0)

    desc = pruning_curve(hidden, w2, orders["descending"], observed, groups)
    # Fourier neurons gone: lookups still recall the corrupted labels, clean rows fail
    np.testing.assert_array_equal(desc["corrupted"][:n_fourier + 1], 1.0)
    assert desc["clean"][n_fourier] < 0.5


# --------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------


PHASE_CASES = [
    # (train, test, xi, phase)
    (0.98, 0.98, 0.35, "coexistence"),
    (0.80, 0.99, 0.35, "partial_inversion"),
    (0.66, 1.00, 0.35, "full_inversion"),
    (1.00, 0.30, 0.35, "memorization"),
    (0.50, 0.40, 0.35, "forgetting"),
    # boundaries, ξ = 0.35: t_full = 0.70, t_gen = 0.90
    (0.70, 0.95, 0.35, "partial_inversion"),   # train = t_full reaches it
    (0.6999, 0.95, 0.35, "full_inversion"),
    (0.90, 0.95, 0.35, "coexistence"),         # train = 0.90 reaches it
    (0.8999, 0.95, 0.35, "partial_inversion"),
    (0.98, 0.90, 0.35, "coexistence"),         # test = 0.90 generalises
    (0.98, 0.8999, 0.35, "memorization"),
    (0.90, 0.10, 0.35, "memorization"),
    (0.8999, 0.10, 0.35, "forgetting"),
    # ξ < 0.15: t_full > 0.90; coexistence is checked first, so train ≥ 0.90 is coexistence
    (0.92, 0.99, 0.10, "coexistence"),
    (0.95, 0.99, 0.10, "coexistence"),         # train = t_full
    (0.85, 0.99, 0.10, "full_inversion"),
    (1.00, 1.00, 0.0, "coexistence"),          # ξ = 0: nothing to invert
    (0.05, 0.95, 1.0, "partial_inversion"),    # t_full = 0.05
    (0.0, 0.0, 0.0, "forgetting"),
]


@pytest.mark.parametrize("train, test, xi, expected", PHASE_CASES)
def test_phase_cases(train, test, xi, expected):
    assert phase(train, test, xi) == expected


def test_phase_exhaustive():
    grid = np.round(np.linspace(0, 1, 41), 10)
    train, test, xi = np.meshgrid(grid, grid, np.array([0.0, 0.05, 0.1, 0.15, 0.35, 0.6, 1.0]),
                                  indexing="ij")
    codes = np.vectorize(lambda a, b, c: PHASES.index(phase(a, b, c)))(train, test, xi)
    assert codes.shape == train.shape and codes.dtype.kind == "i"
    assert set(np.unique(codes)) == set(range(len(PHASES)))
    np.testing.assert_array_equal([phase(0.98, 0.98, 0.35), phase(0.5, 0.4, 0.35)],
                                  ["coexistence", "forgetting"])


@pytest.mark.parametrize("train, test, xi", [
    (1.1, 0.5, 0.2), (0.5, -0.1, 0.2), (0.5, 0.5, 1.5), (np.nan, 0.5, 0.2), (0.5, 0.5, -0.01),
])
def test_phase_rejects_bad_inputs(train, test, xi):
    with pytest.raises(ValueError, match="expected .*, got"):
        phase(train, test, xi)


# --------------------------------------------------------------------------
# Two-stage curve
# --------------------------------------------------------------------------


def test_settled_train_accuracy():
    assert settled_train_accuracy(0.35, 97) == pytest.approx(0.65 + 0.35 / 97, abs=1e-15)
    assert settled_train_accuracy(0.0, 97) == 1.0
    assert settled_train_accuracy(1.0, 4) == 0.25
    with pytest.raises(ValueError, match="expected"):
        settled_train_accuracy(0.2, 0)
    with pytest.raises(ValueError, match="expected"):
        settled_train_accuracy(1.2, 97)


def test_two_stage_finds_peak_and_settle():
    epochs = np.arange(0, 1000, 10)
    acc = np.where(epochs < 200, epochs / 200 * 0.99, 1.0)
    acc = np.where(epochs >= 600, 0.654, acc)
    out = two_stage(epochs, acc, xi=0.35, p=97)
    assert out["peak_epoch"] == 200 and out["peak_train_acc"] == 1.0
    assert out["settle_epoch"] == 600
    assert out["settled_train_acc"] == pytest.approx(0.654)
    assert out["target"] == pytest.approx(0.65 + 0.35 / 97)
    assert isinstance(out["peak_epoch"], int) and isinstance(out["settle_epoch"], int)

    # a transient dip into the band before 600 is not "settled": it must stay
    dipped = acc.copy()
    dipped[epochs == 400] = 0.66
    assert two_stage(epochs, dipped, 0.35, 97)["settle_epoch"] == 600


def test_two_stage_without_second_stage():
    epochs = np.arange(0, 1000, 10)
    acc = np.minimum(epochs / 200, 1.0)
    out = two_stage(epochs, acc, 0.35, 97)
    assert out["peak_epoch"] == 200
    assert out["settle_epoch"] is None and out["settled_train_acc"] is None
    # the peak is already at the settled level: no first stage above it
    flat = np.minimum(epochs / 200, 0.66)
    assert two_stage(epochs, flat, 0.35, 97)["settle_epoch"] is None
    with pytest.raises(ValueError, match="expected .*, got"):
        two_stage(epochs[:-1], acc, 0.35, 97)


# --------------------------------------------------------------------------
# BatchNorm gain
# --------------------------------------------------------------------------


def test_bn_effective_gain():
    gamma = np.array([1.0, -2.0, 0.5])
    var = np.array([4.0, 0.25, 0.0])
    expected = [1 / np.sqrt(4 + 1e-5), -2 / np.sqrt(0.25 + 1e-5), 0.5 / np.sqrt(1e-5)]
    # exact: the same correctly rounded IEEE +, sqrt and / on the same float64 values
    np.testing.assert_array_equal(bn_effective_gain(gamma, var), expected)
    # 4 + 1e-3 there, the literal 4.001 here: within 2u of each other (a rounding
    # each), u after sqrt, then sqrt and / round once more on each side: γ_3·2
    np.testing.assert_allclose(bn_effective_gain(gamma, var, eps=1e-3)[0], 1 / np.sqrt(4.001),
                               rtol=2 * gamma_n(np.float64, 3), atol=0)
    with pytest.raises(ValueError, match="expected .*, got"):
        bn_effective_gain(gamma, var[:2])


def test_gain_ratio():
    ipr = np.array([0.9, 0.2, 0.8, 0.1, 0.5, 0.3])
    gain = np.array([2.0, 1.0, -2.0, 1.0, 2.0, -1.0])
    out = gain_ratio(gain, ipr)
    assert out["n_high"] == 3 and out["n_low"] == 3
    assert out["high_mean_gain"] == 2.0 and out["low_mean_gain"] == 1.0
    assert out["ratio"] == 2.0
    # Spearman against the definition: Pearson of average ranks
    expected = np.corrcoef(rankdata(np.abs(gain)), rankdata(ipr))[0, 1]
    # SciPy's Pearson against NumPy's corrcoef of the same exact ranks:
    # centred half-integer ranks are exact, then each path normalises and takes a
    # length-n dot product whose |terms| sum to ≤ 1 (Cauchy–Schwarz): sum_atol with
    # n + 4 roundings (the norms' roots and divisions).
    assert out["spearman"] == pytest.approx(expected, abs=sum_atol(np.float64, 6 + 4, 1.0))
    assert gain_ratio(np.arange(1.0, 6.0), np.linspace(0, 1, 5))["spearman"] == pytest.approx(1.0)

    empty = gain_ratio(gain, np.full(6, 0.1))
    assert empty["n_high"] == 0 and np.isnan(empty["ratio"]) and np.isnan(empty["high_mean_gain"])
    assert np.isnan(gain_ratio(gain, np.full(6, 0.9))["ratio"])
    with pytest.raises(ValueError, match="expected .*, got"):
        gain_ratio(gain, ipr[:3])


def test_spearman_with_ties():
    rng = np.random.default_rng(3)
    gain, ipr = rng.normal(size=30), np.round(rng.random(30), 1)  # ties in ipr
    expected = np.corrcoef(rankdata(np.abs(gain)), rankdata(ipr))[0, 1]
    # as in test_gain_ratio: two Pearson codes on the same exact ranks, n = 30
    assert gain_ratio(gain, ipr)["spearman"] == pytest.approx(expected,
                                                              abs=sum_atol(np.float64, 30 + 4, 1.0))
    assert np.isnan(gain_ratio(np.ones(4), np.arange(4.0))["spearman"])  # constant gain


def test_ranks_average_ties():
    np.testing.assert_array_equal(rankdata(np.array([3.0, 1.0, 3.0, 2.0, 1.0])),
                                  [4.5, 1.5, 4.5, 3.0, 1.5])
