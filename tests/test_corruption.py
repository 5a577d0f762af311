"""Label corruption: each mode's selection, its new labels, seeding and argument checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from capture.corruption import MODES, corrupt
from capture.data import load_dataset
from stores.config import DataConfig

K = 10
# Chi-square with K - 1 = 9 degrees of freedom exceeds this with probability 1e-4.
CHI2_9DF_P1E4 = 33.72


@pytest.fixture(scope="module")
def uniform_labels() -> np.ndarray:
    return np.random.default_rng(1234).integers(0, K, size=1000)


@pytest.fixture(scope="module")
def digits_labels() -> np.ndarray:
    """The digits training labels, as capture corrupts them."""
    y = load_dataset(DataConfig()).y_train
    assert len(y) == 1437 and set(np.unique(y)) == set(range(K))
    return y


@pytest.fixture(params=["uniform", "digits"])
def labels(request, uniform_labels, digits_labels) -> np.ndarray:
    return {"uniform": uniform_labels, "digits": digits_labels}[request.param]


def within(count: float, n: int, p: float, sds: float = 4.0) -> bool:
    """`count` successes of `n` Bernoulli(p) trials is within `sds` standard deviations."""
    return abs(count - n * p) <= sds * math.sqrt(n * p * (1 - p))


def chi2_uniform(values: np.ndarray, k: int = K) -> float:
    counts = np.bincount(values, minlength=k)
    expected = len(values) / k
    return float(((counts - expected) ** 2 / expected).sum())


def check_common(labels, observed, mask):
    assert observed.shape == labels.shape and mask.shape == labels.shape
    assert mask.dtype == bool
    assert np.issubdtype(observed.dtype, np.integer)
    assert observed.min() >= 0 and observed.max() < K
    np.testing.assert_array_equal(observed[~mask], labels[~mask])


# ------------------------------------------------------------------ resample
@pytest.mark.parametrize("rate", [0.1, 0.6, 0.9])
@pytest.mark.parametrize("seed", [0, 1])
def test_resample(labels, rate, seed):
    before = labels.copy()
    observed, mask = corrupt(labels, "resample", rate, K, seed)
    np.testing.assert_array_equal(labels, before)  # the input is not modified
    check_common(labels, observed, mask)
    n = len(labels)
    assert within(mask.sum(), n, rate), (mask.sum(), n * rate)
    # A redrawn label equals the true one with probability 1/K.
    m = int(mask.sum())
    assert within((observed[mask] == labels[mask]).sum(), m, 1 / K)
    assert chi2_uniform(observed[mask]) < CHI2_9DF_P1E4


def test_resample_draws_uniformly_whatever_the_true_labels():
    """All-zero labels: the redrawn ones are uniform over every class, not the true ones."""
    labels = np.zeros(20_000, dtype=np.int64)
    observed, mask = corrupt(labels, "resample", 0.5, K, seed=3)
    assert within(mask.sum(), len(labels), 0.5)
    assert chi2_uniform(observed[mask]) < CHI2_9DF_P1E4
    assert within((observed[mask] == 0).sum(), int(mask.sum()), 1 / K)
    assert (observed[~mask] == 0).all()


def test_resample_rate_zero_and_one(labels):
    observed, mask = corrupt(labels, "resample", 0.0, K, seed=0)
    assert not mask.any()
    np.testing.assert_array_equal(observed, labels)
    observed, mask = corrupt(labels, "resample", 1.0, K, seed=0)
    assert mask.all()
    assert within((observed == labels).sum(), len(labels), 1 / K)
    assert chi2_uniform(observed) < CHI2_9DF_P1E4


# ------------------------------------------------------------------ fraction
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.25, 0.6, 0.9, 1.0])
def test_fraction(labels, rate):
    before = labels.copy()
    observed, mask = corrupt(labels, "fraction", rate, K, seed=0)
    np.testing.assert_array_equal(labels, before)
    check_common(labels, observed, mask)
    assert mask.sum() == math.floor(rate * len(labels))
    if rate == 0.0:
        np.testing.assert_array_equal(observed, labels)
    if rate >= 0.6:
        assert within((observed[mask] == labels[mask]).sum(), int(mask.sum()), 1 / K)


def test_fraction_floor_of_a_non_integer_count():
    labels = np.arange(1001) % K
    _, mask = corrupt(labels, "fraction", 0.6, K, seed=0)
    assert mask.sum() == 600  # floor(600.6)


def test_fraction_draws_uniformly_whatever_the_true_labels():
    labels = np.zeros(20_000, dtype=np.int64)
    observed, mask = corrupt(labels, "fraction", 0.5, K, seed=3)
    assert mask.sum() == 10_000
    assert chi2_uniform(observed[mask]) < CHI2_9DF_P1E4
    assert (observed[~mask] == 0).all()


@pytest.mark.parametrize("mode", ["fraction", "shuffle"])
@pytest.mark.parametrize(("rate", "n", "count"), [(0.29, 100, 29), (0.57, 100, 57), (0.7, 10, 7),
                                                  (0.6, 1437, 862), (0.35, 4704, 1646)])
def test_exact_count_despite_binary_floating_point(mode, rate, n, count):
    """floor(rate * n) of the decimal rate: 0.29 * 100 is 28.999999999999996 in binary."""
    labels = np.arange(n) % K
    _, mask = corrupt(labels, mode, rate, K, seed=0)
    assert mask.sum() == count


# ------------------------------------------------------------------ shuffle
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.6, 1.0])
def test_shuffle(labels, rate):
    before = labels.copy()
    observed, mask = corrupt(labels, "shuffle", rate, K, seed=0)
    np.testing.assert_array_equal(labels, before)
    check_common(labels, observed, mask)
    assert mask.sum() == math.floor(rate * len(labels))
    # Labels are permuted among the selected examples: every count is unchanged.
    np.testing.assert_array_equal(np.bincount(observed, minlength=K), np.bincount(labels, minlength=K))
    np.testing.assert_array_equal(np.bincount(observed[mask], minlength=K),
                                  np.bincount(labels[mask], minlength=K))
    if rate >= 0.6:
        # A random permutation moves most labels: a pair of balanced classes agrees ~1/K.
        changed = (observed[mask] != labels[mask]).mean()
        assert changed > 0.8, changed


def test_shuffle_keeps_an_imbalanced_multiset():
    labels = np.repeat(np.arange(K), np.arange(1, K + 1) * 20)  # 20 zeros ... 200 nines
    observed, mask = corrupt(labels, "shuffle", 0.5, K, seed=5)
    assert mask.sum() == len(labels) // 2
    np.testing.assert_array_equal(np.sort(observed), np.sort(labels))
    np.testing.assert_array_equal(observed[~mask], labels[~mask])


# ------------------------------------------------------------------ all modes
@pytest.mark.parametrize("mode", MODES)
def test_same_seed_same_result(labels, mode):
    a = corrupt(labels, mode, 0.5, K, seed=7)
    b = corrupt(labels, mode, 0.5, K, seed=7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = corrupt(labels, mode, 0.5, K, seed=8)
    assert not np.array_equal(a[1], c[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("mode", MODES)
def test_accepts_a_list_of_labels(mode):
    labels = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]
    observed, mask = corrupt(labels, mode, 0.5, K, seed=0)
    check_common(np.array(labels), observed, mask)


def test_modes():
    assert MODES == ("resample", "fraction", "shuffle")


@pytest.mark.parametrize("mode", ["flip", "", "Resample", None])
def test_bad_mode(uniform_labels, mode):
    with pytest.raises(ValueError, match="resample, fraction, shuffle") as err:
        corrupt(uniform_labels, mode, 0.5, K, seed=0)
    assert repr(mode) in str(err.value)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), float("inf")])
def test_bad_rate(uniform_labels, mode, rate):
    with pytest.raises(ValueError, match=r"\[0, 1\]") as err:
        corrupt(uniform_labels, mode, rate, K, seed=0)
    assert repr(rate) in str(err.value)


# ------------------------------------------------------------------ the fixed mask (corruption.seed)
from capture.corruption import corrupt_fixed, for_run  # noqa: E402
from stores import load_pipeline  # noqa: E402
from tests.conftest import REPO  # noqa: E402


def test_fixed_seed_resample_is_the_papers_draw(uniform_labels):
    """The published definition, written out: NumPy's legacy generator seeded 42, the
    mask `rand(N) <= p`, then `choice(K, n_masked)` for the masked labels."""
    for rate in (0.2, 0.8):
        observed, mask = corrupt_fixed(uniform_labels, "resample", rate, K, seed=42)
        rs = np.random.RandomState(42)
        expected_mask = rs.rand(len(uniform_labels)) <= rate
        expected = uniform_labels.copy()
        expected[expected_mask] = rs.choice(K, expected_mask.sum())
        np.testing.assert_array_equal(mask, expected_mask)
        np.testing.assert_array_equal(observed, expected)


def test_fixed_mask_is_shared_by_the_seeds_and_differs_between_levels(uniform_labels):
    """Every seed of a published setting sees the same corrupted labels; other
    corruption levels see other ones (the mask of a lower level lies inside a higher
    level's, since both threshold the same uniform draws)."""
    pipeline = load_pipeline("mnist-mlp", REPO / "pipelines.yaml")
    draws = {}
    for run in pipeline.runs():
        observed, mask, seed = for_run(uniform_labels, run.corruption, K, run.seed)
        assert seed == 42
        draws.setdefault(run.corruption.rate, []).append((observed, mask))
    assert sorted(draws) == [0.0, 0.2, 0.4, 0.6, 0.8]
    for rate, per_seed in draws.items():
        assert len(per_seed) == 3
        for observed, mask in per_seed[1:]:
            np.testing.assert_array_equal(observed, per_seed[0][0])
            np.testing.assert_array_equal(mask, per_seed[0][1])
        assert within(mask.sum(), len(mask), rate)
    masks = [draws[r][0][1] for r in (0.2, 0.4, 0.6, 0.8)]
    observed = [draws[r][0][0] for r in (0.2, 0.4, 0.6, 0.8)]
    for lower, higher in zip(masks, masks[1:]):
        assert (lower <= higher).all() and (higher & ~lower).any()
    for a, b in zip(observed, observed[1:]):
        assert (a != b).any()
    assert not draws[0.0][0][1].any()


def test_without_a_corruption_seed_the_run_seed_draws_as_before(digits_labels):
    """quickstart has no corruption.seed: its corruption is `corrupt` with the run's seed."""
    config = load_pipeline("quickstart", REPO / "pipelines.yaml").run({"corruption": 0.6, "seed": 0})
    assert config.corruption.seed is None
    observed, mask, seed = for_run(digits_labels, config.corruption, K, run_seed=3)
    expected = corrupt(digits_labels, "resample", 0.6, K, seed=3)
    assert seed == 3
    np.testing.assert_array_equal(observed, expected[0])
    np.testing.assert_array_equal(mask, expected[1])
