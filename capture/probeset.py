"""The probe set: the samples a recorder runs the model on at every recorded epoch.

Its inputs are one tensor or an iterable of batches in a fixed order (a DataLoader with
shuffle=False); its sample table (split, index, true and observed labels, corrupted) is
what a store's `samples/` holds.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import torch

from stores import schema

from .epoch import probe_batches

__all__ = ["ProbeSet"]


def _column(values, name: str, n: int | None = None) -> np.ndarray:
    """A 1-D NumPy column of the sample table from an array or a tensor."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    values = np.asarray(values)
    if values.ndim != 1 or (n is not None and len(values) != n):
        raise ValueError(f"{name}: expected shape ({'n' if n is None else n},), got {values.shape}")
    return values


class ProbeSet:
    """The samples a `Recorder` runs the model on at every recorded epoch.

    Parameters
    ----------
    inputs : torch.Tensor or iterable
        A tensor (n, ...), or an iterable of batches in a fixed order (a DataLoader with
        shuffle=False, a list): a batch is a tensor or a tuple/list whose first item is
        the input. Read again at every recorded epoch.
    labels_true : array-like of int
        (n,): each sample's true label.
    labels_observed : array-like of int, optional
        (n,): the label training sees (default: the true one).
    split : array-like of str, optional
        (n,): each sample's split, from `stores.schema.SPLITS` (default: all "train").
    corrupted : array-like of bool, optional
        (n,): whether a sample's label was corrupted (default: observed != true).
    index : array-like of int, optional
        (n,): each sample's index in its source dataset (default: 0 ... n-1).
    attrs : mapping, optional
        Attributes of the store's `samples/` (how the labels were corrupted).

    Attributes
    ----------
    inputs
        As given.
    samples : dict of str to numpy.ndarray
        The store's sample table: split, index, label_true, label_observed, corrupted.
    attrs : dict
    """

    def __init__(self, inputs, labels_true, labels_observed=None, split=None, corrupted=None,
                 index=None, *, attrs: Mapping | None = None):
        true = _column(labels_true, "labels_true")
        n = len(true)
        observed = true if labels_observed is None else _column(labels_observed, "labels_observed", n)
        split = np.full(n, "train") if split is None else _column(split, "split", n).astype(str)
        unknown = sorted(set(split) - set(schema.SPLITS))
        if unknown:
            raise ValueError(f"split: expected values from {', '.join(schema.SPLITS)}, got {unknown}")
        if corrupted is None:
            corrupted = observed != true
        index = np.arange(n) if index is None else _column(index, "index", n)
        if isinstance(inputs, torch.Tensor):
            if len(inputs) != n:
                raise ValueError(f"inputs: expected {n} rows (the labels' length), got {len(inputs)}")
        elif not isinstance(inputs, Iterable) or iter(inputs) is inputs:
            raise TypeError("inputs: expected a tensor or a re-iterable of batches (a DataLoader "
                            f"with shuffle=False, a list), got {type(inputs).__name__}")
        self.inputs, self.attrs = inputs, dict(attrs or {})
        self.samples = {"split": split, "index": index, "label_true": true,
                        "label_observed": observed,
                        "corrupted": _column(corrupted, "corrupted", n).astype(bool)}

    def __len__(self) -> int:
        return len(self.samples["split"])

    def first_batch(self, device: torch.device | None = None) -> torch.Tensor:
        """The first batch of inputs (at most 4 rows of a tensor), for shapes and search."""
        return next(probe_batches(self.inputs, 4, device))
