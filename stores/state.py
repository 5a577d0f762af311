"""Training state in a store, so that a killed capture can go on where it stopped.

`state/<copy>/` holds what training needs beyond the weights: the model's state dict
(native dtypes, so integer buffers stay exact), the optimizer's per-parameter tensors,
the random generators' states, and as JSON attributes the optimizer's param groups,
the learning-rate schedule's state, the Python and NumPy generator states, the slot and
epoch the copy belongs to, and whether training ended there. Nothing is pickled: arrays
are plain Zarr arrays (with the crc32c checksum of every chunk), the rest is JSON.

The model's tensors that `weights/` already holds at the copy's slot, byte for byte
(float32 parameters and buffers: the recorder writes the weights just before the state),
are not written again: the copy names them in its `weights` attribute, with the slot and
the CRC-32C of each one's bytes, and `read_state` takes them from `weights/` and checks
them against it (a missing or rewritten weights chunk makes the copy unusable, like a
damaged one). Only the rest (integer buffers, other dtypes, the optimizer's state, the
generators') is in the copy. A copy written before this (every model tensor in it, no
`weights` attribute) reads as it always did.

Two copies alternate by slot parity (slot s uses copy s % 2). The copy of slot s is
written before `committed[s]`; the other copy then still holds slot s - 1, the last
committed one, so a kill while a copy is being written never destroys the state a
resume needs. A copy is marked invalid before it is touched and valid after its last
array, and a resume checks that every chunk of it is present and intact.

This module knows NumPy and Zarr only; `capture.resume` converts to and from torch.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Mapping

import google_crc32c
import numpy as np
import zarr
from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding
from zarr.storage import LocalStore

from . import schema
from .cf import array_attrs
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


def write_state(root: zarr.Group, state: TrainingState,
                weights: Mapping[str, zarr.Array] | None = None, *, written: bool = False) -> None:
    """Write a training state into its copy: invalidate, replace every array, validate.

    The model's tensors that `weights/` holds at the state's slot are referenced, not
    written (see the module's docstring). A copy whose arrays already have the names,
    shapes and dtypes of what is written (its `layout` attribute says so; true from the
    second write of a run on) keeps them and has their chunks overwritten; otherwise it
    is deleted and laid out again.

    Parameters
    ----------
    root : zarr.Group
        The store's root group, open for writing.
    state : TrainingState
        What to write (its slot picks the copy).
    weights : mapping of str to zarr.Array, optional
        The model tensors' `weights/<name>/values` arrays (the writer's, already open);
        default: looked up in `root`.
    written : bool, default False
        `weights` were just written at the state's slot from this state's model (the
        recorder's commit order): they are referenced without reading them back. False
        (a committed slot refreshed, any other caller): a tensor is referenced only where
        the stored weights hold its bytes.
    """
    refs = _references(root, state, weights, written)
    model = {k: v for k, v in state.arrays.get("model", {}).items() if k not in refs}
    arrays = {**state.arrays, "model": model}
    name = copy_name(state.slot)
    layout = _layout(arrays)
    attrs = {"valid": True, "slot": int(state.slot), "epoch": int(state.epoch),
             "final": bool(state.final), "meta": state.meta, "layout": layout,
             **({"weights": {"slot": int(state.slot), "crc32c": refs}} if refs else {})}
    base = _local_dir(root)
    base = os.path.join(base, schema.STATE, name) if base else None
    doc = _read_doc(base) if base else None
    if doc is not None and doc.get("attributes", {}).get("layout") == layout:
        _rewrite(base, doc, arrays, attrs)  # from the second write of a run on
        return
    parent = root.require_group(schema.STATE)
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
    for section in SECTIONS:
        sub = group[section] if reuse else group.create_group(section)
        for key, value in arrays.get(section, {}).items():
            _write_array(sub, key, np.asarray(value), f"{section}.{key}", reuse)
    group.attrs.put(attrs)


def _rewrite(base: str, doc: dict, arrays: dict[str, dict[str, np.ndarray]], attrs: dict) -> None:
    """Write a copy laid out as `arrays` again, replacing its files directly, without zarr
    (each of its calls costs about a millisecond of CPU on the machines measured)."""
    _put_doc(base, doc, {"valid": False, "layout": attrs["layout"]})  # first: a kill leaves it invalid
    for section in SECTIONS:
        for key, value in arrays.get(section, {}).items():
            _write_array(None, key, np.asarray(value), f"{section}.{key}", True,
                         os.path.join(base, section, key))
    _put_doc(base, doc, attrs)


def _read_doc(base: str) -> dict | None:
    """A copy's group metadata (its zarr.json), or None where it is absent or unreadable."""
    try:
        with open(os.path.join(base, "zarr.json"), "rb") as f:
            doc = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("node_type") == "group" else None


def _put_doc(base: str, doc: dict, attrs: dict) -> None:
    """Replace a copy's attributes in its zarr.json (the document zarr writes, on one line:
    an indented dump goes through Python's slow JSON encoder), in one rename (the
    temporary named as zarr names its own: `capture.resume` removes one a kill left)."""
    doc["attributes"] = attrs
    path = os.path.join(base, "zarr.json")
    temporary = f"{path}.{uuid.uuid4().hex}.partial"
    with open(temporary, "wb") as f:
        f.write(json.dumps(doc, allow_nan=True).encode())
    os.replace(temporary, path)


def _references(root: zarr.Group, state: TrainingState, weights: Mapping[str, zarr.Array] | None,
                written: bool) -> dict[str, int]:
    """name -> CRC-32C of the model tensors `weights/` holds at the state's slot."""
    model = state.arrays.get("model", {})
    if weights is None:
        weights = {}
        if schema.WEIGHTS in root:
            for key in model:
                node = f"{schema.WEIGHTS}/{key}/{schema.VALUES}"
                if node in root:
                    weights[key] = root[node]
    refs = {}
    for key, value in model.items():
        array, value = weights.get(key), np.asarray(value)
        if (array is None or value.dtype != np.float32 or array.dtype != np.float32
                or tuple(array.shape) != (array.shape[0], *value.shape)
                or not 0 <= state.slot < array.shape[0]):
            continue
        crc = _crc(value)
        if written or _crc(array[state.slot]) == crc:
            refs[key] = crc
    return refs


def _crc(value: np.ndarray) -> int:
    """CRC-32C of an array's little-endian bytes."""
    little = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
    return int(google_crc32c.extend(0, little.reshape(-1).view(np.uint8)))


def _local_dir(group: zarr.Group) -> str | None:
    store = group.store_path.store
    return os.path.join(str(store.root), group.store_path.path) if isinstance(store, LocalStore) else None


def _layout(arrays: dict[str, dict[str, np.ndarray]]) -> dict:
    """section/key -> [shape, dtype] of every array a copy holds (JSON)."""
    return {f"{section}/{key}": [list(np.shape(value)), np.asarray(value).dtype.str]
            for section in SECTIONS for key, value in arrays.get(section, {}).items()}


def _write_array(group: zarr.Group | None, key: str, value: np.ndarray, dim_prefix: str,
                 exists: bool = False, array_dir: str | None = None) -> None:
    if exists and array_dir:
        # The array is there as laid out below (the copy's layout says so): replace its
        # one chunk file (little-endian bytes, crc32c), without opening it through zarr.
        key_path = CHUNK_KEYS.encode_chunk_key((0,) * value.ndim)
        # In place: the copy is marked invalid until its last array is written.
        _overwrite(os.path.join(array_dir, key_path), value)
        return
    if exists:  # same shape and dtype: the copy's layout says so
        array = group[key]
    else:
        # Dim names are unique to the array: within a group a dim name has one size.
        array = group.create_array(
            key, shape=value.shape, chunks=value.shape, dtype=value.dtype,
            dimension_names=[f"{dim_prefix}.{i}" for i in range(value.ndim)],
            compressors=schema.compressors(schema.PLAIN), fill_value=0, chunk_key_encoding=CHUNK_KEYS,
            attributes=array_attrs(f"{group.path}/{key}"),
        )
    if not write_chunk(array, (0,) * value.ndim, value):  # one chunk, straight to its file
        array.with_config({"write_empty_chunks": True})[...] = value


def _overwrite(path: str, value: np.ndarray) -> None:
    """Replace a chunk file of a plain array (little-endian bytes, then their CRC-32C)
    in place (`chunkio.write_plain`): truncating or replacing an existing file costs
    ten times the write on the file systems measured (README, Performance)."""
    write_plain(path, np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<")), atomic=False)


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
    refs = attrs.get("weights") or {}
    for key, crc in refs.get("crc32c", {}).items():  # the model tensors weights/ holds
        arrays["model"][key] = _referenced(root, where, key, int(refs["slot"]), int(crc))
    return TrainingState(int(attrs["slot"]), int(attrs["epoch"]), bool(attrs.get("final")),
                         arrays, dict(attrs.get("meta", {})))


def _referenced(root: zarr.Group, where: str, key: str, slot: int, crc: int) -> np.ndarray:
    """A model tensor of a copy, from `weights/` at `slot`, checked against its CRC-32C."""
    node = f"{schema.WEIGHTS}/{key}/{schema.VALUES}"
    if node not in root:
        raise StoreError(f"{where}: model/{key} is kept in {node}, which is missing")
    try:
        value = root[node][slot]
    except ValueError as err:  # crc32c mismatch, truncated chunk
        raise StoreError(f"{where}: model/{key} is kept in {node} at slot {slot}, which is "
                         f"damaged ({err})") from err
    if _crc(value) != crc:  # a missing chunk (fill value), or weights written since
        raise StoreError(f"{where}: {node} at slot {slot} does not hold the state's model/{key}")
    return value


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
