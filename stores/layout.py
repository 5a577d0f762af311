"""How a run store is laid out: an empty one created from a run's shapes, and an existing
one checked against a run before a capture writes into it.

`lay_out` preallocates every group and array the schema names (the epoch axis from the
schedule, plus one spare slot for the epoch at which a stop rule ends training), with
the codecs the schema chooses. `existing_store` says what a path holds for a run (and
refuses a store of another config), and `check_layout` refuses to resume into a store
whose arrays this code would not write the same way. `stores.writer.RunWriter` is the
public face of both.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import zarr

from . import cf, coordinates, location, schema
from .config import RunConfig, run_config_from_dict
from .errors import StoreError
from .groups import open_group
from .metadata import activation_chunks, weight_chunks
from .slabs import sample_table


@dataclass(frozen=True)
class LayerSpec:
    """One capture point of a store.

    Attributes
    ----------
    name : str
        The capture point (a module path, `input` or `logits`).
    units : int
        Its stored width, after the reduction.
    original_shape : tuple of int
        Its output's shape per sample, before the reduction.
    reduction : str, default "flatten"
        How it was reduced (`flatten`, `avgpool`, `pool:K`, `project:D`).
    penultimate : bool, default False
        Whether it feeds the final linear layer.
    projection_seed : int or None, default None
        The seed of a `project:D` reduction's random projection.
    """

    name: str
    units: int
    original_shape: tuple[int, ...]
    reduction: str = "flatten"
    penultimate: bool = False
    projection_seed: int | None = None  # `project:D` only


# ------------------------------------------------------------------ an existing store
def existing_store(path: str, config: RunConfig, overwrite: bool = False) -> str | None:
    """What `path` holds, before a capture of `config` writes there.

    Parameters
    ----------
    path : str
        Where the run's store goes.
    config : RunConfig
        The run.
    overwrite : bool, default False
        Whether an existing store is to be replaced.

    Returns
    -------
    str or None
        None if `path` holds no store; "complete" or "unfinished" if it holds this
        run; "replace" if it holds a store and `overwrite` says to replace it.

    Raises
    ------
    StoreError
        Touching nothing, when `path` is not a run store, holds this run diverged, or
        holds a run of another config (a store is only ever written with the config it
        was created with).
    """
    if location.is_file(path):
        raise StoreError(f"{path} is a file, not a run store: move it away or choose another --root")
    if not location.is_store(path):
        if location.is_dir(path) and location.listdir(path):
            raise StoreError(f"{path} exists but is not a run store (no zarr.json): "
                             "move it away or choose another --root")
        return None
    if overwrite:
        return "replace"
    attrs = dict(open_group(path).attrs)
    if attrs.get("status") == schema.STATUS_DIVERGED and attrs.get("config_hash") == config.hash():
        at = attrs.get("diverged", {})
        raise StoreError(f"{path}: this run diverged at epoch {at.get('epoch', '?')} (train loss "
                         f"{at.get('train_loss', '?')}) and would again: its committed epochs stay "
                         "readable; lower train.lr (or check the data) and pass --overwrite")
    if attrs.get("config_hash") != config.hash():
        as_json = lambda d: json.loads(json.dumps(_flatten(d)))  # noqa: E731  (tuples -> lists)
        stored = as_json(run_config_from_dict(attrs.get("config", {"pipeline": "?"})).identity())
        wanted = as_json(config.identity())
        differ = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        raise StoreError(
            f"{path} holds a run with a different config (differs in: {', '.join(differ) or '?'});"
            " pass --overwrite to replace it"
        )
    return "complete" if attrs.get("status") == schema.STATUS_COMPLETE else "unfinished"


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_layout(root: zarr.Group, path: str, layers: list[LayerSpec],
                 params: Mapping[str, tuple[int, ...]], samples: Mapping[str, np.ndarray]) -> None:
    """Refuse to resume into a store whose arrays this code would not write the same way.

    Parameters
    ----------
    root : zarr.Group
        The store's root group.
    path : str
        The store.
    layers, params, samples
        The run's capture points, parameter shapes and probe set (as `lay_out`'s).

    Raises
    ------
    StoreError
        Naming what differs: capture points, parameters or samples.
    """
    have_layers = {name: root[f"{schema.ACTIVATIONS}/{name}/{schema.VALUES}"].shape[2]
                   for name in root[schema.ACTIVATIONS].attrs.get("order", [])}
    have_params = {name: tuple(node.attrs.get("shape", ())) for name, node in root[schema.WEIGHTS].groups()}
    table = sample_table(path)
    problems = []
    if have_layers != {layer.name: layer.units for layer in layers}:
        problems.append("capture points")
    if have_params != {name: tuple(shape) for name, shape in params.items()}:
        problems.append("parameters")
    if any(not np.array_equal(table[k], np.asarray(samples[k]).astype(table[k].dtype))
           for k in schema.SAMPLE_FIELDS):
        problems.append("samples")
    if problems:
        raise StoreError(f"{path}: the unfinished store differs from this run in its "
                         f"{', '.join(problems)} (written by another version of latentgen?): "
                         "pass --overwrite to start it again")


# ------------------------------------------------------------------ a new store
def lay_out(path: str, *, attrs: Mapping, schedule: list[int], samples: Mapping[str, np.ndarray],
            layers: list[LayerSpec], params: Mapping[str, tuple[int, ...]],
            activation_dtype: str = "float16", compressor: str | None = None,
            overwrite: bool = False, samples_attrs: Mapping | None = None,
            metrics: Iterable[str] = ()) -> zarr.Group:
    """An empty store at `path`, every array preallocated; its root group, open for
    writing. Parameters as `stores.writer.RunWriter.create`'s."""
    metrics = list(dict.fromkeys(schema.check_metric_name(name) for name in metrics))
    if activation_dtype not in schema.ACTIVATION_DTYPES:
        raise StoreError(f"dtype: expected one of {', '.join(schema.ACTIVATION_DTYPES)}, "
                         f"got {activation_dtype!r}")
    codecs = schema.compressors(compressor)
    coordinates.check_names([l.name for l in layers], params, metrics)
    try:
        root = zarr.open_group(path, mode="w" if overwrite else "w-", zarr_format=3)
    except (FileExistsError, zarr.errors.ContainsGroupError, zarr.errors.ContainsArrayError):
        raise StoreError(f"store {path} already exists (use --overwrite to replace it)")
    n_slots = len(schedule) + 1
    root.attrs.update({
        **attrs,
        "schema_version": schema.SCHEMA_VERSION,
        "schedule": list(map(int, schedule)),
        "status": schema.STATUS_RUNNING,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    })
    _create_samples(root, samples, samples_attrs or {})
    _create_epochs(root, schedule, n_slots, codecs)
    n_samples = len(samples["split"])
    # Groups list in no particular order; record the forward order of capture points.
    root.create_group(schema.ACTIVATIONS, attributes={"order": [l.name for l in layers]})
    for layer in layers:
        _create_layer(root, layer, n_slots, n_samples, activation_dtype, codecs)
    root.require_group(schema.WEIGHTS)  # also for a model without parameters
    for name, shape in params.items():
        _create_param(root, name, tuple(shape), n_slots, codecs)
    group = root.create_group(schema.METRICS)
    for name in metrics:  # the declared ones; another is laid out at its first write
        create_metric(group, name, n_slots, codecs)
    coordinates.lay_out(root, samples, [l.name for l in layers], n_slots, codecs)
    return root


