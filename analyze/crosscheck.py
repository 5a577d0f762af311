"""Check the store-based edit against the real model, rebuilt from stored weights.

This is the one place analyze imports capture: to rebuild a model (DESIGN.md §1).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

import stores
from stores import slabs
from capture.models import build_model, load_weights
from stores.config import run_config_from_dict

from .edit import edit_state_dict

log = logging.getLogger(__name__)


def rebuild(path: str, state: dict[str, np.ndarray], in_shape: tuple[int, ...]) -> torch.nn.Module:
    """The run's model for inputs of `in_shape`, with `state` loaded.

    Parameters
    ----------
    path : str
        The run store (its config says which model).
    state : dict of str to ndarray
        The weights to load.
    in_shape : tuple of int
        One input's shape.

    Returns
    -------
    torch.nn.Module
    """
    attrs = stores.run_attrs(path)
    model = build_model(run_config_from_dict(attrs["config"]).model, in_shape,
                        state[f"{attrs.get('head', 'head')}.weight"].shape[0],
                        weights=False)  # `state` is loaded next
    return load_weights(model, state)


def crosscheck_edit(path: str, slot: int, weight: np.ndarray,
                    store_predictions: np.ndarray) -> dict:
    """Run the zero-bias edited model on the stored inputs; compare with the store path.

    Parameters
    ----------
    path : str
        The run store.
    slot : int
        The committed slot of the epoch to check.
    weight : ndarray of shape (n_classes, units)
        The edited head weight (`edit.velpic_weight`).
    store_predictions : ndarray of shape (sample,)
        The edited predictions computed from the stored penultimate activations.

    Returns
    -------
    dict
        {"crosscheck_slot", "crosscheck_agreement"}: the fraction of probe-set samples
        whose predictions agree (below 1 only through float16 rounding of the stored
        penultimate activations); empty without an `input` capture point.
    """
    if "input" not in stores.layers(path):
        log.warning("%s: no `input` capture point; edit cross-check skipped", path)
        return {}
    if "config" not in stores.run_attrs(path):  # a recorder's store: no model to rebuild
        log.info("%s: no run config to rebuild the model from; edit cross-check skipped", path)
        return {}
    head = stores.run_attrs(path).get("head", "head")
    in_shape = tuple(stores.layer_attrs(path, "input")["original_shape"])
    state = {name: slabs.weight_slab(path, name, slot) for name in stores.param_names(path)}
    model = rebuild(path, edit_state_dict(state, head, weight, keep_bias=False), in_shape).eval()
    with torch.inference_mode():
        x = torch.as_tensor(slabs.slab(path, "input", slot).astype(np.float32))
        predictions = model(x.reshape(len(x), *in_shape)).argmax(1).numpy()
    agreement = float(np.mean(predictions == store_predictions))
    return {"crosscheck_slot": int(slot), "crosscheck_agreement": agreement}
