"""The linear-algebra kernels behind `analyze.spectral`'s fast path, on NumPy/SciPy or
through torch on a device, and how many classes to decompose at once.

Each kernel takes and returns NumPy arrays; `backend(device)` picks the implementation
(None: NumPy, else a torch device such as "cuda" or "cpu"). `class_workers` says how
many classes the NumPy path decomposes side by side, each on one BLAS thread: the
caller's BLAS thread count. Why (README, Performance): LAPACK's eigensolvers are
sequences of small, memory-bound BLAS calls that synchronise their threads at every
call, and on a loaded machine a descheduled thread stalls the others at each of them
(a 2 000 × 2 000 float64 `eigvalsh` took 12.9 s on two BLAS threads against 3.6 s on
one under a load average of 8); NumPy and SciPy also bring one OpenBLAS each, whose idle
threads spin while the other works. One class per thread synchronises once per class.
"""

from __future__ import annotations

import functools
import os
import socket

import numpy as np

__all__ = ["NumpyKernels", "TorchKernels", "backend", "class_workers", "one_blas_thread"]


class NumpyKernels:
    """The kernels on NumPy (products, float64 eigenvalues) and SciPy (float32 eigh)."""

    def gram(self, block: np.ndarray, gram_side: bool) -> np.ndarray:
        """block blockᵀ (gram_side) or blockᵀ block, in the block's dtype."""
        return block @ block.T if gram_side else block.T @ block

    def eigvalsh(self, stack: np.ndarray) -> np.ndarray:
        """Eigenvalues, ascending, of each symmetric matrix of a (b, m, m) stack."""
        return np.linalg.eigvalsh(stack)

    def eigh32(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(w, U), ascending, of one float32 symmetric matrix: SciPy's float32 divide and
        conquer (NumPy's float32 eigh is twice as slow, SciPy's MRRR on a subset slower)."""
        import scipy.linalg

        return scipy.linalg.eigh(matrix, driver="evd", check_finite=False)

    def left(self, U: np.ndarray, block: np.ndarray) -> np.ndarray:
        """Uᵀ block."""
        return U.T @ block

    def matmul_t(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """A Bᵀ."""
        return A @ B.T


class TorchKernels:
    """The same kernels through torch on `device`."""

    def __init__(self, device: str):
        import torch

        self.torch, self.device = torch, torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"analysis.device: {device!r} asked for, but torch sees no CUDA "
                             f"device on {socket.gethostname()}; use cpu or null")

    def _t(self, a: np.ndarray):
        if any(step < 0 for step in a.strides):  # torch takes no negative strides
            a = a.copy()
        return self.torch.as_tensor(a, device=self.device)

    def gram(self, block, gram_side):
        t = self._t(block)
        return (t @ t.T if gram_side else t.T @ t).cpu().numpy()

    def eigvalsh(self, stack):
        return self.torch.linalg.eigvalsh(self._t(stack)).cpu().numpy()

    def eigh32(self, matrix):
        w, U = self.torch.linalg.eigh(self._t(matrix))
        return w.cpu().numpy(), U.cpu().numpy()

    def left(self, U, block):
        return (self._t(U).T @ self._t(block)).cpu().numpy()

    def matmul_t(self, A, B):
        return (self._t(A) @ self._t(B).T).cpu().numpy()


def backend(device: str | None) -> NumpyKernels | TorchKernels:
    """NumPy's kernels for None, torch's on `device` otherwise."""
    return NumpyKernels() if device is None else TorchKernels(device)


@functools.cache
def _controller():
    """threadpoolctl's view of the BLAS libraries, made once (it costs ~5 ms, as much as
    fitting a 64-unit slab), after SciPy's OpenBLAS is loaded."""
    import scipy.linalg  # noqa: F401  (loads SciPy's BLAS, so the controller sees it)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def class_workers(device: str | None, n_tasks: int) -> int:
    """How many classes to decompose side by side: on NumPy, the BLAS thread count the
    caller allows (1 where analysis already runs one BLAS thread per slab), at most one
    per task and per CPU; on torch one (its own threads, or the device, do the work)."""
    if device is not None or n_tasks < 2:
        return 1
    threads = [p["num_threads"] for p in _controller().select(user_api="blas").info()]
    return max(1, min(max(threads, default=1), n_tasks, os.cpu_count() or 1))


def one_blas_thread():
    """A context in which every BLAS library runs on one thread (restored on exit)."""
    return _controller().limit(limits=1, user_api="blas")
