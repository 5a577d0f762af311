"""Whole-chunk writes without zarr-python's codec pipeline, for the plain layout.

The run store's uncompressed arrays use the codec chain `bytes` (little endian) then
`crc32c`: a chunk file is the chunk's raw little-endian bytes followed by the CRC-32C
of those bytes (4 bytes, little endian), padded to the full chunk shape with the fill
value at the array's edge (Zarr v3 spec). zarr-python builds that file with two
copies of the data (one to append the checksum) on one event-loop thread, which
halves the writer's throughput; here the file is written straight from the caller's
buffer with one `writev` (data, edge padding, checksum): no copy. The file is written
beside its final name and renamed into place, as zarr's LocalStore does, so a reader
never sees half a chunk; the chunk directories are made when the store is laid out.
Anything else (compression, a partial chunk, another store, another dtype, a sharded
array: `stores.shardio` writes those of version-2 stores) returns False and the caller
writes through zarr.

Reading: zarr reads an absent chunk as the fill value (zarr-python 3.1 has no setting
that makes it raise). In a run store, an absent chunk of a committed epoch is damage,
never fill: `checked_group` opens a store through `CheckedStore`, which raises
StoreError, naming the array, the chunk, the epoch and what to do, when a read finds
such a chunk absent. It costs nothing while every chunk is there (zarr learns that a
chunk is absent from the same read that would have returned its bytes).
"""

from __future__ import annotations

import json
import os
import re
import sys
import uuid

import google_crc32c
import numpy as np
import zarr
import zarr.api.asynchronous as zarr_async
from zarr.codecs import BytesCodec, Crc32cCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.group import AsyncGroup
from zarr.storage import LocalStore, StorePath, WrapperStore

from . import schema
from .errors import StoreError


def _plain_target(array: zarr.Array) -> str | None:
    """The array's directory when its chunks are `bytes` + `crc32c` on a local store."""
    store = array.store_path.store
    serializer = array.serializer
    plain = (
        isinstance(store, LocalStore)
        and array.shards is None  # a shard is written whole (`stores.shardio`)
        and isinstance(serializer, BytesCodec)
        and (serializer.endian is None or serializer.endian.value == sys.byteorder == "little")
        and not array.filters
        and len(array.compressors) == 1
        and isinstance(array.compressors[0], Crc32cCodec)
    )
    return os.path.join(str(store.root), array.store_path.path) if plain else None


