"""How a task scores predictions: the probe set's masks and labels (`Samples`), the
accuracies every score averages (`SCORES`), and a predictor's `breakdown` into them and
into per-class test accuracies. Pure functions on in-memory arrays, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SCORES", "Breakdown", "Samples", "accuracies", "breakdown"]

# What each accuracy averages over: the train split against the observed labels (what
# the model was fitted to) and against the true ones, the test split (true labels), and
# the training rows split by whether their observed label differs from the true one
# (flipped: memorized against observed, latent against true) or not (unflipped, where
# the two labels agree).
SCORES = ("train_observed", "train_true", "test", "flipped_observed", "flipped_true", "unflipped")


@dataclass
class Breakdown:
    """One predictor's accuracies.

    Attributes
    ----------
    scores : dict
        score (SCORES) -> accuracy.
    per_class : ndarray of shape (n_classes,)
        Test accuracy per true class.
    """

    scores: dict[str, float]
    per_class: np.ndarray


@dataclass(frozen=True)
class Samples:
    """The probe set's masks and labels, as every score reads them.

    Attributes
    ----------
    train, test : ndarray of bool, shape (sample,)
        The splits.
    observed, true : ndarray of int, shape (sample,)
        The labels trained on and the true ones.
    n_classes : int
        Number of classes.
    """

    train: np.ndarray
    test: np.ndarray
    observed: np.ndarray
    true: np.ndarray
    n_classes: int

    @classmethod
    def of(cls, table: dict[str, np.ndarray], observed: np.ndarray | None = None,
           n_classes: int | None = None) -> "Samples":
        """From a store's sample table; `observed` replaces its observed labels (another
        run's, for the cross-run control)."""
        y_obs = table["label_observed"] if observed is None else observed
        y_true = table["label_true"]
        k = n_classes or int(max(y_true.max(), y_obs.max())) + 1
        return cls(table["split"] == "train", table["split"] == "test", y_obs, y_true, k)

    @property
    def flipped(self) -> np.ndarray:
        """(sample,) the training rows whose observed label is not the true one."""
        return self.train & (self.observed != self.true)

    def train_rows(self, x: np.ndarray) -> np.ndarray:
        """x's training rows: a view where they are one contiguous run (a captured probe
        set lists its training rows first), else a copy, as ``x[self.train]``."""
        rows = np.flatnonzero(self.train)
        if rows.size and rows[-1] - rows[0] + 1 == rows.size:
            return x[rows[0]: rows[-1] + 1]
        return x[self.train]

    def masks(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Score -> (rows it averages over, the labels it compares against)."""
        flipped = self.flipped
        return {
            "train_observed": (self.train, self.observed),
            "train_true": (self.train, self.true),
            "test": (self.test, self.true),
            "flipped_observed": (flipped, self.observed),
            "flipped_true": (flipped, self.true),
            "unflipped": (self.train & ~flipped, self.true),
        }

    def counts(self) -> dict[str, int]:
        """Score -> how many rows it averages over."""
        return {name: int(rows.sum()) for name, (rows, _) in self.masks().items()}

    def class_counts(self) -> np.ndarray:
        """(class,) test rows per true class."""
        return np.bincount(self.true[self.test], minlength=self.n_classes)[: self.n_classes]


def _mean(a: np.ndarray) -> float:
    return float(np.mean(a)) if len(a) else float("nan")


def accuracies(pred: np.ndarray, samples: Samples) -> dict[str, float]:
    """Accuracy of probe-set predictions on every score's rows (NaN where it has none)."""
    return {name: _mean(pred[rows] == labels[rows]) for name, (rows, labels) in samples.masks().items()}


def breakdown(pred: np.ndarray, samples: Samples) -> Breakdown:
    """A predictor's accuracies.

    Parameters
    ----------
    pred : ndarray of shape (sample,)
        Predictions on every sample of the probe set.
    samples : Samples
        The masks and labels to score them against.

    Returns
    -------
    Breakdown
        Every score, and the test accuracy per true class (NaN for a class without test
        rows).
    """
    hit = (pred == samples.true) & samples.test
    counts = samples.class_counts()
    per_class = np.bincount(samples.true[hit], minlength=samples.n_classes)[: samples.n_classes]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(counts > 0, per_class / np.maximum(counts, 1), np.nan)
    return Breakdown(accuracies(pred, samples), per_class)
