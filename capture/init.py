"""Edit, then train on: the starting weights of a run that continues a stored one.

The source store holds the weights at every committed epoch and, once `analyze` has run,
the VeLPIC edit of its last layer (`analysis/edit/weight`). Capture only reads stores, so
the edit is taken from there rather than refitted here.
"""

from __future__ import annotations

import numpy as np

import stores
from stores import RunConfig, StoreError, location


def source_path(config: RunConfig, root: str) -> str:
    source = config.init.source
    return location.normalize(source) if source.endswith(".zarr") else location.join(root, f"{source}.zarr")


def initial_state(config: RunConfig, root: str, samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The source's weights at `init.epoch`, with the edited head (bias 0) if asked."""
    path = source_path(config, root)
    if not location.is_store(path):
        raise StoreError(f"init.source: no run store at {path}")
    slots, epochs = stores.committed_slots(path)
    if config.init.epoch not in epochs:
        raise StoreError(f"init.epoch: expected one of the committed epochs of {path} "
                         f"({', '.join(map(str, epochs))}), got {config.init.epoch}")
    slot = int(slots[list(epochs).index(config.init.epoch)])
    theirs = stores.sample_table(path)
    if not all(np.array_equal(theirs[k], samples[k]) for k in ("index", "label_observed", "split")):
        raise StoreError(f"init.source: {path} was trained on other samples or labels than this run")
    state = {name: stores.weight_slab(path, name, slot) for name in stores.param_names(path)}
    if config.init.edit == "none":
        return state
    return _edited(path, state, config.init.epoch)


def _edited(path: str, state: dict[str, np.ndarray], epoch: int) -> dict[str, np.ndarray]:
    run = stores.open_run(path)
    try:
        edit = run["analysis/edit"]
    except KeyError:
        raise StoreError(f"init.edit: {path} has no analysis/edit yet; "
                         f"run `python -m analyze {run.attrs.get('pipeline', 'PIPELINE')}` first")
    head = edit.attrs.get("head", "head")
    weight = edit["weight"].sel(epoch=epoch).values
    new = dict(state)  # out of place: the source's arrays are not touched
    new[f"{head}.weight"] = weight.astype(np.float32)
    if f"{head}.bias" in new:
        new[f"{head}.bias"] = np.zeros_like(new[f"{head}.bias"])
    return new