def storage_grid(array: zarr.Array) -> tuple[int, ...]:
    """How many stored objects (chunk files, or shard files) an array has along each
    axis: its grid of storage keys (`array.cdata_shape` counts inner chunks).

    Parameters
    ----------
    array : zarr.Array

    Returns
    -------
    tuple of int
    """
    outer = array.shards or array.chunks
    return tuple(-(-n // c) for n, c in zip(array.shape, outer))


def write_chunk(array: zarr.Array, coords: tuple[int, ...], values: np.ndarray,
                atomic: bool = True) -> bool:
    """Write one chunk straight to its file.

    Parameters
    ----------
    array : zarr.Array
        The array (plain layout: `bytes` little endian + `crc32c`, on a local store).
    coords : tuple of int
        The chunk's index.
    values : numpy.ndarray
        The part of that chunk inside the array (the whole chunk, or less at its edge),
        in the array's dtype.
    atomic : bool, default True
        As `write_plain`'s.

    Returns
    -------
    bool
        False, having written nothing, when the array's layout is not the plain one
        (the caller writes through zarr).
    """
    target = _plain_target(array)
    if target is None or values.dtype != array.dtype or values.ndim != array.ndim:
        return False
    chunks = array.chunks
    inside = tuple(min(c, s - i * c) for c, s, i in zip(chunks, array.shape, coords))
    if values.shape != inside:
        return False
    cut = [i for i, (a, c) in enumerate(zip(inside, chunks)) if a != c]
    # At the edge, the stored chunk is full size, padded with the fill value; the
    # padding follows the data in C order only if one axis is cut and every axis
    # before it has extent 1 (true of (1, block, units) activation chunks).
    if len(cut) > 1 or (cut and any(c != 1 for c in chunks[: cut[0]])):
        return False
    pad = None
    if cut:
        pad_shape = list(chunks)
        pad_shape[cut[0]] -= inside[cut[0]]
        pad = np.full(pad_shape, array.fill_value, dtype=array.dtype)
    write_plain(os.path.join(target, array.metadata.encode_chunk_key(coords)), values, pad,
                atomic=atomic)
    return True


def write_plain(path: str, values: np.ndarray, pad: np.ndarray | None = None,
                atomic: bool = True) -> None:
    """Write a chunk file of a plain array (`bytes` little endian + `crc32c`): the bytes
    of `values`, then `pad`, then their CRC-32C. The caller vouches that they are the
    chunk the array's metadata says.

    Parameters
    ----------
    path : str
        The chunk file.
    values : numpy.ndarray
        The chunk's data inside the array, little endian.
    pad : numpy.ndarray, optional
        The fill value beyond the array's edge.
    atomic : bool, default True
        Write beside the file and rename it into place; False overwrites its bytes in
        place, without truncating it first (for small copies that `stores.repair`
        writes again should a crash leave one torn: replacing an existing file makes
        ext4 start writing its data back at once, about 2 ms a file).
    """
    if values.dtype.byteorder == ">" or (pad is not None and pad.dtype.byteorder == ">"):
        raise ValueError("write_plain: little-endian values only")
    pieces = [np.ascontiguousarray(values).reshape(-1).view(np.uint8)]
    if pad is not None:
        pieces.append(pad.reshape(-1).view(np.uint8))
    target = path if not atomic else f"{path}.{uuid.uuid4().hex}.partial"
    fd = open_creating(target, os.O_WRONLY | os.O_CREAT | (os.O_EXCL if atomic else 0))
    try:
        written = _write_with_checksum(fd, pieces)
        if not atomic and os.fstat(fd).st_size > written:
            os.ftruncate(fd, written)
    except BaseException:
        os.close(fd)
        if atomic:
            os.unlink(target)
        raise
    os.close(fd)
    if atomic:  # the file appears whole under its name, as zarr's LocalStore does it
        os.replace(target, path)


def open_creating(path: str, flags: int) -> int:
    """`os.open(path, flags, 0o644)`, making the file's directory first if it is missing
    (only then: a `mkdir` of an existing directory waits on its lock, milliseconds
    while the file system writes back)."""
    try:
        return os.open(path, flags, 0o644)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return os.open(path, flags, 0o644)


def _write_with_checksum(fd: int, pieces: list) -> int:
    """Write the concatenated `pieces`, then their CRC-32C (4 bytes, little endian), with
    one `pwritev` from the file's start (a short write goes on where it stopped); the
    bytes written."""
    crc = 0
    for piece in pieces:
        crc = google_crc32c.extend(crc, piece)
    views = [memoryview(piece).cast("B") for piece in pieces]
    views.append(memoryview(np.uint32(crc).astype("<u4").tobytes()))
    done, offset = os.pwritev(fd, views, 0), 0
    for view in views:  # rarely needed: finish a short write piece by piece
        if done < offset + len(view):
            _pwrite_all(fd, view[max(0, done - offset):], max(done, offset))
        offset += len(view)
    return offset


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while len(view):  # a short write goes on where it stopped
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


# ------------------------------------------------------------------ checked reads
_CHUNK_KEY = re.compile(r"^(?P<array>.+)/c(?P<index>(?:/\d+)+)$")  # default "/" encoding


class CheckedStore(WrapperStore):
    """A run store's storage, read-only, for the library's readers: a read that finds a
    chunk absent that a committed epoch (or the probe set) needs raises StoreError.

    Parameters
    ----------
    store : zarr.abc.store.Store
        The storage read through.
    path : str
        The store, for the messages.
    prefix : str, default ""
        The root group's path within `store`.
    committed : frozenset of int, optional
        The committed slots, when the caller has read them already; otherwise an absent
        chunk's slot is looked up (only then, so a whole store costs nothing).
    """

    def __init__(self, store, path: str, prefix: str = "", committed: frozenset | None = None):
        super().__init__(store)
        self._path, self._prefix, self._committed = path, prefix.strip("/"), committed
        self._strict: bool | None = None  # every metric at every committed slot (`_claims`)
        self._first: dict[str, int | None] = {}  # metric -> its first chunk's slot

    def _with_store(self, store):
        return type(self)(store, self._path, self._prefix, self._committed)

    async def get(self, key, prototype, byte_range=None):
        value = await self._store.get(key, prototype, byte_range)
        if value is None and not key.endswith("zarr.json"):
            await self._absent(key)
        return value

    def _node(self, name: str) -> str:
        return f"{self._prefix}/{name}" if self._prefix else name

    async def _absent(self, key: str) -> None:
        name = key[len(self._prefix):].strip("/") if self._prefix else key
        match = _CHUNK_KEY.match(name)
        if not match:
            return
        array, index = match["array"], tuple(int(i) for i in match["index"].strip("/").split("/"))
        top = array.split("/")[0]
        if top == schema.SAMPLES:
            if await self._checksummed(array):  # older stores left fill-valued chunks out
                raise StoreError(f"{self._path}: {array} chunk {index} is missing (the probe set "
                                 f"is damaged): run `python -m stores validate {self._path}`; "
                                 "the run must be captured again (--overwrite)")
            return
        if top not in schema.CAPTURED or array == f"{schema.EPOCHS}/committed":
            return  # uncommitted flags and analysis chunks may be absent
        slot = index[0]
        if not await self._is_committed(slot):
            return  # an uncommitted slot: nobody's data yet
        if top == schema.METRICS and not await self._claims(array, slot):
            return  # before a recorder's metric was first reported: NaN (`stores.validate`)
        epoch = await self._read(f"{schema.EPOCHS}/epoch", slot)
        which = f"epoch {int(epoch)}" if epoch is not None and epoch >= 0 else "an epoch"
        raise StoreError(
            f"{self._path}: {array} chunk {index} of committed {which} (slot {slot}) is missing "
            f"(damage, not fill): run `python -m stores validate {self._path}`, then "
            f"`python -m stores repair {self._path}` and resume the capture")

    async def _claims(self, array: str, slot: int) -> bool:
        """Whether a metric has a value at `slot`: in a pipeline's store (with a run
        config) at every committed slot; else from its first chunk on (a metric is laid out
        when first reported, and given a chunk at every slot committed after that)."""
        if self._strict is None:
            raw = await self._store.get(self._node("zarr.json"), default_buffer_prototype())
            try:
                self._strict = "config" in json.loads(raw.to_bytes()).get("attributes", {})
            except (AttributeError, ValueError, TypeError):
                self._strict = True
        if self._strict:
            return True
        if array not in self._first:
            slots = [int(key.rsplit("/", 1)[-1]) async for key in
                     self._store.list_prefix(self._node(f"{array}/c/"))
                     if key.rsplit("/", 1)[-1].isdigit()]
            self._first[array] = min(slots, default=None)
        first = self._first[array]
        return first is not None and first < slot

    async def _is_committed(self, slot: int) -> bool:
        if self._committed is not None:
            return slot in self._committed
        flag = await self._read(f"{schema.EPOCHS}/committed", slot, damaged=True)
        return bool(flag)

    async def _read(self, name: str, slot: int, damaged=None):
        """Element `slot` of a small (epoch,) array, read past this wrapper; None if
        absent, `damaged` if unreadable."""
        try:
            array = await zarr_async.open_array(store=self._store, path=self._node(name),
                                                mode="r", zarr_format=3)
            if await self._store.get(self._node(f"{name}/c/{slot}"),
                                     default_buffer_prototype()) is None:
                return None
            return (await array.getitem((slot,))).item()
        except Exception:  # noqa: BLE001  (a damaged flag counts as committed: suspect)
            return damaged

    async def _checksummed(self, array: str) -> bool:
        raw = await self._store.get(self._node(f"{array}/zarr.json"), default_buffer_prototype())
        try:
            codecs = json.loads(raw.to_bytes())["codecs"] if raw is not None else []
        except (ValueError, KeyError, TypeError):
            return True
        return any(isinstance(c, dict) and c.get("name") == "crc32c" for c in codecs)


def checked_group(group: zarr.Group, path: str, committed=None) -> zarr.Group:
    """A store's root group, read through a CheckedStore.

    Parameters
    ----------
    group : zarr.Group
        The root, opened for reading.
    path : str
        The store, for the messages.
    committed : iterable of int, optional
        The committed slots, if known.

    Returns
    -------
    zarr.Group
    """
    where = group.store_path
    store = CheckedStore(where.store, path, where.path,
                         None if committed is None else frozenset(int(s) for s in committed))
    return zarr.Group(AsyncGroup(group.metadata, StorePath(store, where.path)))
