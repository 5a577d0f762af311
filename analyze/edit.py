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
    """The (n_classes, d) weight with row c = v_c; a class absent from training stays 0."""
    weight = np.zeros((n_classes, probe.coef_.shape[1]), dtype=np.float64)
    weight[np.asarray(probe.classes_, dtype=int)] = probe.coef_
    return weight


def edit_state_dict(state: Mapping[str, np.ndarray], head: str, weight: np.ndarray,
                    keep_bias: bool = False) -> dict[str, np.ndarray]:
    """A new state dict whose `head` layer has `weight` and a zero (or the kept) bias."""
    old = state[f"{head}.weight"]
    if old.shape != weight.shape:
        raise ValueError(f"{head}.weight: expected shape {old.shape}, got {weight.shape}")
    new = {k: np.array(v, copy=True) for k, v in state.items()}
    new[f"{head}.weight"] = np.asarray(weight, dtype=old.dtype).copy()
    if f"{head}.bias" in new and not keep_bias:
        new[f"{head}.bias"] = np.zeros_like(new[f"{head}.bias"])
    return new


def edited_logits(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """The final layer's output from its input: x Wᵀ (+ b)."""
    logits = np.asarray(x, dtype=np.float64) @ np.asarray(weight, dtype=np.float64).T
    return logits if bias is None else logits + bias


def variant_logits(x: np.ndarray, head_weight: np.ndarray, head_bias: np.ndarray | None,
                   edited_weight: np.ndarray) -> dict[str, np.ndarray]:
    """Logits of the model as trained and of both edits, from penultimate activations."""
    return {
        "unedited": edited_logits(x, head_weight, head_bias),
        "edit_zero_bias": edited_logits(x, edited_weight),
        "edit_keep_bias": edited_logits(x, edited_weight, head_bias),
    }
