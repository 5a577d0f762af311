"""Train one run and capture its scheduled epochs into a run store.

An unfinished store of the same run is resumed (`capture.resume`), a store of another
config is refused, and one capture at a time writes a store (`stores.lock`)."""

from __future__ import annotations

import logging
import random

import numpy as np
import torch

from stores import RunConfig, StoreError, location, schema, slabs
from stores.layout import existing_store
from stores.lock import StoreLock

from .corruption import for_run as corruption_for_run
from .data import load_dataset
from .dataset import Dataset
from .estimate import check_size
from .loop import Diverged, train_and_capture
from .models import build_model, load_weights
from .probeset import ProbeSet
from .recorder import Recorder
from .warmstart import init_attrs, initial_state, relabelled

log = logging.getLogger(__name__)


def probe_set(data: Dataset, config: RunConfig, device: torch.device,
              root: str | None = None) -> ProbeSet:
    """The probe set of a run, its training labels corrupted as its config says.

    With init.labels: relabel, the labels and splits are the source's.

    Parameters
    ----------
    data : capture.dataset.Dataset
        The run's dataset.
    config : stores.RunConfig
        The run (corruption, seed, init).
    device : torch.device
        Where the tensors go.
    root : str, optional
        The runs root the warm-start source is looked up under.

    Returns
    -------
    capture.probeset.ProbeSet
        Its inputs one tensor on `device`, train rows then test rows; the corruption in
        its attrs.
    """
    observed, mask, _ = corruption_for_run(data.y_train, config.corruption, data.n_classes, config.seed)
    n_train, n_test = len(data.y_train), len(data.y_test)
    record = {
        "split": np.array(["train"] * n_train + ["test"] * n_test),
        "index": np.concatenate([data.index_train, data.index_test]),
        "label_true": np.concatenate([data.y_train, data.y_test]),
        "label_observed": np.concatenate([observed, data.y_test]),
        "corrupted": np.concatenate([mask, np.zeros(n_test, dtype=bool)]),
    }
    if config.init.source and config.init.labels == "relabel":
        record = relabelled(config, root, record)
    corruption = config.corruption
    return ProbeSet(
        torch.as_tensor(np.concatenate([data.x_train, data.x_test]), device=device),
        record["label_true"], record["label_observed"], record["split"], record["corrupted"],
        record["index"],
        attrs={"corruption_mode": corruption.mode, "corruption_rate": corruption.rate,
               "corruption_seed": config.seed if corruption.seed is None else corruption.seed},
    )


def capture_run(config: RunConfig, root: str, *, overwrite: bool = False,
                device: str | None = None, progress: bool = True) -> str:
    """Train `config` and capture it into `<root>/<pipeline>/<run>.zarr`.

    A complete store of this run is left alone; an unfinished one is resumed at its first
    uncommitted epoch; one of another config is refused unless `overwrite`. One capture
    writes a store at a time (`STORE.lock`).

    Parameters
    ----------
    config : stores.RunConfig
        The run.
    root : str
        The runs root, a folder or a URL.
    overwrite : bool, default False
        Replace a store of this path whatever it holds.
    device : str, optional
        Where to train (`cpu`, `cuda`); default CUDA when available.
    progress : bool, default True
        Show progress bars.

    Returns
    -------
    str
        The store's path.

    Raises
    ------
    stores.StoreError
        When the store cannot be written, holds another config, or the run diverged.
    """
    path = config.store_path(root)
    check_size(config)  # before any folder is made or any byte allocated
    found = existing_store(path, config, overwrite)
    if found == "complete":
        log.info("%s is complete; skipping", path)
        return path
    if found is not None:
        _check_writable(path)
    _make_parent(path, root)
    with StoreLock(path):
        found = existing_store(path, config, overwrite)  # again, now that no one else writes
        if found == "complete":
            return path
        try:
            _capture_locked(config, root, path, found, device, progress)
        except Diverged as err:
            raise StoreError(f"{config.name}: {err}: {path} keeps its {committed_text(path)} and is "
                             "marked diverged; lower train.lr (or check the data), then capture "
                             "it again with --overwrite") from None
        except OSError as err:
            raise StoreError(f"cannot write {err.filename or path} "
                             f"({location.os_reason(err)}): {path} keeps its "
                             f"{committed_text(path)}; free space or make it writable, then run the "
                             "same command again to resume") from None
    return path


def committed_text(path: str) -> str:
    """Where a store stands, for a one-line message: '3 committed epochs (0 to 2)'.

    Parameters
    ----------
    path : str
        A run store (or where one would be).

    Returns
    -------
    str
        "committed epochs" where the store cannot be read.
    """
    try:
        epochs = slabs.committed_slots(path)[1] if location.is_store(path) else []
    except (OSError, StoreError, ValueError, KeyError):
        return "committed epochs"
    span = f" ({int(epochs[0])} to {int(epochs[-1])})" if len(epochs) > 1 else (
        f" ({int(epochs[0])})" if len(epochs) else "")
    return f"{len(epochs)} committed epoch{'s' * (len(epochs) != 1)}{span}"


def _check_writable(path: str) -> None:
    """A store that exists is resumed or replaced in place: refuse a read-only one now,
    in one line, rather than at its first write."""
    try:
        location.check_writable(path)
    except OSError as err:
        raise StoreError(f"{path} is not writable ({location.os_reason(err)}): it "
                         f"keeps its {committed_text(path)}; make it writable (or copy it to "
                         "a writable --root) and run the same command again") from None


def _make_parent(path: str, root: str) -> None:
    parent = location.parent(path)
    try:
        location.makedirs(parent)
    except OSError as err:
        raise StoreError(f"cannot create {parent} ({location.os_reason(err)}): "
                         f"--root {root} must be a writable folder")


def _capture_locked(config: RunConfig, root: str, path: str, found: str | None,
                    device: str | None, progress: bool) -> None:
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    # Every generator starts from the run's seed, so that a run is a function of its
    # config, and the stored state of each (`capture.resume`) lets a resume go on exactly.
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    random.seed(config.seed)
    data = load_dataset(config.data)
    probe = probe_set(data, config, dev, root)
    model = build_model(config.model, data.x_train.shape[1:], data.n_classes)
    if config.init.source:  # edit, then train on: start from a stored (edited) checkpoint
        load_weights(model, initial_state(config, root, probe.samples))
    model = model.to(dev)
    cc = config.capture
    attrs = {"pipeline": config.pipeline, "run_name": config.name, "params": dict(config.params),
             "config": config.to_dict(), "config_hash": config.hash(),
             **({"init": init_attrs(config, root)} if config.init.source else {})}
    # An unfinished store is resumed (`existing_store` said it holds this run); one that
    # is to be replaced is laid out beside it and moved there in one rename.
    rec = Recorder(path, model, probe, cc.points, config.schedule, reductions=cc.reductions,
                   dtype=cc.dtype, head=config.model.head, penultimate=config.model.penultimate,
                   attrs=attrs, metrics=schema.METRIC_NAMES,  # the built-in loop's, laid out up front
                   batch_size=cc.batch_size, device=dev, overwrite=found == "replace",
                   projection_seed=cc.projection_seed, compressor=cc.compressor,
                   queue_chunks=cc.queue_chunks, lock=False)  # capture_run holds the lock
    train_and_capture(config, model, probe, rec, progress)
