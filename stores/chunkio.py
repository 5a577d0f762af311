"""Whole-chunk writes without zarr-python's codec pipeline, for the plain layout.

The run store's uncompressed arrays use the codec chain `bytes` (little endian) then
`crc32c`: a chunk file is the chunk's raw little-endian bytes followed by the CRC-32C
of those bytes (4 bytes, little endian), padded to the full chunk shape with the fill
value at the array's edge (Zarr v3 spec). zarr-python builds that file with two
copies of the data (one to append the checksum) on one event-loop thread, which
halves the writer's throughput; here the file is written straight from the caller's
buffer with one `writev` (data, edge padding, checksum): no copy. The file is written
beside its final name and renamed into place, as zarr's LocalStore does, so a reader
never sees half a chunk; the chunk directories are made when the store is laid out. Anything else (compression, a partial chunk, another store,
another dtype) returns False and the caller writes through zarr.
"""

from __future__ import annotations

import itertools
import os
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import google_crc32c
import numpy as np
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec
from zarr.storage import LocalStore


def _plain_target(array: zarr.Array) -> str | None:
    """The array's directory when its chunks are `bytes` + `crc32c` on a local store."""
    store = array.store_path.store
    serializer = array.serializer
    plain = (
        isinstance(store, LocalStore)
        and isinstance(serializer, BytesCodec)
        and (serializer.endian is None or serializer.endian.value == sys.byteorder == "little")
        and not array.filters
        and len(array.compressors) == 1
        and isinstance(array.compressors[0], Crc32cCodec)
    )
    return os.path.join(str(store.root), array.store_path.path) if plain else None


def make_chunk_dirs(array: zarr.Array) -> None:
    """Create the directory of every chunk of `array` now, while the store is laid out:
    a `mkdir` per chunk in the write path costs the writer a fifth of its speed."""
    store = array.store_path.store
    if not isinstance(store, LocalStore):
        return
    target = os.path.join(str(store.root), array.store_path.path)
    dirs = {os.path.dirname(array.metadata.encode_chunk_key(coords))
            for coords in itertools.product(*(range(n) for n in array.cdata_shape))}
    for d in sorted(dirs):
        os.makedirs(os.path.join(target, d), exist_ok=True)


def write_chunk(array: zarr.Array, coords: tuple[int, ...], values: np.ndarray) -> bool:
    """Write chunk `coords` of `array` from `values`, whose shape is the part of that
    chunk inside the array (the whole chunk, or less at the array's edge). Returns
    False, having written nothing, when the array's layout is not the plain one."""
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
    data = np.ascontiguousarray(values).reshape(-1).view(np.uint8)
    pieces = [data]
    crc = google_crc32c.value(data)
    if cut:
        pad_shape = list(chunks)
        pad_shape[cut[0]] -= inside[cut[0]]
        pad = np.full(pad_shape, array.fill_value, dtype=array.dtype).reshape(-1).view(np.uint8)
        crc = google_crc32c.extend(crc, pad)
        pieces.append(pad)
    pieces.append(np.uint32(crc).astype("<u4").tobytes())
    path = os.path.join(target, array.metadata.encode_chunk_key(coords))
    _atomic_writev(path, pieces)
    return True


# Large chunks are copied into the page cache by two threads at once (positioned
# writes of PART_BYTES pieces): the kernel's copy, not Python, is the writer's cost.
PART_BYTES = 4 << 20
WRITE_THREADS = 2
_pool: ThreadPoolExecutor | None = None


def _threads() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="latentgen-chunkio")
    return _pool


def _atomic_writev(path: str, pieces: list) -> None:
    """Write the concatenated `pieces` to `path`: to a temporary name, then renamed."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex}.partial"
    jobs, offset = [], 0
    for piece in pieces:
        view = memoryview(piece).cast("B")
        jobs += [(view[lo : lo + PART_BYTES], offset + lo) for lo in range(0, len(view), PART_BYTES)]
        offset += len(view)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        if len(jobs) > 2:
            list(_threads().map(lambda job: _pwrite_all(fd, *job), jobs))
        else:
            for job in jobs:
                _pwrite_all(fd, *job)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while len(view):  # a short write goes on where it stopped
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n
