"""The built-in training loop: one run trained and recorded, read top to bottom.

The loop is a client of `capture.recorder.Recorder`, like a user's own loop: it sets up
the loss, the optimizer and the data-order generator, hands them to the recorder (which
restores them when the store is resumed), then goes over the epochs from the first (the
initialization, or the source's checkpoint a warm start continues from): one training
pass (none at the first epoch), a capture when the epoch is scheduled, the stop rules,
and a commit when the epoch is scheduled or ends training (that one is always
captured). The recorder hands each epoch to its background writer in commit order
(activations, weights, metrics, training state, the commit flag); training goes on
while it writes.
"""

from __future__ import annotations

import logging
import math

import torch
from tqdm.auto import tqdm

from stores import RunConfig, RunWriter, schema
from stores.config import first_epoch
from stores.schema import STATUS_DIVERGED

from . import train
from .probeset import ProbeSet
from .recorder import Recorder

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


def train_and_capture(config: RunConfig, model: torch.nn.Module, probe: ProbeSet, rec: Recorder,
                      progress: bool) -> None:
    """Train `model` as `config.train` says and record it with `rec`, which it closes.

    Parameters
    ----------
    config : stores.RunConfig
        The run.
    model : torch.nn.Module
        Its model, on the recorder's device (restored there on a resume).
    probe : capture.probeset.ProbeSet
        The run's probe set (inputs one tensor, on that device).
    rec : capture.recorder.Recorder
        The recorder of the run's store.
    progress : bool
        Show a progress bar.

    Raises
    ------
    Diverged
        When the train loss goes non-finite; the store is marked so.
    """
    try:
        with rec:  # hooks removed and writer flushed however this ends
            _loop(config, model, probe, rec, progress)
            if config.train.patience is not None:
                rec.flush()  # the record reads the committed val_acc
                rec.update_attrs({"early_stopping": early_stopping(rec.store, config.train.patience)})
    except Diverged as err:  # marked after the epochs before it are committed: `stores ls` says so
        rec.update_attrs({"status": STATUS_DIVERGED,
                          "diverged": {"epoch": err.epoch, "train_loss": str(err.loss)}})
        raise


def early_stopping(store: RunWriter, patience: int) -> dict:
    """The store's `early_stopping` record, from its committed val_acc values."""
    epochs, val_acc = store.committed_values(f"{schema.METRICS}/val_acc")
    return {"patience": int(patience), "best_epoch": int(epochs[train.best_index(val_acc)]),
            "stopped_epoch": int(epochs[-1])}


def _loop(config: RunConfig, model, probe: ProbeSet, rec: Recorder, progress: bool) -> None:
    tc, device, samples = config.train, rec.device, probe.samples
    loss = train.loss_fn(tc.loss, model.get_submodule(rec.head).out_features)
    optimizer = train.make_optimizer(model.parameters(), tc)
    generator = torch.Generator().manual_seed(config.seed)  # the data order
    rec.state(optimizer, (generator,))  # a resumed store: restored to its last committed epoch
    # The probe set's splits and labels on the device: the metrics and the stop rule.
    is_train, is_test, is_val = (torch.as_tensor(samples["split"] == split, device=device)
                                 for split in ("train", "test", "val"))
    observed, true = (torch.as_tensor(samples[k], device=device) for k in ("label_observed", "label_true"))
    x_train, y_train = probe.inputs[is_train], observed[is_train]
    measure = lambda logits: train.metrics(logits, loss, is_train, observed, true,  # noqa: E731
                                           is_test, is_val)
    first = first_epoch(config)  # 0, or the source's epoch a warm start continues from
    scheduled = set(config.schedule)
    val_accs = rec.history("val_acc")  # early stopping looks back over every epoch so far
    epochs = [] if rec.done else range(max(rec.next_epoch, first), tc.max_epochs + 1)
    bar = tqdm(epochs, desc=config.name, disable=not progress, unit="epoch", leave=False)
    m: dict = {}
    for epoch in bar:
        trained = epoch > first  # the first epoch is the model training starts from
        if trained:
            _check_finite(epoch, float(train.train_epoch(model, optimizer, loss, x_train, y_train,
                                                         tc.batch_size, generator)))
        captured = epoch in scheduled
        if captured:
            m = _observe(rec, epoch, measure, val_accs, check=trained)
        acc, stop, patience = float("nan"), False, False
        if trained:  # the stop rules
            acc = m["train_acc_observed"] if captured else _accuracy(model, x_train, y_train)
            stop = tc.stop_train_acc is not None and acc >= tc.stop_train_acc
            # early stopping: every epoch is captured (checked), so val_accs has them all
            patience = tc.patience is not None and train.early_stop(val_accs, tc.patience)
        final = stop or patience or (trained and epoch == tc.max_epochs)
        if final and not captured:  # the epoch that ends training is always captured
            m = _observe(rec, epoch, measure, val_accs, check=True)
        if captured or final:
            rec.commit(epoch, m, final=final)
        bar.set_postfix(train=f"{acc:.3f}", test=f"{m.get('test_acc', float('nan')):.3f}")
        if patience:
            log.info("%s: val accuracy not improved for %d epochs: stopped at epoch %d",
                     config.name, tc.patience, epoch)
        elif stop:
            log.info("%s: train accuracy %.4f reached the stop threshold at epoch %d",
                     config.name, acc, epoch)
        if stop or patience:
            break
    bar.close()


def _observe(rec: Recorder, epoch: int, measure, val_accs: list[float], check: bool) -> dict:
    """Capture `epoch` and return its metrics (a committed epoch's as stored)."""
    m = rec.observe(epoch, measure)
    val_accs.append(m.get("val_acc", float("nan")))
    if check:
        _check_finite(epoch, m.get("train_loss", 0.0))
    return m


def _accuracy(model, x: torch.Tensor, y: torch.Tensor) -> float:
    """Train accuracy on the observed labels between captures (for the stop rule)."""
    return float((train.predict(model, x).argmax(1) == y).float().mean())
