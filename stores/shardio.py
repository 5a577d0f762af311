"""Writing the shards of a version-2 store: one shard (one file) per epoch slot and node.

A shard of the layout `stores.layout` gives activations and weights holds one slot,
cut into inner chunks along one axis (samples, or a parameter's first axis). What the
writer hands over (whole inner chunks, any number of them) is written as it arrives:

- uncompressed, on a local store: straight to its final offset in the shard's
  `.partial` file (`stores.shards.ShardFile`, no copy); after the shard's last inner
  chunk the index follows and the file is renamed into place;
- otherwise (zstd, or another store): kept in memory, one shard per node at most, and
  the whole shard written through zarr when its last inner chunk arrives.

A part of an inner chunk is kept until the rest of it arrives. `ShardWriter.close`
refuses a slot whose shards are not complete (its commit must not name a partial
shard). Whether an array is sharded is read off its own metadata, so a version-1 store
(one file per chunk) is written the old way when a capture resumes it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import numpy as np
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec, ShardingCodecIndexLocation
from zarr.storage import LocalStore

from .chunkio import write_chunk
from .errors import StoreError
from .schema import CHUNK_BYTES
from .shards import ShardFile


@dataclass(frozen=True)
class Geometry:
    """How one slot of a sharded array of the store's layout is cut.

    Attributes
    ----------
    rows : int
        The array's extent along the cut axis (1 for a 0-d parameter).
    block : int
        Rows per inner chunk (the last one padded past `rows` with the fill value).
    n_inner : int
        Inner chunks per shard.
    row_shape : tuple of int
        The shape of one row.
    directory : str or None
        The array's folder, where its shards are written directly (None: through zarr).
    plain : bool
        Uncompressed inner chunks (`bytes` + `crc32c`: one encoded size).
    """

    rows: int
    block: int
    n_inner: int
    row_shape: tuple
    directory: str | None
    plain: bool = True  # inner chunks `bytes` + `crc32c` (one encoded size)


def _little(codec) -> bool:
    return isinstance(codec, BytesCodec) and (
        codec.endian is None or codec.endian.value == sys.byteorder == "little")


def geometry(array: zarr.Array) -> Geometry | None:
    """The cut of a sharded array of the store's layout.

    Parameters
    ----------
    array : zarr.Array

    Returns
    -------
    Geometry or None
        For one shard per slot cut along axis 1 (or a 0-d parameter's one value), its
        index at the end with `bytes` + `crc32c`; None for any other array (version 1's
        chunks among them).
    """
    codecs = array.metadata.codecs
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec) or array.filters:
        return None
    codec, shape, shard = codecs[0], array.shape, array.shards
    inner = tuple(codec.chunk_shape)
    index = codec.index_codecs
    if not (len(index) == 2 and _little(index[0]) and isinstance(index[1], Crc32cCodec)
            and codec.index_location == ShardingCodecIndexLocation.end):
        return None
    if array.ndim == 1:  # a 0-d parameter: one value per slot
        if shard != (1,) or inner != (1,):
            return None
        rows, block, n_inner = 1, 1, 1
    else:
        rows, block = shape[1], inner[1]
        n_inner = shard[1] // block
        if (shard[0], inner[0]) != (1, 1) or shard[2:] != inner[2:] or inner[2:] != shape[2:] \
                or shard[1] % block or not (n_inner - 1) * block < rows <= shard[1]:
            return None
    inner_codecs = list(codec.codecs)
    plain = len(inner_codecs) == 2 and _little(inner_codecs[0]) and isinstance(inner_codecs[1], Crc32cCodec)
    store = array.store_path.store
    direct = plain and isinstance(store, LocalStore)
    where = os.path.join(str(store.root), array.store_path.path) if direct else None
    return Geometry(rows, block, n_inner, tuple(shape[2:]), where, plain)


def handover_rows(array: zarr.Array) -> int:
    """Rows a writer hands over at a time.

    Parameters
    ----------
    array : zarr.Array
        A capture point's activations.

    Returns
    -------
    int
        A chunk's (version 1), or a whole number of inner chunks of about `CHUNK_BYTES`
        (a sharded array; all of its rows at most).
    """
    cut = geometry(array)
    if cut is None:
        return array.chunks[1]
    row_bytes = max(1, int(np.prod(cut.row_shape, dtype=np.int64)) * array.dtype.itemsize)
    return min(cut.block * max(1, CHUNK_BYTES // (cut.block * row_bytes)), cut.rows)


@dataclass
class _Open:
    """A shard of one slot being written."""

    name: str
    array: zarr.Array
    cut: Geometry
    file: ShardFile | None  # the direct path; else `whole` is written through zarr
    parts: dict = field(default_factory=dict)  # inner chunk -> (rows buffer, rows present)
    whole: np.ndarray | None = None  # through zarr: the slot's rows, kept until all are there
    present: np.ndarray | None = None  # through zarr: which rows `whole` holds

    def missing(self) -> list[int]:
        """The inner chunks not (wholly) written yet."""
        if self.file is not None:
            return self.file.missing()
        present = np.zeros(self.cut.rows, bool) if self.present is None else self.present
        return [j for j in range(self.cut.n_inner)
                if not present[j * self.cut.block : (j + 1) * self.cut.block].all()]


class ShardWriter:
    """The shards of a store being written, until each is complete.

    Parameters
    ----------
    path : str
        The store, for the messages.
    """

    def __init__(self, path: str):
        self.path = path
        self._open: dict[tuple[str, int], _Open] = {}

    def put_rows(self, name: str, array: zarr.Array, slot: int, start: int, values) -> None:
        """Rows `start`... of `array` at `slot`, by the path its layout takes: into its
        shard (`write`), as a whole chunk straight to its file (version 1, `chunkio`), or
        through zarr. Parameters as `write`'s."""
        if self.write(name, array, slot, start, values):
            return
        block = array.chunks[1]
        if start % block or not write_chunk(array, (slot, start // block, 0), values[None]):
            array[slot, start : start + len(values)] = values

    def put_slot(self, name: str, array: zarr.Array, slot: int, value) -> None:
        """`array[slot] = value` for an array chunked (or sharded) one slot at a time, by
        the path its layout takes (as `put_rows`)."""
        value = np.asarray(value, dtype=array.dtype)
        if not self.write(name, array, slot, 0, value) and \
                not write_chunk(array, (slot,) + (0,) * value.ndim, value[None]):
            array[slot] = value

    def write(self, name: str, array: zarr.Array, slot: int, start: int, values) -> bool:
        """Rows `start`... of `array` at `slot`.

        Parameters
        ----------
        name : str
            The array's path in the store.
        array : zarr.Array
            The array (write_empty_chunks on).
        slot : int
            The epoch slot.
        start : int
            The first row (sample, or index along the parameter's first axis).
        values : numpy.ndarray
            (rows, *row_shape); a 0-d parameter's value as it is.

        Returns
        -------
        bool
            False, having written nothing, for an array that is not sharded this way
            (the caller writes through zarr).
        """
        cut = geometry(array)
        if cut is None:
            return False
        values = np.ascontiguousarray(values, dtype=array.dtype).reshape((-1, *cut.row_shape))
        if start < 0 or start + len(values) > cut.rows:
            raise StoreError(f"{self.path}: {name}: rows {start}-{start + len(values) - 1} "
                             f"outside its {cut.rows}")
        shard = self._open.get((name, slot))
        if shard is None:
            file = None
            if cut.directory is not None:
                key = array.metadata.encode_chunk_key((slot,) + (0,) * (array.ndim - 1))
                nbytes = cut.block * int(np.prod(cut.row_shape, dtype=np.int64)) * array.dtype.itemsize
                file = ShardFile(os.path.join(cut.directory, key), cut.n_inner, nbytes)
            shard = self._open[(name, slot)] = _Open(name, array, cut, file)
        if self._put(shard, slot, start, values):
            del self._open[(name, slot)]
        return True

    def _put(self, shard: _Open, slot: int, start: int, values: np.ndarray) -> bool:
        """Write or keep the inner chunks `values` touches; True once the shard is whole."""
        cut, fill = shard.cut, shard.array.fill_value
        if shard.file is None:  # kept (a copy: the caller reuses its buffers) until whole
            if shard.whole is None:
                shard.whole = np.full((cut.rows, *cut.row_shape), fill, dtype=values.dtype)
                shard.present = np.zeros(cut.rows, bool)
            shard.whole[start : start + len(values)] = values
            shard.present[start : start + len(values)] = True
            if not shard.present.all():
                return False
            array = shard.array
            array[(slot, slice(0, cut.rows)) if array.ndim > 1 else slot] = \
                shard.whole if array.ndim > 1 else shard.whole.reshape(())
            return True
        ready = []
        for j in range(start // cut.block, -(-(start + len(values)) // cut.block)):
            lo, hi = j * cut.block, min((j + 1) * cut.block, cut.rows)
            a, b = max(start, lo), min(start + len(values), hi)
            if a == lo and b == hi and j not in shard.parts:
                ready.append((j, values[a - start : b - start]))
                continue
            buffer, present = shard.parts.setdefault(
                j, (np.full((hi - lo, *cut.row_shape), fill, dtype=values.dtype), np.zeros(hi - lo, bool)))
            buffer[a - lo : b - lo], present[a - lo : b - lo] = values[a - start : b - start], True
            if present.all():
                ready.append((j, shard.parts.pop(j)[0]))
        runs: list[tuple[int, list]] = []  # consecutive inner chunks: one pwritev
        for j, rows in sorted(ready, key=lambda t: t[0]):
            pieces = [rows]
            if len(rows) < cut.block:  # the array's edge: padded with the fill value
                pieces.append(np.full((cut.block - len(rows), *cut.row_shape), fill, dtype=rows.dtype))
            if runs and runs[-1][0] + len(runs[-1][1]) == j:
                runs[-1][1].append(pieces)
            else:
                runs.append((j, [pieces]))
        return any([shard.file.write(first, chunks) for first, chunks in runs])

    def close(self, slot: int) -> None:
        """Check that nothing of `slot` is still open (before its commit).

        Parameters
        ----------
        slot : int
            The epoch slot about to be committed.

        Raises
        ------
        StoreError
            Naming the node and the rows never written, for a shard of `slot` that is
            not complete (nothing of it is in place; the slot is not committed).
        """
        for (name, at), shard in list(self._open.items()):
            if at != slot:
                continue
            del self._open[(name, at)]
            missing = shard.missing()
            rows = ", ".join(f"{j * shard.cut.block}-{min((j + 1) * shard.cut.block, shard.cut.rows) - 1}"
                             for j in missing)
            raise StoreError(f"{self.path}: {name} of epoch slot {slot} is incomplete at its "
                             f"commit (rows {rows} never written): the slot is not committed")
