"""Train one run and capture its scheduled epochs into a run store."""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import stores
from stores import LayerSpec, RunConfig, RunWriter, StoreError
from stores.config import run_config_from_dict

from . import train
from .background import BackgroundWriter
from .corruption import corrupt
from .data import Dataset, load_dataset
from .epoch import EpochCapture, state_arrays
from .convnets import output_shapes
from .init import initial_state, source_path
from .models import build_model, load_weights, resolve_points
from .reduce import Reducer, parse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeSet:
    """Train rows then test rows, as device tensors plus the per-sample record."""

    x: torch.Tensor
    observed: torch.Tensor
    true: torch.Tensor
    is_train: torch.Tensor
    record: dict[str, np.ndarray]


def probe_set(data: Dataset, config: RunConfig, device: torch.device) -> ProbeSet:
    observed, mask = corrupt(data.y_train, config.corruption.mode, config.corruption.rate,
                             data.n_classes, seed=config.seed)
    n_train, n_test = len(data.y_train), len(data.y_test)
    record = {
        "split": np.array(["train"] * n_train + ["test"] * n_test),
        "index": np.concatenate([data.index_train, data.index_test]),
        "label_true": np.concatenate([data.y_train, data.y_test]),
        "label_observed": np.concatenate([observed, data.y_test]),
        "corrupted": np.concatenate([mask, np.zeros(n_test, dtype=bool)]),
    }
    as_tensor = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
    return ProbeSet(
        x=as_tensor(np.concatenate([data.x_train, data.x_test])),
        observed=as_tensor(record["label_observed"]),
        true=as_tensor(record["label_true"]),
        is_train=as_tensor(record["split"] == "train"),
        record=record,
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


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def existing_store(path: str, config: RunConfig) -> str | None:
    """None if `path` holds no store; "complete" if it holds this run finished.

    Raises StoreError, touching nothing, when it holds another config or an unfinished
    capture of this one.
    """
    if not (Path(path) / "zarr.json").exists():
        return None
    attrs = stores.run_attrs(path)
    if attrs.get("config_hash") != config.hash():
        as_json = lambda d: json.loads(json.dumps(_flatten(d)))  # noqa: E731  (tuples -> lists)
        stored = as_json(run_config_from_dict(attrs.get("config", {"pipeline": "?"})).identity())
        wanted = as_json(config.identity())
        differ = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        raise StoreError(
            f"{path} holds a run with a different config (differs in: {', '.join(differ) or '?'});"
            " pass --overwrite to replace it"
        )
    if attrs.get("status") == stores.schema.STATUS_COMPLETE:
        return "complete"
    n = len(stores.committed_slots(path)[0])
    raise StoreError(
        f"{path} holds an unfinished capture of this run ({n} epochs committed); "
        "resuming is not supported yet: pass --overwrite to start it again"
    )


def capture_run(config: RunConfig, root: str, *, overwrite: bool = False,
                device: str | None = None, progress: bool = True) -> str:
    """Train `config` and capture it into `<root>/<pipeline>/<run>.zarr`; return the path."""
    path = config.store_path(root)
    if not overwrite and existing_store(path, config) == "complete":
        log.info("%s is complete; skipping", path)
        return path
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(config.seed)
    data = load_dataset(config.data)
    probe = probe_set(data, config, dev)
    model = build_model(config.model, data.x_train.shape[1:], data.n_classes)
    if config.init.source:  # edit, then train on: start from a stored (edited) checkpoint
        load_weights(model, initial_state(config, root, probe.record))
    model = model.to(dev)
    points = resolve_points(model, config.capture.points)
    layers, reducers = capture_layers(model, points, data.x_train.shape[1:], config, dev)
    units = {layer.name: layer.units for layer in layers}
    schedule = config.schedule
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    store = RunWriter.create(
        path,
        attrs={
            "pipeline": config.pipeline, "run_name": config.name, "params": dict(config.params),
            "config": config.to_dict(), "config_hash": config.hash(),
            "versions": _versions(), "device": str(dev), "head": model.head_name,
            **({"init": {"source": source_path(config, root), "epoch": config.init.epoch,
                         "edit": config.init.edit}} if config.init.source else {}),
        },
        schedule=schedule,
        samples=probe.record,
        layers=layers,
        params={name: tuple(t.shape) for name, t in model.state_dict().items()},
        activation_dtype=config.capture.dtype,
        compressor=config.capture.compressor,
        overwrite=overwrite,
        samples_attrs={"corruption_mode": config.corruption.mode,
                       "corruption_rate": config.corruption.rate, "corruption_seed": config.seed},
    )
    _train_and_capture(config, model, probe, store, points, units, reducers, schedule, progress)
    return path


def capture_layers(model: torch.nn.Module, points: list[str], in_shape: tuple[int, ...],
                   config: RunConfig, device: torch.device) -> tuple[list[LayerSpec], dict]:
    """Each capture point's reduction, original shape and stored width."""
    shapes = output_shapes(model, tuple(in_shape))
    layers, reducers = [], {}
    for point in points:
        spec = config.capture.reductions.get(point, "flatten")
        if point == model.penultimate and spec != "flatten":
            raise ValueError(f"capture.reductions.{point}: the penultimate point feeds the "
                             f"last layer and must stay flatten, got {spec!r}")
        reduction = parse(spec, point, config.capture.projection_seed)
        reducers[point] = Reducer(reduction, shapes[point], device)
        units = reducers[point](torch.zeros(1, *shapes[point], device=device)).shape[1]
        layers.append(LayerSpec(point, int(units), shapes[point], reduction.spec,
                                point == model.penultimate, reduction.seed))
    return layers, reducers


def _train_and_capture(config: RunConfig, model, probe: ProbeSet, store: RunWriter,
                       points, units, reducers, schedule, progress: bool) -> None:
    tc = config.train
    loss = train.loss_fn(tc.loss, getattr(model, model.head_name).out_features)
    optimizer = train.make_optimizer(model.parameters(), tc)
    generator = torch.Generator().manual_seed(config.seed)
    x_train, y_train = probe.x[probe.is_train], probe.observed[probe.is_train]
    writer = BackgroundWriter(config.capture.queue_chunks)
    capture = EpochCapture(model, points, store, writer, probe.x, units=units,
                           dtype=config.capture.dtype, batch_size=config.capture.batch_size,
                           reducers=reducers)
    scheduled = set(schedule)
    slot = 0

    def capture_at(epoch: int) -> dict:
        nonlocal slot
        logits = capture(slot)
        m = train.metrics(logits, loss, probe.is_train, probe.observed, probe.true)
        writer.submit(store.write_weights, slot, state_arrays(model))
        writer.submit(store.write_metrics, slot, m)
        writer.submit(store.commit, slot, epoch)  # last: the epoch becomes visible
        slot += 1
        return m

    try:
        bar = tqdm(range(1, tc.max_epochs + 1), desc=config.name, disable=not progress,
                   unit="epoch", leave=False)
        m = capture_at(0) if 0 in scheduled else {}
        for epoch in bar:
            train.train_epoch(model, optimizer, loss, x_train, y_train, tc.batch_size, generator)
            if epoch in scheduled:
                m = capture_at(epoch)
                acc = m["train_acc_observed"]
            else:
                acc = float((train.predict(model, x_train).argmax(1) == y_train).float().mean())
            stop = tc.stop_train_acc is not None and acc >= tc.stop_train_acc
            if (stop or epoch == tc.max_epochs) and epoch not in scheduled:
                m = capture_at(epoch)  # the epoch that ends training is always captured
            bar.set_postfix(train=f"{acc:.3f}", test=f"{m.get('test_acc', float('nan')):.3f}")
            if stop:
                log.info("%s: train accuracy %.4f reached the stop threshold at epoch %d",
                         config.name, acc, epoch)
                break
        bar.close()
    finally:
        writer.close()
    store.finish()
