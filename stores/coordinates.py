"""The coordinates a plain xarray reader finds in a run store (schema version 2).

`xarray.open_datatree(path, engine="zarr")` attaches a group's index coordinates to
every node below it. So each group indexed by epoch slot (`schema.COORDINATE_GROUPS`:
activations, weights, metrics) holds an `epoch` array: the epoch number of each
committed slot and `schema.NOT_COMMITTED` (-1) at every other, and `.sel(epoch=E)` on
any node below selects epoch E, or raises KeyError for an epoch not committed. These
are copies, derived from `epochs/epoch` and `epochs/committed` (the commit protocol's
record, unchanged since version 1): the writer writes them whole right after each
commit flag, so a copy never shows an epoch before it is committed, and writes them
again whenever it reopens a store (`sync`), so a kill between the flag and the copies
loses nothing. `activations/sample` (0..n-1) and, in each capture point's group, copies
of the probe set's labels and split are the sample coordinates.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import zarr

from . import cf, schema
from .chunkio import write_chunk
from .errors import StoreError

STALE = "coordinates"  # a problem kind: a copy that disagrees with the commit record

COMMITTED = f"{schema.EPOCHS}/committed"
EPOCHS = f"{schema.EPOCHS}/epoch"


def epoch_copies(root: zarr.Group) -> list[str]:
    """The paths of the store's epoch-coordinate copies (none in a version-1 store).

    Parameters
    ----------
    root : zarr.Group
        The store's root.

    Returns
    -------
    list of str
    """
    if root.attrs.get("schema_version", 1) < 2:
        return []
    return [f"{group}/{schema.EPOCH_COORD}" for group in schema.COORDINATE_GROUPS]


def coordinate_arrays(root: zarr.Group) -> set[str]:
    """The paths of every coordinate copy of a version-2 store (epoch copies, the sample
    row and each capture point's sample coordinates); empty for version 1.

    Parameters
    ----------
    root : zarr.Group
        The store's root.

    Returns
    -------
    set of str
    """
    names = set(epoch_copies(root))
    if names:
        names.add(f"{schema.ACTIVATIONS}/{schema.SAMPLE_COORD}")
        for layer in _layers(root):
            names.update(f"{schema.ACTIVATIONS}/{layer}/{f}" for f in schema.SAMPLE_COORDS)
    return names


def _layers(root: zarr.Group) -> list[str]:
    return list(root[schema.ACTIVATIONS].attrs.get("order", [])) if schema.ACTIVATIONS in root else []


def expected_coordinates(root: zarr.Group, n_slots: int, n_samples: int | None) -> dict:
    """name -> (dims, shape) of the coordinate copies the schema asks of this store.

    Parameters
    ----------
    root : zarr.Group
        The store's root.
    n_slots : int
        Its epoch slots.
    n_samples : int or None
        Its probe set's size (None: unknown).

    Returns
    -------
    dict of str to (tuple, tuple)
    """
    out = {name: (("epoch",), (n_slots,)) for name in epoch_copies(root)}
    for name in coordinate_arrays(root) - set(out):
        out[name] = (("sample",), (n_samples,))
    return out


def metric_arrays(group: zarr.Group) -> list[tuple[str, zarr.Array]]:
    """The metrics of a store's `metrics` group, without its epoch coordinate.

    Parameters
    ----------
    group : zarr.Group
        The store's `metrics` group.

    Returns
    -------
    list of (str, zarr.Array)
        Sorted by name.
    """
    return sorted((name, array) for name, array in group.arrays() if name != schema.EPOCH_COORD)


def coordinate_values(committed, epochs) -> np.ndarray:
    """The epoch coordinate: each committed slot's epoch, -1 elsewhere.

    Parameters
    ----------
    committed : array-like of bool
        (slot,): the commit flags.
    epochs : array-like of int
        (slot,): the epoch numbers of `epochs/epoch`.

    Returns
    -------
    numpy.ndarray
        (slot,) int64.
    """
    committed = np.asarray(committed, dtype=bool)
    return np.where(committed, np.asarray(epochs, dtype=np.int64), schema.NOT_COMMITTED)


def check_names(layers, params, metrics) -> None:
    """Refuse node names that a coordinate takes.

    Parameters
    ----------
    layers, params, metrics : iterable of str
        The capture points, parameters and metrics of a new store.

    Raises
    ------
    StoreError
        Naming the node and the reserved names.
    """
    taken = {schema.ACTIVATIONS: (schema.EPOCH_COORD, schema.SAMPLE_COORD),
             schema.WEIGHTS: (schema.EPOCH_COORD,), schema.METRICS: (schema.EPOCH_COORD,)}
    for group, names in ((schema.ACTIVATIONS, layers), (schema.WEIGHTS, params),
                         (schema.METRICS, metrics)):
        for name in names:
            if name in taken[group]:
                raise StoreError(f"{group}/{name}: the name {name!r} is taken by a coordinate "
                                 f"(reserved in {group}: {', '.join(taken[group])})")


def lay_out(root: zarr.Group, samples: Mapping[str, np.ndarray], layers: list[str],
            n_slots: int, codecs: list) -> None:
    """Create the coordinate arrays of a new version-2 store (groups already made).

    Parameters
    ----------
    root : zarr.Group
        The new store's root, its captured groups and layer groups created.
    samples : mapping of str to numpy.ndarray
        The probe set (`schema.SAMPLE_FIELDS`).
    layers : list of str
        The capture points.
    n_slots : int
        The epoch slots.
    codecs : list
        The captured arrays' bytes-to-bytes codecs (`schema.compressors`).
    """
    for name in epoch_copies(root):
        root.create_array(name, shape=(n_slots,), chunks=(n_slots,), dtype="int64",
                          fill_value=schema.NOT_COMMITTED, dimension_names=["epoch"],
                          compressors=list(codecs), attributes=cf.array_attrs(name))
    n = len(samples["split"])
    sample = f"{schema.ACTIVATIONS}/{schema.SAMPLE_COORD}"
    _write(root.create_array(sample, shape=(n,), chunks=(n,), dtype="int64", fill_value=0,
                             dimension_names=["sample"], attributes=cf.array_attrs(sample),
                             compressors=schema.compressors(schema.COMPRESSED)), np.arange(n))
    for layer in layers:
        for field in schema.SAMPLE_COORDS:
            kind = schema.SAMPLE_FIELDS[field]
            name = f"{schema.ACTIVATIONS}/{layer}/{field}"
            values = np.asarray(samples[field])
            array = root.create_array(
                name, shape=(n,), chunks=(n,), dtype=str if kind == "str" else kind,
                dimension_names=["sample"], attributes=cf.array_attrs(name),
                compressors=schema.compressors(schema.COMPRESSED))
            _write(array, values.astype(str) if kind == "str" else values.astype(kind))


def _write(array: zarr.Array, values: np.ndarray) -> None:
    """The whole array (one chunk): straight to its file where the layout is plain
    (`chunkio`, a third of a commit's time saved), overwritten in place (a copy torn by
    a crash is unreadable, and repair writes it again), else through zarr, storing the
    chunk even where it equals the fill value (an all-False `corrupted`, an
    all-uncommitted epoch copy), so that validate can tell a missing chunk."""
    values = np.asarray(values, dtype=array.dtype)
    if not write_chunk(array, (0,) * values.ndim, values, atomic=False):
        array.with_config({"write_empty_chunks": True})[:] = values


def write_copies(root: zarr.Group, committed, epochs, arrays: list | None = None) -> None:
    """Write every epoch-coordinate copy whole from the commit record.

    Parameters
    ----------
    root : zarr.Group
        The store's root, open for writing.
    committed, epochs : array-like
        (slot,): the commit flags and the epoch numbers.
    arrays : list of zarr.Array, optional
        The copies, opened already (a writer keeps them); default: looked up in `root`.
    """
    values = coordinate_values(committed, epochs)
    if arrays is None:
        arrays = [root[name] for name in epoch_copies(root) if name in root]
    for array in arrays:
        _write(array, values)


def uncommitted(n_slots: int) -> tuple[np.ndarray, np.ndarray]:
    """The commit record of a store with no slot committed (`commit_record`'s form).

    Parameters
    ----------
    n_slots : int

    Returns
    -------
    committed, epochs : numpy.ndarray
        (n_slots,) False and `schema.NOT_COMMITTED`.
    """
    return np.zeros(n_slots, dtype=bool), np.full(n_slots, schema.NOT_COMMITTED, dtype=np.int64)


def commit_record(root: zarr.Group) -> tuple[np.ndarray, np.ndarray]:
    """The commit flags and epoch numbers, slot by slot; a slot whose flag or number
    cannot be read counts as not committed.

    Parameters
    ----------
    root : zarr.Group
        The store's root.

    Returns
    -------
    committed, epochs : numpy.ndarray
        (slot,) bool and int64.
    """
    n_slots = root[COMMITTED].shape[0]
    try:
        committed, epochs = root[COMMITTED][:], root[EPOCHS][:]
    except Exception:  # noqa: BLE001  (a damaged chunk: read slot by slot)
        committed, epochs = uncommitted(n_slots)
        for slot in range(n_slots):
            try:
                committed[slot], epochs[slot] = bool(root[COMMITTED][slot]), int(root[EPOCHS][slot])
            except Exception:  # noqa: BLE001
                committed[slot] = False
    return np.asarray(committed, dtype=bool), np.asarray(epochs, dtype=np.int64)


def sync(root: zarr.Group) -> bool:
    """Write the copies again from what they copy (the commit record, the probe set),
    where they differ from it.

    Parameters
    ----------
    root : zarr.Group
        The store's root, open for writing.

    Returns
    -------
    bool
        Whether anything was written.
    """
    stale = [(name, want) for name, want, _ in _stale(root) if name in root]
    for name, want in stale:
        _write(root[name], want)
    return bool(stale)


def _wanted(root: zarr.Group) -> dict[str, np.ndarray]:
    """Each coordinate copy's values, from what it copies (unreadable: left out)."""
    if COMMITTED not in root or EPOCHS not in root:
        return {}
    epoch = coordinate_values(*commit_record(root))
    want = {name: epoch for name in epoch_copies(root)}
    if not want:
        return want
    n = root[f"{schema.SAMPLES}/split"].shape[0]
    want[f"{schema.ACTIVATIONS}/{schema.SAMPLE_COORD}"] = np.arange(n)
    for field in schema.SAMPLE_COORDS:
        try:
            values = root[f"{schema.SAMPLES}/{field}"][:]
        except Exception:  # noqa: BLE001  (the probe set is damaged: validate says so)
            continue
        want.update({f"{schema.ACTIVATIONS}/{layer}/{field}": values for layer in _layers(root)})
    return want


def _stale(root: zarr.Group) -> list[tuple[str, np.ndarray, str]]:
    """(name, wanted values, what is wrong) of every copy that is missing or wrong."""
    out = []
    for name, want in _wanted(root).items():
        if name not in root:
            out.append((name, want, "missing coordinate (repair lays it out again)"))
        elif not _equals(root[name], want):
            out.append((name, want, "the coordinate disagrees with what it copies "
                                    f"({_source(name)}) or is unreadable (repair writes it again)"))
    return out


def _source(name: str) -> str:
    if name.endswith(f"/{schema.EPOCH_COORD}"):
        return f"{EPOCHS} and {COMMITTED}"
    return f"{schema.SAMPLES}/{name.rsplit('/', 1)[-1]}"


def _equals(array: zarr.Array, want: np.ndarray) -> bool:
    try:
        return array.shape == want.shape and np.array_equal(array[:], want)
    except Exception:  # noqa: BLE001  (damaged: written again)
        return False


def problems(root: zarr.Group) -> list[tuple[str, str, str]]:
    """What is wrong with the store's coordinate copies, for `stores.validate`.

    Parameters
    ----------
    root : zarr.Group
        The store's root.

    Returns
    -------
    list of (str, str, str)
        (array, what, kind) of each copy that disagrees with what it copies or is
        unreadable (kind `STALE`: repair writes it again); a missing one is reported
        by the layout check.
    """
    return [(name, what, STALE) for name, _, what in _stale(root) if name in root]
