"""The internal fast path of analysis tasks: eager, positional NumPy reads of a store.

An analysis task opens the store itself and reads one (epoch, layer) slab, the probe
set's per-sample arrays, or a parameter at some epoch slots, once each. These readers
return plain NumPy arrays whose axes are known by position (a slab is (sample, unit),
a weight slab the parameter's own shape), indexed by epoch *slot*, not epoch number:
`committed_slots` maps one to the other. They are not part of the public API (`stores`
does not export them; DESIGN.md §7.2): people read a store with `stores.open_run` and
the xarray readers beside it.
"""

from __future__ import annotations

import numpy as np

from . import location, schema
from .errors import StoreError
from .groups import open_group, require_node


def committed_slots(path: str) -> tuple[np.ndarray, np.ndarray]:
    """The committed epochs of a store, in training order.

    Parameters
    ----------
    path : str
        The store whose commit flags to read (a capture may be writing it: only
        the epochs committed so far count).

    Returns
    -------
    slots, epochs : numpy.ndarray
        The epoch slots (int) and their epoch numbers (int64), sorted by epoch.

    Raises
    ------
    StoreError
        When a committed epoch's number is missing, or a store marked complete has lost
        commit flags inside its trained range (showing fewer epochs would be silently
        wrong).
    """
    group = open_group(path, checked=False)  # the flags' absent chunks mean False
    committed = require_node(group, f"{schema.EPOCHS}/committed", path)[:]
    slots = np.flatnonzero(committed)
    epochs = require_node(group, f"{schema.EPOCHS}/epoch", path)[:][slots]
    if (epochs < 0).any():  # the fill value -1: a committed epoch's number is missing
        slot = int(slots[np.flatnonzero(epochs < 0)[0]])
        raise StoreError(f"{path}: {schema.EPOCHS}/epoch chunk ({slot},) of committed slot {slot} "
                         f"is missing (damage, not fill): run `python -m stores validate {path}`, "
                         f"then `python -m stores repair {path}` and resume the capture")
    if group.attrs.get("status") == schema.STATUS_COMPLETE:
        schedule = list(group.attrs.get("schedule", []))
        lost = schema.lost_commits(committed, schedule, epochs)
        if lost and "config" not in group.attrs:  # a recorder may skip scheduled epochs
            lost = [e for e in lost if _written(path, group, schedule.index(e))]
        if lost:
            raise StoreError(f"{path}: marked complete but epoch(s) {', '.join(map(str, lost))} "
                             f"are not committed (lost commit flags or an interrupted repair): "
                             f"run `python -m stores repair {path}`")
    order = np.argsort(epochs, kind="stable")
    return slots[order], epochs[order]


def _written(path: str, group, slot: int) -> bool:
    """Whether an epoch slot holds any captured data (its first chunk of a capture point
    or a parameter): an epoch a recorder skipped holds none; one un-committed by a
    repair, or whose flag was lost, does.

    Parameters
    ----------
    path : str
        The store.
    group : zarr.Group
        Its root group.
    slot : int
        The epoch slot.

    Returns
    -------
    bool
    """
    for top in (schema.ACTIVATIONS, schema.WEIGHTS):
        for name, node in (group[top].groups() if top in group else ()):
            if schema.VALUES in node:
                array = node[schema.VALUES]
                key = array.metadata.encode_chunk_key((slot,) + (0,) * (array.ndim - 1))
                if location.is_file(location.join(path, top, name, schema.VALUES, key)):
                    return True
    return False


def sample_table(path: str) -> dict[str, np.ndarray]:
    """The probe set's per-sample arrays.

    Parameters
    ----------
    path : str
        The store whose probe set to read (through the checked reads: a missing
        chunk of it raises StoreError).

    Returns
    -------
    dict of str to numpy.ndarray
        `schema.SAMPLE_FIELDS` -> (sample,) arrays; `split` as fixed-width unicode.
    """
    group = open_group(path)[schema.SAMPLES]
    table = {name: group[name][:] for name in schema.SAMPLE_FIELDS}
    table["split"] = np.array(table["split"].tolist(), dtype=str)  # StringDType -> <U
    return table


def slab(path: str, layer: str, slot: int) -> np.ndarray:
    """One epoch slot of one capture point's activations, read once.

    Parameters
    ----------
    path : str
        The store to read the activations from.
    layer : str
        The capture point.
    slot : int
        The epoch slot (from `committed_slots`).

    Returns
    -------
    numpy.ndarray
        (sample, unit), in the stored dtype.
    """
    return open_group(path)[f"{schema.ACTIVATIONS}/{layer}/{schema.VALUES}"][slot]


def weight_slab(path: str, param: str, slot: int) -> np.ndarray:
    """One epoch slot of one parameter or buffer.

    Parameters
    ----------
    path : str
        The store to read the parameter from.
    param, slot
        The parameter (`fc1.weight`, a str) and the epoch slot (an int), as `slab` takes
        a capture point and a slot.

    Returns
    -------
    numpy.ndarray
        The parameter's own shape, float32.
    """
    return open_group(path)[f"{schema.WEIGHTS}/{param}/{schema.VALUES}"][slot]


def weight_slabs(path: str, param: str, slots) -> np.ndarray:
    """Several epoch slots of one parameter, with one open of the store.

    Parameters
    ----------
    path : str
        The store to read the parameter's slots from.
    param : str
        The parameter.
    slots : iterable of int
        The epoch slots.

    Returns
    -------
    numpy.ndarray
        (len(slots), *the parameter's shape), float32.
    """
    array = open_group(path)[f"{schema.WEIGHTS}/{param}/{schema.VALUES}"]
    return np.stack([array[int(slot)] for slot in slots])
