"""Training state in a store, so that a killed capture can go on where it stopped.

`state/<copy>/` holds what training needs beyond the weights: the model's state dict
(native dtypes, so integer buffers stay exact), the optimizer's per-parameter tensors,
the random generators' states, and as JSON attributes the optimizer's param groups,
the learning-rate schedule's state, the Python and NumPy generator states, the slot and
epoch the copy belongs to, and whether training ended there. Nothing is pickled: arrays
are plain Zarr arrays (with the crc32c checksum of every chunk), the rest is JSON.

Two copies alternate by slot parity (slot s uses copy s % 2). The copy of slot s is
written before `committed[s]`; the other copy then still holds slot s - 1, the last
committed one, so a kill while a copy is being written never destroys the state a
resume needs. A copy is marked invalid before it is touched and valid after its last
array, and a resume checks that every chunk of it is present and intact.

This module knows NumPy and Zarr only; `capture.resume` converts to and from torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import zarr
from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding
from zarr.storage import LocalStore

from . import schema
from .chunkio import write_chunk, write_plain
from .errors import StoreError

# State arrays are one chunk each, checksummed, with zarr's default chunk keys; a copy
# that is written again has its chunk files replaced directly (see write_state).
CHUNK_KEYS = DefaultChunkKeyEncoding(separator="/")

SECTIONS = ("model", "optimizer", "rng")


@dataclass
class TrainingState:
    """The training state at the end of an epoch, before the next one.

    Attributes
    ----------
    slot, epoch : int
        The epoch slot it was captured into, and the epoch's number.
    final : bool, default False
        Training ended at this epoch (max_epochs or the stop rule).
    arrays : dict of str to dict of str to numpy.ndarray
        Section (`SECTIONS`: model, optimizer, rng) -> name -> array.
    meta : dict
        JSON-able: the optimizer's param groups, the scheduler, the generators' states.
    """

    slot: int
    epoch: int
    final: bool = False
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


def copy_name(slot: int) -> str:
    """The copy (`state/<copy>`) that holds a slot's state: copies alternate by parity."""
    return str(slot % schema.STATE_COPIES)


def write_state(root: zarr.Group, state: TrainingState) -> None:
    """Write a training state into its copy: invalidate, replace every array, validate.

    A copy whose arrays already have the names, shapes and dtypes of `state` (its
    `layout` attribute says so; true from the second write of a run on) keeps them and
    has their chunks overwritten; otherwise it is deleted and laid out again.

    Parameters
    ----------
    root : zarr.Group
        The store's root group, open for writing.
    state : TrainingState
        What to write (its slot picks the copy).
    """
    parent = root.require_group(schema.STATE)
    name = copy_name(state.slot)
    layout = _layout(state)
    reuse = False
    if name in parent:
        group = parent[name]
        reuse = group.attrs.get("layout") == layout
        # First: a kill below leaves it invalid (and still describing its arrays).
        group.attrs.put({"valid": False, **({"layout": layout} if reuse else {})})
        if not reuse:
            del parent[name]
    if not reuse:
        group = parent.create_group(name, attributes={"valid": False})
    base = _local_dir(group) if reuse else None
    for section in SECTIONS:
        sub = None if base else group[section] if reuse else group.create_group(section)
        for key, value in state.arrays.get(section, {}).items():
            where = os.path.join(base, section, key) if base else None
            _write_array(sub, key, np.asarray(value), f"{section}.{key}", reuse, where)
    group.attrs.put({"valid": True, "slot": int(state.slot), "epoch": int(state.epoch),
                     "final": bool(state.final), "meta": state.meta, "layout": layout})


def _local_dir(group: zarr.Group) -> str | None:
    store = group.store_path.store
    return os.path.join(str(store.root), group.store_path.path) if isinstance(store, LocalStore) else None


