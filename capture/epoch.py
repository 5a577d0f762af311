"""Capture of one scheduled epoch: hooks, reduction, host buffers, hand-off to the writer.

The model runs in eval mode under `torch.inference_mode()` over the whole probe set in
batches (slices of one tensor, or the batches of a DataLoader in its fixed order). Forward hooks on the capture points cast each output on the device, copy it
into a reusable host buffer (pinned on CUDA, `non_blocking=True`), and hand each full
chunk to the background writer; an event recorded after the copy is waited on by the
writer, not by training. Hooks are removed in `finally`.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import torch
from torch import nn

from stores import RunWriter

from .background import BackgroundWriter, BufferPool, as_numpy

TORCH_DTYPES = {"float16": torch.float16, "float32": torch.float32}


class _Chunker:
    """Assembles one capture point's rows into whole chunks of `block` samples."""

    def __init__(self, name: str, pool: BufferPool, block: int, n_samples: int,
                 submit: Callable[[str, int, torch.Tensor, int], None]):
        self.name, self.pool, self.block, self.n_samples = name, pool, block, n_samples
        self.submit = submit
        self.buffer: torch.Tensor | None = None
        self.start = self.fill = 0

    def add(self, rows: torch.Tensor) -> None:
        offset = 0
        while offset < len(rows):
            if self.buffer is None:
                self.buffer = self.pool.take()
            k = min(self.block - self.fill, len(rows) - offset)
            self.buffer[self.fill : self.fill + k].copy_(rows[offset : offset + k], non_blocking=True)
            self.fill += k
            offset += k
            if self.fill == self.block or self.start + self.fill == self.n_samples:
                self.flush()

    def flush(self) -> None:
        if self.buffer is not None and self.fill:
            self.submit(self.name, self.start, self.buffer, self.fill)
            self.start += self.fill
        self.buffer, self.fill = None, 0


def probe_batches(inputs: torch.Tensor | Iterable, batch_size: int,
                  device: torch.device | None = None) -> Iterator[torch.Tensor]:
    """The probe set's inputs in their order, a batch at a time, on `device`.

    Parameters
    ----------
    inputs : torch.Tensor or iterable
        A tensor (n, ...) sliced into `batch_size` rows, or an iterable of batches in a
        fixed order (a DataLoader with shuffle=False): a batch is a tensor, or a tuple or
        list whose first item is the input.
    batch_size : int
        Rows a batch of a tensor.
    device : torch.device, optional
        Where the batches go (None: where they are).

    Yields
    ------
    torch.Tensor
    """
    if isinstance(inputs, torch.Tensor):
        batches = (inputs[start : start + batch_size] for start in range(0, len(inputs), batch_size))
    else:
        batches = (batch[0] if isinstance(batch, (tuple, list)) else batch for batch in inputs)
    for batch in batches:
        batch = torch.as_tensor(batch)
        yield batch if device is None else batch.to(device)


class EpochCapture:
    """Captures `points` of `model` on the probe set `x` into `store` at each call.

    Parameters
    ----------
    model : torch.nn.Module
        The model being trained.
    points : list of str
        Capture points (`capture.points.resolve_points`).
    store : stores.RunWriter
        The run's store, with a layer per point.
    writer : capture.background.BackgroundWriter
        The thread that writes the chunks.
    x : torch.Tensor or iterable
        The probe set's inputs (`probe_batches`): a tensor on the model's device, or
        batches in a fixed order.
    units : dict of str to int
        Each point's stored width.
    dtype : str, default "float16"
        The stored activations' dtype.
    batch_size : int, default 1024
        Rows a forward pass.
    reducers : dict of str to callable, optional
        Point -> its reduction (`capture.reduce.Reducer`); flatten where absent.
    n_samples : int, optional
        The probe set's rows (default `len(x)`; batches must give this many).
    device : torch.device, optional
        Where the batches go (default: where a tensor `x` is, else the CPU).
    """

    def __init__(self, model: nn.Module, points: list[str], store: RunWriter,
                 writer: BackgroundWriter, x: torch.Tensor | Iterable, *, units: dict[str, int],
                 dtype: str = "float16", batch_size: int = 1024,
                 reducers: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
                 n_samples: int | None = None, device: torch.device | None = None):
        self.model, self.points, self.store, self.writer = model, points, store, writer
        self.reducers = reducers or {}
        self.x, self.batch_size = x, batch_size
        self.n_samples = len(x) if n_samples is None else n_samples
        if device is None:
            device = x.device if isinstance(x, torch.Tensor) else torch.device("cpu")
        self.device = torch.device(device)
        self.dtype = TORCH_DTYPES[dtype]
        self.cuda = self.device.type == "cuda"
        self.pools = {
            p: BufferPool((store.sample_block(p), units[p]), self.dtype, count=2, pin=self.cuda)
            for p in points
        }
        self._slot = 0

    @torch.inference_mode()
    def __call__(self, slot: int) -> torch.Tensor:
        """Capture every point at `slot`; return the logits of the probe set (float32)."""
        self._slot = slot
        n = self.n_samples
        chunkers = {
            p: _Chunker(p, self.pools[p], self.store.sample_block(p), n, self._submit)
            for p in self.points
        }
        modules = dict(self.model.named_modules())
        handles = [
            modules[p].register_forward_hook(self._hook(chunkers[p]))
            for p in self.points if p not in ("input", "logits")
        ]
        was_training = self.model.training
        self.model.eval()
        logits, rows = [], 0
        try:
            for xb in probe_batches(self.x, self.batch_size, self.device):
                rows += len(xb)
                if rows > n:  # nothing of this epoch is committed: its batches do not fit
                    raise ValueError(f"the probe set's batches give more than {n} rows "
                                     "(its labels' length)")
                if "input" in chunkers:
                    chunkers["input"].add(self._reduce("input", xb))
                out = self.model(xb)
                if "logits" in chunkers:
                    chunkers["logits"].add(self._reduce("logits", out))
                logits.append(out.float())
        finally:
            for handle in handles:
                handle.remove()
            self.model.train(was_training)
        if rows != n:
            raise ValueError(f"the probe set's batches give {rows} rows, expected {n} (its "
                             "labels' length)")
        return torch.cat(logits)

    def _reduce(self, point: str, out: torch.Tensor) -> torch.Tensor:
        # Reduce and cast on the device, so only the reduced bytes cross to the host.
        reducer = self.reducers.get(point)
        return (reducer(out) if reducer else out.flatten(1)).to(self.dtype)

    def _hook(self, chunker: _Chunker):
        def hook(module, inputs, output):
            chunker.add(self._reduce(chunker.name, output))

        return hook

    def _submit(self, layer: str, start: int, buffer: torch.Tensor, n: int) -> None:
        event = None
        if self.cuda:
            event = torch.cuda.Event()
            event.record()
        slot, pool = self._slot, self.pools[layer]

        def write() -> None:
            if event is not None:
                event.synchronize()  # the non-blocking copy into `buffer` has landed
            self.store.write_activations(slot, layer, start, as_numpy(buffer, n))

        self.writer.submit(write, release=lambda: pool.give(buffer))

