"""Record any model's activations into a run store while it trains, in the user's own loop.

`Recorder` is the capture of the built-in pipelines, opened to any `nn.Module`: forward
hooks on the capture points (module paths), the reduction and cast on the device, pinned
host copies, one background writer behind a bounded queue, and the commit protocol
(activations, weights, metrics, training state, then the commit flag). `ProbeSet` is
what it runs the model on at each recorded epoch: a tensor or a DataLoader of batches in
a fixed order, with each sample's labels, split and whether it was corrupted.

    with Recorder("runs/mine.zarr", model, probe, ["fc1", "relu1"], range(11)) as rec:
        rec.state(optimizer, generators=(g,))      # opt-in: what a resume restores
        for epoch in range(rec.next_epoch, 11):
            if epoch:
                ...train one epoch...
            rec.record(epoch, metrics={"train_loss": loss})

Leaving the block removes every hook and flushes the writer; a clean exit marks the store
complete, an exception leaves it resumable: a recorder opened on it again restores the
state and says where to go on (`next_epoch`).
"""

from __future__ import annotations

import datetime as _dt
import logging
import platform
from importlib import metadata
from typing import Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from stores import RunWriter, StoreError, location, run_attrs, schema
from stores.lock import StoreLock

from .background import BackgroundWriter
from .epoch import EpochCapture
from .points import capture_layers, find_head, find_penultimate, resolve_points
from .probeset import ProbeSet
from .resume import fresh, resume_point, restore, snapshot

__all__ = ["Recorder"]

log = logging.getLogger(__name__)

Metrics = Mapping[str, float] | Callable[[torch.Tensor], Mapping[str, float]] | None


