"""Train and capture under the commit protocol, from initialization or from a resume point.

Each captured slot hands the background writer, in this order: the activation chunks
(during the capture's forward pass), the weights, the metrics, the training state, and
last the commit flag. Training goes on while the writer writes; everything it hands
over is a copy taken at the end of that epoch, before the next one starts.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from tqdm.auto import tqdm

from stores import RunConfig, RunWriter, schema
from stores.config import first_epoch
from stores.schema import STATUS_DIVERGED

from . import train
from .background import BackgroundWriter
from .epoch import EpochCapture
from .resume import Resume, restore, snapshot

log = logging.getLogger(__name__)


class Diverged(RuntimeError):
    """Training reached a non-finite loss: the epochs committed before it stand, the
    store is marked diverged, and nothing of this epoch is committed."""

    def __init__(self, epoch: int, loss: float):
        super().__init__(f"training diverged at epoch {epoch} (train loss {loss})")
        self.epoch, self.loss = epoch, loss


def _check_finite(epoch: int, loss: float) -> None:
    if not math.isfinite(loss):
        raise Diverged(epoch, loss)


def _weights(model_arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The stored weights (float32) from the snapshot's native-dtype model arrays."""
    return {k: v if v.dtype == np.float32 else v.astype(np.float32) for k, v in model_arrays.items()}


class _Slots:
    """Observes and records captured slots; committed ones are recomputed, not rewritten."""

    def __init__(self, model, optimizer, generator, loss, probe, store: RunWriter,
                 writer: BackgroundWriter, capture: EpochCapture, resume: Resume):
        self.model, self.optimizer, self.generator, self.loss = model, optimizer, generator, loss
        self.probe, self.store, self.writer, self.capture = probe, store, writer, capture
        self.resume = resume
        # val_acc of every slot so far, for early stopping: a resume starts with the
        # committed ones before its state (all of them are committed).
        state = resume.state
        self.val_accs = [] if state is None else [float(v) for v in resume.val_acc[: state.slot + 1]]

    def observe(self, slot: int) -> dict:
        """Capture `slot` and return its metrics (a committed slot's are read back)."""
        if self.resume.committed[slot]:
            m = {"train_acc_observed": float(self.resume.train_acc[slot]),
                 "val_acc": float(self.resume.val_acc[slot])}
        else:
            p = self.probe
            m = train.metrics(self.capture(slot), self.loss, p.is_train, p.observed, p.true,
                              p.is_test, p.is_val)
        self.val_accs.append(m["val_acc"])
        return m

    def record(self, slot: int, epoch: int, metrics: dict, final: bool) -> None:
        snap = snapshot(self.model, self.optimizer, self.generator, slot=slot, epoch=epoch, final=final)
        if self.resume.committed[slot]:  # only its state copy is refreshed
            self.writer.submit(self.store.write_state, snap)
            return
        self.writer.submit(self.store.write_weights, slot, _weights(snap.arrays["model"]))
        self.writer.submit(self.store.write_metrics, slot, metrics)
        self.writer.submit(self.store.write_state, snap)
        self.writer.submit(self.store.commit, slot, epoch)  # last: the epoch becomes visible


def train_and_capture(config: RunConfig, model, probe, store: RunWriter, points, units,
                      reducers, schedule: list[int], progress: bool, resume: Resume) -> None:
    tc = config.train
    loss = train.loss_fn(tc.loss, getattr(model, model.head_name).out_features)
    optimizer = train.make_optimizer(model.parameters(), tc)
    generator = torch.Generator().manual_seed(config.seed)
    state = resume.state
    if state is not None:
        restore(state, model, optimizer, generator)
        log.info("%s: resuming after epoch %d (%d epochs committed)", config.name, state.epoch,
                 resume.n_committed)
    x_train, y_train = probe.x[probe.is_train], probe.observed[probe.is_train]
    writer = BackgroundWriter(config.capture.queue_chunks)
    capture = EpochCapture(model, points, store, writer, probe.x, units=units,
                           dtype=config.capture.dtype, batch_size=config.capture.batch_size,
                           reducers=reducers)
    slots = _Slots(model, optimizer, generator, loss, probe, store, writer, capture, resume)
    scheduled = set(schedule)
    first = first_epoch(config)  # 0, or the source's epoch that this run continues from
    slot, start = (state.slot + 1, state.epoch + 1) if state is not None else (0, first + 1)
    diverged = None
    try:
        m: dict = {}
        if state is None and first in scheduled:
            m = slots.observe(0)
            slots.record(0, first, m, final=False)
            slot = 1
        if state is None or not state.final:
            _epochs(config, model, optimizer, loss, x_train, y_train, generator, slots, scheduled,
                    slot, start, m, progress)
    except Diverged as err:
        diverged = err
    finally:
        writer.close()  # every epoch handed over before a failure is committed
    if diverged is not None:  # marked after those commits, so that `stores ls` says so
        store.update_attrs({"status": STATUS_DIVERGED,
                            "diverged": {"epoch": diverged.epoch, "train_loss": str(diverged.loss)}})
        raise diverged
    if tc.patience is not None:
        store.update_attrs({"early_stopping": early_stopping(store, tc.patience)})
    store.finish()


def early_stopping(store: RunWriter, patience: int) -> dict:
    """The store's `early_stopping` record, from its committed val_acc values."""
    epochs, val_acc = store.committed_values(f"{schema.METRICS}/val_acc")
    return {"patience": int(patience), "best_epoch": int(epochs[train.best_index(val_acc)]),
            "stopped_epoch": int(epochs[-1])}


def _epochs(config, model, optimizer, loss, x_train, y_train, generator, slots: _Slots,
            scheduled: set[int], slot: int, start: int, m: dict, progress: bool) -> None:
    tc = config.train
    bar = tqdm(range(start, tc.max_epochs + 1), desc=config.name, disable=not progress,
               unit="epoch", leave=False)
    for epoch in bar:
        _check_finite(epoch, float(train.train_epoch(model, optimizer, loss, x_train, y_train,
                                                     tc.batch_size, generator)))
        captured = epoch in scheduled
        if captured:
            m = slots.observe(slot)
            _check_finite(epoch, m.get("train_loss", 0.0))
            acc = m["train_acc_observed"]
        else:
            acc = float((train.predict(model, x_train).argmax(1) == y_train).float().mean())
        stop = tc.stop_train_acc is not None and acc >= tc.stop_train_acc
        # early stopping: every epoch is captured (checked), so val_accs has them all
        patience = tc.patience is not None and train.early_stop(slots.val_accs, tc.patience)
        stop = stop or patience
        final = stop or epoch == tc.max_epochs
        if captured or final:  # the epoch that ends training is always captured
            if not captured:
                m = slots.observe(slot)
                _check_finite(epoch, m.get("train_loss", 0.0))
            slots.record(slot, epoch, m, final)
            slot += 1
        bar.set_postfix(train=f"{acc:.3f}", test=f"{m.get('test_acc', float('nan')):.3f}")
        if patience:
            log.info("%s: val accuracy not improved for %d epochs: stopped at epoch %d",
                     config.name, tc.patience, epoch)
            break
        if stop:
            log.info("%s: train accuracy %.4f reached the stop threshold at epoch %d",
                     config.name, acc, epoch)
            break
    bar.close()
