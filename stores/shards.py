"""The Zarr v3 sharding format of a run store's shards, without zarr (schema version 2).

A shard of the store's layout holds the inner chunks of one epoch slot of one node cut
along one axis (samples, or a parameter's first axis), in order: each inner chunk is
its encoded bytes followed by their CRC-32C (4 bytes, little endian), and after the
last one comes the shard index: an (offset, nbytes) pair of little-endian uint64 per
inner chunk in C order, then the index's own CRC-32C (the `sharding_indexed` codec
with zarr's default index codecs, `bytes` + `crc32c`, index at the end). Uncompressed
inner chunks all have one encoded size, so each one has a fixed place in the file:
`ShardFile` writes inner chunks at their final offsets into a file beside the shard as
they arrive, appends the index after the last one and renames the file into place, so
a reader never sees half a shard. Inner chunks of 1 MiB or more start on a page
boundary (zeros pad the few bytes after each checksum; the index says where each one
is, so zarr reads them as any other shard): the page cache then copies them about a fifth
faster. Their checksums are computed on a second thread, without the GIL, while the
chunks are being written. `inner_damage` checks every inner chunk's checksum of a
stored shard (`python -m stores validate`).
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from crc32c import crc32c as _crc32c

from .chunkio import open_creating
from .errors import StoreError

CRC_BYTES = 4
EMPTY = 2**64 - 1  # the index's (offset, nbytes) of an inner chunk that is not stored
MAX_PIECES = 512  # buffers per pwritev (IOV_MAX is 1024 on Linux)
PAGE = 4096  # inner chunks of ALIGN_FROM bytes or more start at a multiple of PAGE
ALIGN_FROM = 1 << 20  # (the padding then costs at most 0.4% of a shard)
THREAD_FROM = 1 << 20  # hand-overs of this many bytes or more: checksums on a thread
_ZEROS = memoryview(bytes(PAGE))
_POOL: dict[int, ThreadPoolExecutor] = {}  # process id -> its checksum thread


def _checksummer() -> ThreadPoolExecutor:
    """The one thread of this process that computes shards' checksums (made at first
    need, and again in a forked child, which inherits the executor but not its thread)."""
    pid = os.getpid()
    if pid not in _POOL:
        _POOL.clear()
        _POOL[pid] = ThreadPoolExecutor(1, thread_name_prefix="latentgen-crc32c")
    return _POOL[pid]


def crc32c(pieces) -> bytes:
    """The CRC-32C of the concatenated `pieces`, as stored after a chunk.

    Parameters
    ----------
    pieces : iterable of buffer
        Bytes, memoryviews or C-contiguous arrays.

    Returns
    -------
    bytes
        4 bytes, little endian.
    """
    crc = 0
    for piece in pieces:  # without the GIL from 64 KiB on
        crc = _crc32c(piece, crc, gil_release_mode=int(memoryview(piece).nbytes >= 1 << 16))
    return int(crc).to_bytes(CRC_BYTES, "little")


def stride(encoded: int) -> int:
    """Bytes from one inner chunk's start to the next's in a shard `ShardFile` writes.

    Parameters
    ----------
    encoded : int
        Bytes of an inner chunk as stored (its checksum included).

    Returns
    -------
    int
        `encoded`, rounded up to a multiple of `PAGE` from `ALIGN_FROM` bytes on.
    """
    return encoded + (-encoded % PAGE if encoded >= ALIGN_FROM else 0)


def index_nbytes(n_inner: int) -> int:
    """Bytes of the index of a shard of `n_inner` inner chunks (its checksum included).

    Parameters
    ----------
    n_inner : int

    Returns
    -------
    int
    """
    return 16 * n_inner + CRC_BYTES


def encode_index(pairs: np.ndarray) -> bytes:
    """A shard index as stored: (offset, nbytes) per inner chunk, then its CRC-32C.

    Parameters
    ----------
    pairs : numpy.ndarray
        (n_inner, 2) of int: each inner chunk's offset and encoded size (EMPTY, EMPTY
        where it is not stored), in C order of the inner chunks.

    Returns
    -------
    bytes
    """
    raw = np.ascontiguousarray(pairs, dtype="<u8").tobytes()
    return raw + crc32c([raw])


def dense_index(n_inner: int, encoded: int) -> bytes:
    """The index of a shard whose `n_inner` inner chunks are `encoded` bytes each, in
    order, each `stride(encoded)` bytes after the one before.

    Parameters
    ----------
    n_inner : int
        Inner chunks.
    encoded : int
        Bytes of each as stored (its checksum included).

    Returns
    -------
    bytes
        As `encode_index`.
    """
    offsets = np.arange(n_inner, dtype=np.uint64) * np.uint64(stride(encoded))
    return encode_index(np.stack([offsets, np.full(n_inner, encoded, np.uint64)], axis=1))


def decode_index(raw: bytes | memoryview, n_inner: int) -> np.ndarray:
    """The (n_inner, 2) index at the end of a stored shard.

    Parameters
    ----------
    raw : bytes
        The whole shard file.
    n_inner : int
        Its inner chunks (in C order).

    Returns
    -------
    numpy.ndarray
        (n_inner, 2) uint64: offset and encoded size of each.

    Raises
    ------
    ValueError
        When the file is shorter than an index or the index's checksum fails.
    """
    size = index_nbytes(n_inner)
    if len(raw) < size:
        raise ValueError(f"truncated shard ({len(raw)} bytes, its index alone takes {size})")
    tail = memoryview(raw)[len(raw) - size:]
    if crc32c([tail[:-CRC_BYTES]]) != bytes(tail[-CRC_BYTES:]):
        raise ValueError("shard index checksum mismatch")
    return np.frombuffer(tail[:-CRC_BYTES], dtype="<u8").reshape(n_inner, 2)


def inner_damage(raw: bytes | memoryview, n_inner: int,
                 encoded: int | None = None) -> list[tuple[int | None, str]]:
    """Every inner chunk of a stored shard that fails its checksum (or is not there).

    Parameters
    ----------
    raw : bytes
        The shard file.
    n_inner : int
        Its inner chunks.
    encoded : int, optional
        The encoded size every inner chunk has (uncompressed layouts); None: any.

    Returns
    -------
    list of (int or None, str)
        (inner chunk, what is wrong); None for the whole shard (its index is damaged).
    """
    try:
        index = decode_index(raw, n_inner)
    except ValueError as err:
        return [(None, f"damaged ({err})")]
    view, end = memoryview(raw), len(raw) - index_nbytes(n_inner)
    found = []
    for j, (offset, nbytes) in enumerate(index.tolist()):
        if offset == EMPTY and nbytes == EMPTY:
            found.append((j, "missing (not in the shard's index)"))
        elif nbytes < CRC_BYTES or offset + nbytes > end or (encoded is not None and nbytes != encoded):
            found.append((j, f"damaged (the index puts it at bytes {offset}-{offset + nbytes} "
                             f"of {end})"))
        elif crc32c([view[offset : offset + nbytes - CRC_BYTES]]) != bytes(
                view[offset + nbytes - CRC_BYTES : offset + nbytes]):
            found.append((j, "damaged (checksum mismatch)"))
    return found


class ShardFile:
    """One uncompressed shard being written: whole inner chunks at their final offsets
    into `<path>.<uuid>.partial`, in any order; after the last one, the index, and the
    file renamed to `path`.

    Parameters
    ----------
    path : str
        The shard's file (its directory exists).
    n_inner : int
        Its inner chunks.
    chunk_nbytes : int
        Raw bytes of one inner chunk (its checksum not counted).
    """

    def __init__(self, path: str, n_inner: int, chunk_nbytes: int):
        self.path, self.n_inner, self.chunk_nbytes = path, n_inner, chunk_nbytes
        self.encoded = chunk_nbytes + CRC_BYTES
        self.stride = stride(self.encoded)
        self.partial = f"{path}.{uuid.uuid4().hex}.partial"
        self.done: set[int] = set()

    @property
    def complete(self) -> bool:
        """Every inner chunk written."""
        return len(self.done) == self.n_inner

    def missing(self) -> list[int]:
        """The inner chunks not written yet."""
        return sorted(set(range(self.n_inner)) - self.done)

    def write(self, first: int, chunks: list[list]) -> bool:
        """Write inner chunks `first`, `first + 1`, ... (each a list of buffers that make
        its raw bytes, edge padding included); close the shard if it is complete now.

        Parameters
        ----------
        first : int
            The first inner chunk's number.
        chunks : list of list of buffer
            Each inner chunk's pieces, C-contiguous, little endian.

        Returns
        -------
        bool
            Whether the shard is complete (and in place) now.
        """
        chunks = [[memoryview(p).cast("B") for p in pieces] for pieces in chunks]
        if any(sum(len(p) for p in pieces) != self.chunk_nbytes for pieces in chunks):
            raise StoreError(f"{self.path}: an inner chunk of other than {self.chunk_nbytes} bytes")
        if first + len(chunks) > self.n_inner:
            raise StoreError(f"{self.path}: inner chunks {first}.. beyond its {self.n_inner}")
        flags = os.O_WRONLY | os.O_CREAT | (0 if self.done else os.O_TRUNC)
        done = self.done | set(range(first, first + len(chunks)))
        complete = len(done) == self.n_inner
        last = complete and first + len(chunks) == self.n_inner
        fd = open_creating(self.partial, flags)
        try:
            self._write(fd, first, chunks, index=last)
            if complete and not last:  # completed out of order
                _pwritev_all(fd, [memoryview(dense_index(self.n_inner, self.encoded))],
                             self.n_inner * self.stride)
        finally:
            os.close(fd)
        self.done = done  # (only once written: a failed write leaves them missing)
        if self.complete:  # the shard appears whole under its name
            os.replace(self.partial, self.path)
        return self.complete

    def _write(self, fd: int, first: int, chunks: list[list[memoryview]], index: bool) -> None:
        """One pwritev of consecutive inner chunks, straight from the caller's buffers
        (each followed by a placeholder for its checksum and the zeros up to the next
        chunk's start; the index after the last), while a second thread computes the
        checksums, which then overwrite their placeholders."""
        pad = _ZEROS[: self.stride - self.encoded]
        views = []
        for pieces in chunks:
            views += pieces + [_ZEROS[:CRC_BYTES], pad]
        if index:
            views.append(memoryview(dense_index(self.n_inner, self.encoded)))
        threaded = len(chunks) * self.chunk_nbytes >= THREAD_FROM
        sums = _checksummer().submit(_checksums, chunks) if threaded else None
        try:
            _pwritev_all(fd, views, first * self.stride)
        finally:  # (the thread may still read the caller's buffers)
            checksums = sums.result() if threaded else _checksums(chunks)
        for k, checksum in enumerate(checksums):
            os.pwrite(fd, checksum, (first + k) * self.stride + self.chunk_nbytes)


def _checksums(chunks: list[list[memoryview]]) -> list[bytes]:
    return [crc32c(pieces) for pieces in chunks]


def _pwritev_all(fd: int, views: list[memoryview], offset: int) -> None:
    """Write `views` one after another from `offset` (a short write goes on where it
    stopped)."""
    views = [v for v in views if len(v)]
    while views:
        done = os.pwritev(fd, views[:MAX_PIECES], offset)
        if done <= 0:
            raise OSError(f"pwritev wrote {done} bytes")
        offset += done
        while views and done >= len(views[0]):
            done -= len(views.pop(0))
        if done:
            views[0] = views[0][done:]
