"""Check one stored chunk, or one shard inner chunk by inner chunk, for
`python -m stores validate`: what is damaged, named by epoch and block of samples (or
rows of a parameter) where the array is sharded (schema version 2)."""

from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
import zarr

from . import location, schema
from .groups import open_plain
from .shardio import geometry
from .shards import CRC_BYTES, inner_damage


def damage_text(err: Exception) -> str:
    """What a chunk that failed to decode has, in words.

    Parameters
    ----------
    err : Exception
        What reading it raised.

    Returns
    -------
    str
    """
    text = str(err)
    if "checksum" in text.lower():
        return "damaged (checksum mismatch)"
    return f"damaged ({type(err).__name__}: {text.splitlines()[0] if text else ''})"


def slot_epochs(path: str, n_slots: int) -> np.ndarray:
    """Each slot's epoch number (`epochs/epoch`), -1 where it cannot be read.

    Parameters
    ----------
    path : str
        The store.
    n_slots : int
        Its epoch slots.

    Returns
    -------
    numpy.ndarray
    """
    out = np.full(n_slots, -1, dtype=np.int64)
    with contextlib.suppress(Exception):  # unreadable: reported with its chunk
        array = open_plain(path)[f"{schema.EPOCHS}/epoch"]
        for slot in range(min(n_slots, array.shape[0])):
            with contextlib.suppress(Exception):
                out[slot] = int(array[slot])
    return out


def chunk_damage(array: zarr.Array, file: str, index: tuple[int, ...],
                 epoch_of: Callable[[int], int]) -> list[tuple[str | None, str]]:
    """What is wrong with one stored chunk (or shard) of an array.

    Parameters
    ----------
    array : zarr.Array
        The array.
    file : str
        The chunk's (or shard's) file, present.
    index : tuple of int
        Its key's index.
    epoch_of : callable
        Slot -> its epoch number (-1: unknown), for the names of inner chunks.

    Returns
    -------
    list of (str or None, str)
        (where, what): `where` names the damaged inner chunks of a shard ("epoch 10 (slot
        4), samples 4096-8191"), None the chunk as a whole; empty when it is whole.
    """
    cut = geometry(array) if array.shards is not None else None
    if cut is None:
        try:
            if array.shards is None:
                array.blocks[index]
            else:  # a sharded layout other than the store's: the shard's region, via zarr
                array[tuple(slice(i * s, (i + 1) * s) for i, s in zip(index, array.shards))]
        except Exception as err:  # noqa: BLE001  (crc32c mismatch, truncation, bad codec)
            return [(None, damage_text(err))]
        return []
    with location.open_file(file, "rb") as f:
        raw = f.read()
    row_bytes = int(np.prod(cut.row_shape, dtype=np.int64)) * array.dtype.itemsize
    encoded = cut.block * row_bytes + CRC_BYTES if cut.plain else None
    slot = index[0]
    epoch = epoch_of(slot)
    when = f"epoch {epoch} (slot {slot})" if epoch >= 0 else f"slot {slot}"
    what_rows = "samples" if tuple(array.metadata.dimension_names or ())[1:2] == ("sample",) else "rows"
    out = []
    for j, what in inner_damage(raw, cut.n_inner, encoded):
        if j is None or array.ndim == 1:
            out.append((when, what))
        else:
            hi = min((j + 1) * cut.block, cut.rows) - 1
            out.append((f"{when}, {what_rows} {j * cut.block}-{hi}", what))
    return out