def create_metric(group: zarr.Group, name: str, n_slots: int, codecs) -> zarr.Array:
    """Lay out one metric: (epoch,) float64, one chunk per slot, NaN where unwritten.

    Parameters
    ----------
    group : zarr.Group
        The store's `metrics` group.
    name : str
        The metric (`schema.METRIC_NAME`).
    n_slots : int
        The store's epoch slots.
    codecs : sequence
        The captured arrays' bytes-to-bytes codecs (`schema.compressors`).

    Returns
    -------
    zarr.Array
    """
    return group.create_array(
        name, shape=(n_slots,), chunks=(1,), dtype="float64", fill_value=np.nan,
        dimension_names=["epoch"], compressors=list(codecs),
        attributes=cf.array_attrs(f"{schema.METRICS}/{name}"),
    )


def _create_samples(root: zarr.Group, samples: Mapping[str, np.ndarray], attrs: Mapping) -> None:
    missing = set(schema.SAMPLE_FIELDS) - set(samples)
    if missing:
        raise StoreError(f"samples: missing fields {sorted(missing)}")
    group = root.create_group(schema.SAMPLES, attributes=dict(attrs))
    n = len(samples["split"])
    for name, kind in schema.SAMPLE_FIELDS.items():
        values = np.asarray(samples[name])
        if values.shape != (n,):
            raise StoreError(f"samples/{name}: expected shape ({n},), got {values.shape}")
        dtype = str if kind == "str" else kind
        array = group.create_array(
            name, shape=(n,), chunks=(n,), dtype=dtype, dimension_names=["sample"],
            compressors=schema.compressors(schema.COMPRESSED),
            attributes=cf.array_attrs(f"{schema.SAMPLES}/{name}"),
        )
        array = array.with_config({"write_empty_chunks": True})  # all-False `corrupted` too
        array[:] = values.astype(str) if kind == "str" else values.astype(kind)


