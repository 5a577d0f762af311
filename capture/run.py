"""Train one run and capture its scheduled epochs into a run store.

An unfinished store of the same run is resumed (`capture.resume`), a store of another
config is refused, and one capture at a time writes a store (`stores.lock`)."""

from __future__ import annotations

import datetime as _dt
import logging
import platform
import random
from dataclasses import dataclass
from importlib import metadata

import numpy as np
import torch

import stores
from stores import LayerSpec, RunConfig, RunWriter, StoreError, location, slabs
from stores.layout import existing_store
from stores.lock import StoreLock

from .corruption import for_run as corruption_for_run
from .data import load_dataset
from .dataset import Dataset
from .estimate import check_size
from .loop import Diverged, train_and_capture
from .models import build_model, load_weights
from .points import capture_layers, resolve_points
from .resume import Resume, fresh, remove_partial_files, resume_point
from .warmstart import init_attrs, initial_state, relabelled

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeSet:
    """A run's probe set: train rows then test rows, as device tensors, and its record.

    The test rows of a relabel-and-retrain run are split "val" (the holdout) and "test".

    Attributes
    ----------
    x : torch.Tensor
        Inputs (n, *sample_shape).
    observed, true : torch.Tensor
        The labels training sees, and the true ones (n,).
    is_train, is_test, is_val : torch.Tensor
        bool (n,): each row's split.
    record : dict of str to numpy.ndarray
        The store's sample table: split, index, label_true, label_observed, corrupted.
    """

    x: torch.Tensor
    observed: torch.Tensor
    true: torch.Tensor
    is_train: torch.Tensor
    record: dict[str, np.ndarray]
    is_test: torch.Tensor
    is_val: torch.Tensor


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
    ProbeSet
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
    as_tensor = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
    return ProbeSet(
        x=as_tensor(np.concatenate([data.x_train, data.x_test])),
        observed=as_tensor(record["label_observed"]),
        true=as_tensor(record["label_true"]),
        is_train=as_tensor(record["split"] == "train"),
        record=record,
        is_test=as_tensor(record["split"] == "test"),
        is_val=as_tensor(record["split"] == "val"),
    )


def _versions() -> dict[str, str]:
    names = ("latentgen", "torch", "numpy", "zarr", "xarray")
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    out["python"] = platform.python_version()
    return out


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
        load_weights(model, initial_state(config, root, probe.record))
    model = model.to(dev)
    points = resolve_points(model, config.capture.points)
    layers, reducers = capture_layers(model, points, data.x_train.shape[1:], config, dev)
    units = {layer.name: layer.units for layer in layers}
    params = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if found == "unfinished":
        store, resume = _reopen(path, layers, params, probe.record, dev)
    else:
        store = _create(path, config, root, dev, model.head_name, probe, layers, params,
                        replace=found == "replace")
        resume = fresh(len(config.schedule) + 1)
    train_and_capture(config, model, probe, store, points, units, reducers, config.schedule,
                      progress, resume)


def _create(path: str, config: RunConfig, root: str, dev: torch.device, head: str,
            probe: ProbeSet, layers: list[LayerSpec], params: dict, replace: bool) -> RunWriter:
    """A new store for the run, laid out beside its final place and moved there in one
    rename (`RunWriter.create_atomic`)."""
    return RunWriter.create_atomic(
        path,
        replace=replace,
        attrs={
            "pipeline": config.pipeline, "run_name": config.name, "params": dict(config.params),
            "config": config.to_dict(), "config_hash": config.hash(),
            "versions": _versions(), "device": str(dev), "head": head,
            **({"init": init_attrs(config, root)} if config.init.source else {}),
        },
        schedule=config.schedule,
        samples=probe.record,
        layers=layers,
        params=params,
        activation_dtype=config.capture.dtype,
        compressor=config.capture.compressor,
        metrics=stores.schema.METRIC_NAMES,  # the built-in loop's, laid out up front
        samples_attrs={"corruption_mode": config.corruption.mode,
                       "corruption_rate": config.corruption.rate,
                       "corruption_seed": config.seed if config.corruption.seed is None
                       else config.corruption.seed},
    )


def _reopen(path: str, layers: list[LayerSpec], params: dict, samples: dict,
            dev: torch.device) -> tuple[RunWriter, Resume]:
    """An unfinished store of this run, checked and tidied, with where to go on."""
    store = RunWriter.reopen(path, layers, params, samples)
    remove_partial_files(path)
    resume = resume_point(path)
    attrs = store.attrs
    if attrs.get("device") != str(dev):
        log.warning("%s was started on %s and resumes on %s: the result may differ from an "
                    "uninterrupted run in the last bits", path, attrs.get("device"), dev)
    event = {"after_epoch": None if resume.state is None else resume.state.epoch,
             "committed": resume.n_committed,
             "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    store.update_attrs({"status": stores.schema.STATUS_RUNNING,
                        "resumes": [*attrs.get("resumes", []), event]})
    return store, resume
