"""The last-layer edit: VeLPIC's class vectors become the final linear layer's weights.

Pure functions, out of place: a state dict goes in, a new one comes out. Because the
final layer is linear, the edited model's predictions on the probe set follow from the
stored penultimate activations alone (`edited_logits`).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .probes import VeLPIC

VARIANTS = ("unedited", "edit_zero_bias", "edit_keep_bias")


def velpic_weight(probe: VeLPIC, n_classes: int) -> np.ndarray:
    """VeLPIC's class vectors as a final layer's weight.

    Parameters
    ----------
    probe : VeLPIC
        Fitted on the penultimate layer.
    n_classes : int
        The model's number of outputs.

    Returns
    -------
    ndarray of shape (n_classes, n_features)
        Row c = v_c (float64); a class absent from training stays 0.
    """
    weight = np.zeros((n_classes, probe.coef_.shape[1]), dtype=np.float64)
    weight[np.asarray(probe.classes_, dtype=int)] = probe.coef_
    return weight


def edit_state_dict(state: Mapping[str, np.ndarray], head: str, weight: np.ndarray,
                    keep_bias: bool = False) -> dict[str, np.ndarray]:
    """The edited model's weights, out of place.

    Parameters
    ----------
    state : mapping of str to ndarray
        The model's state dict (left unchanged).
    head : str
        The final linear layer's parameter prefix.
    weight : ndarray of shape (n_classes, n_features)
        Its new weight (`velpic_weight`), of the old weight's shape.
    keep_bias : bool, default False
        Keep the layer's bias instead of zeroing it.

    Returns
    -------
    dict of str to ndarray
        A copy of `state` whose `head` layer has `weight` (in the old dtype) and a zero
        (or the kept) bias.
    """
    old = state[f"{head}.weight"]
    if old.shape != weight.shape:
        raise ValueError(f"{head}.weight: expected shape {old.shape}, got {weight.shape}")
    new = {k: np.array(v, copy=True) for k, v in state.items()}
    new[f"{head}.weight"] = np.asarray(weight, dtype=old.dtype).copy()
    if f"{head}.bias" in new and not keep_bias:
        new[f"{head}.bias"] = np.zeros_like(new[f"{head}.bias"])
    return new


def edited_logits(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """The final layer's output from its input: x Wᵀ (+ b), in float64.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
        The penultimate activations.
    weight : ndarray of shape (n_classes, n_features)
    bias : ndarray of shape (n_classes,) or None

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
    """
    logits = np.asarray(x, dtype=np.float64) @ np.asarray(weight, dtype=np.float64).T
    return logits if bias is None else logits + bias


def variant_logits(x: np.ndarray, head_weight: np.ndarray, head_bias: np.ndarray | None,
                   edited_weight: np.ndarray) -> dict[str, np.ndarray]:
    """Logits of the model as trained and of both edits, from penultimate activations.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
        The penultimate activations.
    head_weight, head_bias : ndarray, ndarray or None
        The trained final layer.
    edited_weight : ndarray of shape (n_classes, n_features)
        `velpic_weight`'s.

    Returns
    -------
    dict of str to ndarray of shape (n_samples, n_classes)
        VARIANTS -> logits: unedited, edit_zero_bias, edit_keep_bias.
    """
    return {
        "unedited": edited_logits(x, head_weight, head_bias),
        "edit_zero_bias": edited_logits(x, edited_weight),
        "edit_keep_bias": edited_logits(x, edited_weight, head_bias),
    }