def _layout(state: TrainingState) -> dict:
    """section/key -> [shape, dtype] of every array of `state` (JSON)."""
    return {f"{section}/{key}": [list(np.shape(value)), np.asarray(value).dtype.str]
            for section in SECTIONS for key, value in state.arrays.get(section, {}).items()}


def _write_array(group: zarr.Group | None, key: str, value: np.ndarray, dim_prefix: str,
                 exists: bool = False, array_dir: str | None = None) -> None:
    if exists and array_dir:
        # The array is there as laid out below (the copy's layout says so): replace its
        # one chunk file (little-endian bytes, crc32c), without opening it through zarr.
        key_path = CHUNK_KEYS.encode_chunk_key((0,) * value.ndim)
        # In place: the copy is marked invalid until its last array is written.
        write_plain(os.path.join(array_dir, key_path),
                    value.astype(value.dtype.newbyteorder("<"), copy=False), atomic=False)
        return
    if exists:  # same shape and dtype: the copy's layout says so
        array = group[key]
    else:
        # Dim names are unique to the array: within a group a dim name has one size.
        array = group.create_array(
            key, shape=value.shape, chunks=value.shape, dtype=value.dtype,
            dimension_names=[f"{dim_prefix}.{i}" for i in range(value.ndim)],
            compressors=schema.compressors(schema.PLAIN), fill_value=0, chunk_key_encoding=CHUNK_KEYS,
        )
    if not write_chunk(array, (0,) * value.ndim, value):  # one chunk, straight to its file
        array.with_config({"write_empty_chunks": True})[...] = value


def candidates(root: zarr.Group) -> list[dict]:
    """The valid training-state copies of a store.

    Parameters
    ----------
    root : zarr.Group
        The store's root group.

    Returns
    -------
    list of dict
        Each copy's attributes (`slot`, `epoch`, `final`, ...) and its name as `copy`,
        latest slot first.
    """
    if schema.STATE not in root:
        return []
    found = []
    for name, group in root[schema.STATE].groups():
        attrs = dict(group.attrs)
        if attrs.get("valid") and copy_name(int(attrs.get("slot", -1))) == name:
            found.append({**attrs, "copy": name})
    return sorted(found, key=lambda a: -a["slot"])


def read_state(root: zarr.Group, slot: int) -> TrainingState:
    """The training state of a slot, read back whole.

    Parameters
    ----------
    root : zarr.Group
        The store's root group.
    slot : int
        The epoch slot.

    Returns
    -------
    TrainingState

    Raises
    ------
    StoreError
        When its copy is not there, holds another slot, or is incomplete or damaged.
    """
    where = f"{schema.STATE}/{copy_name(slot)}"
    if where not in root:
        raise StoreError(f"{where}: no training state")
    group = root[where]
    attrs = dict(group.attrs)
    if not attrs.get("valid") or attrs.get("slot") != slot:
        raise StoreError(f"{where}: holds no valid state of slot {slot}")
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for section in SECTIONS:
        arrays[section] = {}
        if section not in group:
            raise StoreError(f"{where}/{section}: missing")
        for key, array in group[section].arrays():
            if array.nchunks_initialized != array.nchunks:
                raise StoreError(f"{where}/{section}/{key}: missing chunks")
            try:
                arrays[section][key] = array[...]
            except ValueError as err:  # crc32c mismatch, truncated chunk
                raise StoreError(f"{where}/{section}/{key}: damaged ({err})") from err
    return TrainingState(int(attrs["slot"]), int(attrs["epoch"]), bool(attrs.get("final")),
                         arrays, dict(attrs.get("meta", {})))


def invalidate(root: zarr.Group, copy: str) -> None:
    """Mark a training-state copy unusable (repair does this to a damaged one).

    Parameters
    ----------
    root : zarr.Group
        The store's root group, open for writing.
    copy : str
        The copy's name (`copy_name`).
    """
    where = f"{schema.STATE}/{copy}"
    if where in root:
        root[where].attrs.put({"valid": False})