def versions() -> dict[str, str]:
    """The versions of latentgen and what it writes with, as a store records them."""
    out = {}
    for name in ("latentgen", "torch", "numpy", "zarr", "xarray"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    out["python"] = platform.python_version()
    return out


class Recorder:
    """Records a model's activations, weights and metrics at chosen epochs into a run store.

    Parameters
    ----------
    path : str
        The store (a folder or URL ending in .zarr). A complete store there is refused
        unless `overwrite`; an unfinished one is resumed.
    model : torch.nn.Module
        Any model; it stays where it is (`device`).
    probe : ProbeSet
        What the model runs on at each recorded epoch.
    points : str or sequence of str
        Capture points: module paths (`model.named_modules()`), `input`, `logits`; the
        penultimate point (the head's input) is always added.
    schedule : iterable of int
        The epochs to record, increasing: one store slot each, plus a spare one. Epochs
        are recorded in increasing order; one off the schedule (the epoch a stop rule
        ends training at) takes the slot after the last recorded one, the spare one
        after the whole schedule, and ends the record.
    reductions : mapping of str to str, optional
        Point -> reduction (`stores.config.REDUCTIONS`: flatten, avgpool, pool:K,
        project:D, tokens:mean, ...); flatten where absent.
    dtype : {"float16", "float32"}, default "float16"
        The stored activations' dtype.
    head, penultimate : str, optional
        The head (last layer) and the point that feeds it; default: the model's
        `head_name` / `penultimate` attributes, else found (`capture.points`).
    attrs : mapping, optional
        Store attributes (JSON).
    metrics : iterable of str, default ()
        Metric names laid out up front; any other is laid out when first recorded.
    batch_size : int, default 1024
        Rows a forward pass when the probe set is one tensor.
    device : str or torch.device, optional
        Where the probe set runs (default: where the model's parameters are).
    overwrite : bool, default False
        Replace whatever store is at `path`.
    progress : bool, default False
        A progress bar over the schedule.
    projection_seed : int, default 0
        The seed `project:D` reductions derive from.
    compressor : {"none", "zstd"} or None, default None
        The captured arrays' compressor.
    queue_chunks : int, default 8
        The background writer's queue bound.
    lock : bool, default True
        Hold the store's write lock (`stores.lock`) while recording.

    Attributes
    ----------
    store : stores.RunWriter
    points : list of str
        The capture points, in forward order.
    head, penultimate : str
    device : torch.device
    """

    def __init__(self, path: str, model: nn.Module, probe: ProbeSet, points, schedule, *,
                 reductions: Mapping[str, str] | None = None, dtype: str = "float16",
                 head: str | None = None, penultimate: str | None = None,
                 attrs: Mapping | None = None, metrics: Iterable[str] = (),
                 batch_size: int = 1024, device=None, overwrite: bool = False,
                 progress: bool = False, projection_seed: int = 0, compressor: str | None = None,
                 queue_chunks: int = 8, lock: bool = True):
        self.path, self.model, self.probe = str(path), model, probe
        self.schedule = _schedule(schedule)
        params = dict(model.state_dict())
        where = next(iter(params.values())).device if params else torch.device("cpu")
        self.device = torch.device(device) if device is not None else where
        first = probe.first_batch(self.device)
        self.head = find_head(model, head)
        self.penultimate = find_penultimate(model, first, self.head, penultimate)
        self.points = resolve_points(model, (points,) if isinstance(points, str) else tuple(points),
                                     self.penultimate)
        layers, reducers = capture_layers(model, self.points, tuple(first.shape[1:]),
                                          dict(reductions or {}), projection_seed, self.device,
                                          self.penultimate, sample=first)
        self._lock = StoreLock(self.path) if lock else None
        if self._lock is not None:
            location.makedirs(location.parent(self.path))
            self._lock.acquire()
        try:
            layout = dict(layers=layers, params={k: tuple(v.shape) for k, v in params.items()},
                          activation_dtype=dtype, compressor=compressor,
                          metrics=(metrics,) if isinstance(metrics, str) else tuple(metrics),
                          attrs={**dict(attrs or {}), "versions": versions(),
                                 "device": str(self.device), "head": self.head})
            self.store = self._open(overwrite, layout)
        except BaseException:
            self._release()
            raise
        self._writer = BackgroundWriter(queue_chunks)
        self._capture = EpochCapture(model, self.points, self.store, self._writer, probe.inputs,
                                     units={l.name: l.units for l in layers}, dtype=dtype,
                                     batch_size=batch_size, reducers=reducers,
                                     n_samples=len(probe), device=self.device)
        self._optimizer, self._generators, self._stateful = None, (), False
        self._next, self._observed, self._closed, self._finished = 0, None, False, False
        self._bar = tqdm(total=len(self.schedule), disable=not progress, unit="epoch", leave=False,
                         desc=location.name(self.path))

    # ---------------------------------------------------------------- opening
    def _open(self, overwrite: bool, layout: dict) -> RunWriter:
        """Create the store, or reopen an unfinished one (its `resumes` event recorded)."""
        path, samples = self.path, self.probe.samples
        if location.is_file(path) or (location.is_dir(path) and not location.is_store(path)
                                      and location.listdir(path)):
            raise StoreError(f"{path} exists but is not a run store: move it away or choose "
                             "another path")
        exists = location.is_store(path)
        if exists and not overwrite and run_attrs(path).get("status") == schema.STATUS_COMPLETE:
            raise StoreError(f"{path} is complete: pass overwrite=True to record it again")
        if not exists or overwrite:
            self.resume = fresh(self.schedule)
            return RunWriter.create_atomic(path, replace=exists, schedule=self.schedule,
                                           samples=samples, samples_attrs=self.probe.attrs,
                                           **layout)
        store = RunWriter.reopen(path, layout["layers"], layout["params"], samples)
        attrs = store.attrs
        if attrs.get("schedule") != self.schedule:
            raise StoreError(f"{path}: the unfinished store has the schedule "
                             f"{attrs.get('schedule')}, not {self.schedule}: pass overwrite=True "
                             "to start it again")
        location.remove_partial_files(path)
        self.resume = resume = resume_point(path)
        if attrs.get("device") != str(self.device):
            log.warning("%s was started on %s and resumes on %s: the result may differ from an "
                        "uninterrupted run in the last bits", path, attrs.get("device"), self.device)
        event = {"after_epoch": None if resume.state is None else resume.state.epoch,
                 "committed": resume.n_committed,
                 "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        store.update_attrs({"status": schema.STATUS_RUNNING,
                            "resumes": [*attrs.get("resumes", []), event]})
        return store

    # ---------------------------------------------------------------- resume
    def state(self, optimizer: torch.optim.Optimizer | None,
              generators: torch.Generator | Iterable[torch.Generator] = ()) -> None:
        """Opt in to resumable training: each recorded epoch stores the model's, the
        optimizer's and the generators' state (and torch's, NumPy's and Python's global
        generators); on an unfinished store, the latest stored state is restored into
        them now and `next_epoch` is the epoch after it.

        Parameters
        ----------
        optimizer : torch.optim.Optimizer or None
            The model's optimizer.
        generators : torch.Generator or iterable of torch.Generator, default ()
            The training's own generators (a DataLoader's, a data-order one).
        """
        self._optimizer, self._stateful = optimizer, True
        self._generators = (generators,) if isinstance(generators, torch.Generator) else tuple(generators)
        state = self.resume.state
        if state is not None:
            restore(state, self.model, optimizer, self._generators)
            self._next = state.slot + 1
            log.info("%s: resuming after epoch %d (%d epochs committed)", self.path, state.epoch,
                     self.resume.n_committed)

    @property
    def next_epoch(self) -> int:
        """The epoch to train next: 0 on a fresh store (or without `state`), else the one
        after the restored state."""
        state = self.resume.state
        return state.epoch + 1 if self._stateful and state is not None else 0

    @property
    def done(self) -> bool:
        """Whether the restored state is of the final epoch (nothing is left to train)."""
        state = self.resume.state
        return bool(self._stateful and state is not None and state.final)

    def history(self, name: str) -> list[float]:
        """A metric's stored values at the slots before `next_epoch` (the committed epochs
        a resume goes past), in order; [] on a fresh store."""
        values = self.resume.metrics.get(name)
        return [float("nan") if values is None else float(values[s]) for s in range(self._next)]

    # ---------------------------------------------------------------- recording
    def _slot(self, epoch: int) -> int:
        """The slot of `epoch`: its scheduled (or committed) one from the next on; an epoch
        off the schedule takes the next slot (the spare one after the whole schedule)."""
        epochs, n = self.resume.epochs, len(self.resume.epochs)
        for slot in range(self._next, n):
            if int(epochs[slot]) == epoch:
                return slot
        if epoch in self.schedule or self._next >= n:
            raise StoreError(f"{self.path}: epoch {epoch} has no slot left (epochs are recorded "
                             f"in increasing order; an epoch off the schedule ends the record)")
        return self._next

    def observe(self, epoch: int, metrics: Metrics = None) -> dict:
        """Capture `epoch` (activations handed to the writer, nothing committed yet) and
        return its metrics; a committed epoch is not captured again: its stored metrics
        are returned.

        Parameters
        ----------
        epoch : int
            The epoch number.
        metrics : mapping or callable, optional
            Name -> number, or a function of the probe set's logits (float32 tensor, in
            the probe set's order) that returns them.

        Returns
        -------
        dict of str to float
        """
        slot = self._slot(epoch)
        if self.resume.committed[slot]:
            m = {k: float(v[slot]) for k, v in self.resume.metrics.items()}
        else:
            logits = self._capture(slot)
            m = dict(metrics(logits) if callable(metrics) else (metrics or {}))
            m = {k: float(v) if isinstance(v, (torch.Tensor, np.generic)) else v for k, v in m.items()}
        self._observed = slot
        return m

    def commit(self, epoch: int, metrics: Mapping[str, float], *, final: bool = False) -> None:
        """Hand over the rest of an observed epoch: weights, metrics, training state, and
        last its commit flag. A committed epoch only has its state copy refreshed.

        Parameters
        ----------
        epoch : int
            The epoch `observe` captured last.
        metrics : mapping of str to float
            Its metrics (any names, `stores.schema.METRIC_NAME`).
        final : bool, default False
            Whether training ends here (a resume then trains no more).
        """
        slot = self._slot(epoch)
        if self._observed != slot:
            raise RuntimeError(f"commit({epoch}): observe({epoch}) first")
        snap = snapshot(self.model, self._optimizer, self._generators, slot=slot, epoch=epoch,
                        final=final)
        submit = self._writer.submit
        if not self.resume.committed[slot]:
            arrays = snap.arrays["model"]
            submit(self.store.write_weights, slot, {k: v.astype(np.float32, copy=False)
                                                    for k, v in arrays.items()})
            submit(self.store.write_metrics, slot, dict(metrics))
        if self._stateful:  # weights just written: the state refers to them (stores.state)
            submit(self.store.write_state, snap, not bool(self.resume.committed[slot]))
        if not self.resume.committed[slot]:
            submit(self.store.commit, slot, epoch)  # last: the epoch becomes visible
        self._next, self._observed = slot + 1, None
        self._bar.update(1)

    def record(self, epoch: int, metrics: Metrics = None, *, final: bool = False) -> dict:
        """Record `epoch`: `observe` it, then `commit` it.

        Parameters
        ----------
        epoch : int
            The epoch number (on the schedule, or one final epoch off it).
        metrics : mapping or callable, optional
            As `observe` takes them.
        final : bool, default False
            Whether training ends here.

        Returns
        -------
        dict of str to float
            The metrics recorded (a committed epoch's as stored).
        """
        m = self.observe(epoch, metrics)
        self.commit(epoch, m, final=final)
        return m

    # ---------------------------------------------------------------- the store
    def update_attrs(self, attrs: Mapping) -> None:
        """Write store attributes (JSON), now; after the recorder closed too."""
        self.store.update_attrs(attrs)
        if self._finished:
            self.store.finish()  # consolidated again

    def flush(self) -> None:
        """Wait until everything handed over is written (and committed)."""
        self._writer.flush()

    def close(self, failed: bool = False) -> None:
        """Flush the writer, mark the store complete unless `failed`, release the lock."""
        if self._closed:
            return
        self._closed = True
        try:
            self._writer.close()
            if not failed:
                self.store.finish()
                self._finished = True
        finally:
            self._bar.close()
            self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.close(failed=kind is not None)


def _schedule(schedule) -> list[int]:
    epochs = [int(e) for e in schedule]
    if not epochs or epochs[0] < 0 or any(b <= a for a, b in zip(epochs, epochs[1:])):
        raise ValueError(f"schedule: expected increasing epochs >= 0, got {epochs}")
    return epochs
