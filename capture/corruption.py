"""Seeded label corruption of the training split, recorded per sample.

Each mode returns the observed labels and the mask of the examples it selected. A
selected example's new label may equal its true one (`resample`, `fraction`), so the
mask records what the corruption process touched, and `observed != true` what is wrong.

Where the corruption comes from (`for_run`): without `corruption.seed`, from the run's
seed through NumPy's `default_rng`, so the seeds of a setting see different corrupted
labels. With it (the published setups: 42), one mask for every run, drawn as the
latent-generalization papers' loaders draw it (read in `MASC/cnn_create.py` of
simranketha/MASC_DNN): NumPy's legacy global generator seeded with it, the mask
`rand(N) <= p`, then one uniform label per masked example (`choice(K, n_masked)`).
That legacy stream is what `np.random.seed` gives, so on the same training set in the
same order the corrupted labels are the authors' own.
"""

from __future__ import annotations

import numpy as np

from stores.config import CORRUPTION_MODES as MODES


def corrupt(labels: np.ndarray, mode: str, rate: float, n_classes: int,
            seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt `labels` under `mode` at `rate`, from NumPy's `default_rng(seed)`.

    Parameters
    ----------
    labels : numpy.ndarray
        The true labels (n,).
    mode : str
        One of `MODES` (`stores.config.CORRUPTION_MODES`).
    rate : float
        The share of examples selected, in [0, 1].
    n_classes : int
        The classes a redrawn label comes from.
    seed : int
        The generator's seed.

    Returns
    -------
    observed : numpy.ndarray
        int64 labels (n,) as training sees them.
    selected : numpy.ndarray
        bool (n,): the examples the corruption touched (a redrawn label may equal the
        true one).
    """
    if mode not in MODES:
        raise ValueError(f"corruption.mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"corruption.rate: expected a number in [0, 1], got {rate!r}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype=np.int64)
    return {"resample": _resample, "fraction": _fraction, "shuffle": _shuffle}[mode](
        labels, rate, n_classes, rng
    )


def for_run(labels: np.ndarray, config, n_classes: int, run_seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The corruption of a run's training labels, by its `CorruptionConfig`.

    Without `config.seed` the run's seed draws it (`corrupt`); with it, every run gets
    the same mask (`corrupt_fixed`).

    Parameters
    ----------
    labels : numpy.ndarray
        The training split's true labels.
    config : stores.config.CorruptionConfig
        mode, rate and an optional fixed seed.
    n_classes : int
        Number of classes.
    run_seed : int
        The run's seed.

    Returns
    -------
    tuple of (numpy.ndarray, numpy.ndarray, int)
        (observed labels, selected mask, the seed used).
    """
    if config.seed is None:
        return (*corrupt(labels, config.mode, config.rate, n_classes, seed=run_seed), run_seed)
    return (*corrupt_fixed(labels, config.mode, config.rate, n_classes, config.seed), config.seed)


def corrupt_fixed(labels: np.ndarray, mode: str, rate: float, n_classes: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed-seed corruption shared by all runs: `resample` as the papers draw it
    (legacy RandomState, `rand(N) <= rate`, then a uniform label for each selected
    example); the other modes as `corrupt` does, from `seed`."""
    if mode != "resample":
        return corrupt(labels, mode, rate, n_classes, seed)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"corruption.rate: expected a number in [0, 1], got {rate!r}")
    rng = np.random.RandomState(seed)
    labels = np.asarray(labels, dtype=np.int64)
    mask = rng.rand(len(labels)) <= rate
    observed = labels.copy()
    observed[mask] = rng.choice(n_classes, int(mask.sum()))
    return observed, mask


def _count(rate: float, n: int) -> int:
    """floor(rate * n), robust to binary floating point (0.29 * 100 = 28.999...96)."""
    return int(np.floor(round(rate * n, 9)))


def _resample(labels, rate, n_classes, rng):
    """Each label, with probability `rate`, is redrawn uniformly from all classes."""
    mask = rng.random(len(labels)) < rate
    drawn = rng.integers(0, n_classes, size=len(labels))
    return np.where(mask, drawn, labels), mask


def _fraction(labels, rate, n_classes, rng):
    """Exactly floor(rate * n) examples get uniform random labels."""
    k = _count(rate, len(labels))
    mask = np.zeros(len(labels), dtype=bool)
    mask[rng.choice(len(labels), size=k, replace=False)] = True
    observed = labels.copy()
    observed[mask] = rng.integers(0, n_classes, size=k)
    return observed, mask


def _shuffle(labels, rate, n_classes, rng):
    """Exactly floor(rate * n) examples have their labels permuted among themselves."""
    k = _count(rate, len(labels))
    chosen = rng.choice(len(labels), size=k, replace=False)
    mask = np.zeros(len(labels), dtype=bool)
    mask[chosen] = True
    observed = labels.copy()
    observed[chosen] = labels[rng.permutation(chosen)]
    return observed, mask
