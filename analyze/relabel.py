"""P1's relabel-and-retrain, the analysis half: which labels the retrained model gets.

The test split is cut 80/20 (seeded); the layer whose MASC (observed-label subspaces,
the primary n) is most accurate on the 20% part at the run's final epoch relabels the
whole training set with its predictions: subspaces fitted on the training rows, applied
to the same rows (as `angle_relabel` in the authors' MASC/angle_pytorch.py does), so
where MASC fits the observed labels exactly the relabelling changes nothing. Capture
then fine-tunes the memorized model on those labels (`init.labels: relabel`), early-stopping on the 20% part and reporting the
80% part. Pure numerics: arrays in, a Dataset out.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from sklearn.model_selection import train_test_split

HOLDOUT = 0.2  # the part of the test split that chooses the layer and stops the training
PARTS = ("holdout", "rest")


def holdout_mask(split: np.ndarray, seed: int) -> np.ndarray:
    """The seeded 20% of the test split, cut as the authors' code cuts it.

    Parameters
    ----------
    split : ndarray of str, shape (sample,)
        Each sample's split.
    seed : int
        `analysis.relabel_seed` (2345 in the authors' `pytorch_retrain_early.py`).

    Returns
    -------
    ndarray of bool, shape (sample,)
        True on the part scikit-learn's `train_test_split` of the test rows
        (`test_size=0.2`, `random_state=seed`) holds out.
    """
    test_rows = np.flatnonzero(split == "test")
    _, chosen = train_test_split(test_rows, test_size=HOLDOUT, random_state=seed)
    mask = np.zeros(len(split), dtype=bool)
    mask[chosen] = True
    return mask


def _accuracy(pred: np.ndarray, true: np.ndarray, rows: np.ndarray) -> float:
    return float(np.mean(pred[rows] == true[rows])) if rows.any() else float("nan")


def relabel(table: dict[str, np.ndarray], masc: dict[str, np.ndarray], model: np.ndarray | None,
            *, seed: int, epoch: int, n_components: float) -> xr.Dataset:
    """`analysis/relabel` of one run: the labels its retrained model gets.

    Parameters
    ----------
    table : dict of str to ndarray
        The run's sample table (split, label_true, label_observed).
    masc : dict of str to ndarray
        layer -> MASC's predictions on every sample (sample,), in layer order.
    model : ndarray or None
        The model's own predictions (sample,), if known.
    seed : int
        The holdout's seed (`holdout_mask`).
    epoch : int
        The epoch the predictions are from.
    n_components : float
        MASC's n (recorded).

    Returns
    -------
    xarray.Dataset
        `label` (the best layer's MASC predictions on the training rows, the true labels
        elsewhere), `holdout`, `layer_accuracy` (layer, part), and the choice in attrs.
    """
    split, true = table["split"], table["label_true"]
    holdout = holdout_mask(split, seed)
    rest = (split == "test") & ~holdout
    layers = list(masc)
    acc = np.array([[_accuracy(masc[layer], true, rows) for rows in (holdout, rest)] for layer in layers])
    best = layers[int(np.argmax(np.nan_to_num(acc[:, 0], nan=-1.0)))]  # ties: the earlier layer
    label = np.where(split == "train", masc[best], true).astype(np.int64)
    return xr.Dataset(
        {"label": ("sample", label), "holdout": ("sample", holdout),
         "layer_accuracy": (("layer", "part"), acc)},
        coords={"layer": np.array(layers, dtype=object), "part": np.array(PARTS, dtype=object)},
        attrs={"layer": best, "epoch": int(epoch), "seed": int(seed), "n_components": float(n_components),
               "holdout_fraction": HOLDOUT,
               "model_rest_accuracy": None if model is None else _accuracy(model, true, rest),
               "relabelled_changed": float(np.mean(label[split == "train"] != table["label_observed"][split == "train"])),
               "relabelled_correct": float(np.mean(label[split == "train"] == true[split == "train"])),
               "description": "P1's relabel-and-retrain: `label` = the MASC predictions of `layer` "
                              "(best on the holdout, the seeded 20% of the test split) on the "
                              "training rows, the true labels elsewhere; `holdout` marks that 20%"},
    )
