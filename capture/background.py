"""One background writer thread fed through a bounded queue.

Capture hands over whole chunks in reusable host buffers; the writer writes them in
order and gives each buffer back to its pool. Both the queue and the pools are bounded,
so capture holds at most `queue_chunks` chunks in flight plus two buffers per layer,
however long the run. Work is done in submission order, so an epoch's commit (its last
item) is only written after everything before it succeeded.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

import numpy as np
import torch


class WriterError(RuntimeError):
    """The background writer failed; nothing after the failure was committed."""


class BufferPool:
    """A fixed set of host buffers of one shape; `take` blocks while all are in use.

    Parameters
    ----------
    shape : tuple of int
        Each buffer's shape (rows, units).
    dtype : torch.dtype
        Their dtype.
    count : int
        How many buffers the pool holds.
    pin : bool
        Page-locked memory (for asynchronous copies from CUDA).
    """

    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype, count: int, pin: bool):
        self._free: queue.Queue[torch.Tensor] = queue.Queue()
        for _ in range(count):
            self._free.put(torch.empty(shape, dtype=dtype, pin_memory=pin))

    def take(self) -> torch.Tensor:
        """A free buffer, waiting for one to be given back if none is."""
        return self._free.get()

    def give(self, buffer: torch.Tensor) -> None:
        """Return a buffer taken from this pool."""
        self._free.put(buffer)


class BackgroundWriter:
    """Runs submitted write calls on one thread, in order.

    After a failure the remaining calls are skipped (never committed), and the next
    `submit` or `close` raises `WriterError`.

    Parameters
    ----------
    max_items : int
        The queue's bound: `submit` blocks while this many calls wait.
    """

    def __init__(self, max_items: int):
        self._queue: queue.Queue = queue.Queue(maxsize=max_items)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="latentgen-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any,
               release: Callable[[], None] | None = None) -> None:
        """Queue `fn(*args)`; `release` runs after it (whether it ran or not)."""
        self._raise_if_failed()
        self._queue.put((fn, args, release))

    def flush(self) -> None:
        """Wait until every write queued so far is done; raise if any failed."""
        done = threading.Event()
        self.submit(done.set, release=done.set)  # set even when a failure skips it
        done.wait()
        self._raise_if_failed()

    def close(self) -> None:
        """Wait for every queued write, then stop the thread; raise if any failed."""
        self._queue.put(None)
        self._thread.join()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise WriterError(f"store writer failed: {self._error!r}") from self._error

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, args, release = item
            try:
                if self._error is None:  # after a failure, skip (never commit) the rest
                    fn(*args)
            except BaseException as err:  # reported to the producer on its next call
                self._error = err
            finally:
                if release is not None:
                    release()


def as_numpy(buffer: torch.Tensor, n: int) -> np.ndarray:
    """The first `n` rows of a host buffer as a NumPy view (no copy).

    Parameters
    ----------
    buffer : torch.Tensor
        A CPU tensor (a pool's buffer).
    n : int
        Rows filled.

    Returns
    -------
    numpy.ndarray
        A view of `buffer[:n]`.
    """
    return buffer[:n].numpy()