def _create_epochs(root: zarr.Group, schedule: list[int], n_slots: int, codecs: list) -> None:
    group = root.create_group(schema.EPOCHS)
    epoch = group.create_array(
        "epoch", shape=(n_slots,), chunks=(1,), dtype="int64", fill_value=-1,
        dimension_names=["epoch"], compressors=codecs,
        attributes=cf.array_attrs(f"{schema.EPOCHS}/epoch"),
    )
    epoch[: len(schedule)] = np.asarray(schedule, dtype="int64")
    group.create_array(
        "committed", shape=(n_slots,), chunks=(1,), dtype="bool", fill_value=False,
        dimension_names=["epoch"], compressors=codecs,
        attributes=cf.array_attrs(f"{schema.EPOCHS}/committed"),
    )


def _create_layer(root: zarr.Group, layer: LayerSpec, n_slots: int, n_samples: int, dtype: str,
                  codecs: list) -> None:
    group = root.require_group(schema.ACTIVATIONS).create_group(layer.name, attributes={
        "reduction": layer.reduction,
        "original_shape": list(layer.original_shape),
        "penultimate": bool(layer.penultimate),
        **({"projection_seed": layer.projection_seed} if layer.projection_seed is not None else {}),
    })
    name = f"{schema.ACTIVATIONS}/{layer.name}/{schema.VALUES}"
    # The sample coordinates beside it (`stores.coordinates`) are named by `coordinates`.
    attrs = {**cf.array_attrs(name), "coordinates": " ".join(schema.SAMPLE_COORDS)}
    # One shard (one file) per slot, of inner chunks of a block of samples (`metadata`).
    shards, chunks = activation_chunks(n_samples, layer.units, dtype)
    # (Their directories are made as the first file of each is written: by the writer,
    # beside training, rather than all of them here, before it.)
    group.create_array(
        schema.VALUES, shape=(n_slots, n_samples, layer.units), shards=shards,
        chunks=chunks, dtype=dtype, fill_value=np.nan,
        dimension_names=["epoch", "sample", "unit"], compressors=codecs, attributes=attrs,
    )


def _create_param(root: zarr.Group, name: str, shape: tuple[int, ...], n_slots: int,
                  codecs: list) -> None:
    group = root.require_group(schema.WEIGHTS).create_group(name, attributes={"shape": list(shape)})
    shards, chunks = weight_chunks(shape)  # one shard per slot, cut along the first axis
    group.create_array(
        schema.VALUES, shape=(n_slots, *shape), shards=shards, chunks=chunks,
        dtype=schema.WEIGHT_DTYPE, fill_value=np.nan,
        dimension_names=["epoch", *schema.weight_dims(len(shape))], compressors=codecs,
        attributes=cf.array_attrs(f"{schema.WEIGHTS}/{name}/{schema.VALUES}"),
    )
