"""Create a run store and write epochs into it under the commit protocol.

An epoch's activations, weights and metrics are written first; `epochs/committed[slot]`
is written last, so a reader (or a crash) never sees half an epoch. The writer is
synchronous: `capture` drives it from one background thread, in order.
"""

from __future__ import annotations

import datetime as _dt
import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from . import schema
from .chunkio import make_chunk_dirs, write_chunk


class StoreError(Exception):
    """A store cannot be created, opened or written as asked (the message says why)."""


@dataclass(frozen=True)
class LayerSpec:
    """One capture point: its name, its width after reduction, and how it was reduced."""

    name: str
    units: int
    original_shape: tuple[int, ...]
    reduction: str = "flatten"
    penultimate: bool = False
    projection_seed: int | None = None  # `project:D` only


def _codecs(compressor: str | None) -> list:
    """Bytes-to-bytes codecs: optional compression, then always a crc32c checksum."""
    if compressor in (None, "none"):
        return [Crc32cCodec()]
    if compressor == "zstd":
        return [ZstdCodec(level=1), Crc32cCodec()]
    raise StoreError(f"compressor: expected one of none, zstd, got {compressor!r}")


def consolidate(path: str) -> None:
    """Consolidate metadata so that one read opens the whole tree (zarr warns it is
    not yet in the v3 spec; readers fall back to plain metadata when absent)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(path)


class RunWriter:
    """Writes one run's store. Use `RunWriter.create` for a new store."""

    def __init__(self, group: zarr.Group, path: str):
        self.group = group
        self.path = path
        self._arrays: dict[str, zarr.Array] = {}

    # ---------------------------------------------------------------- creation
    @classmethod
    def open(cls, path: str) -> "RunWriter":
        """An existing store, to go on writing it (a resumed capture)."""
        try:
            # Without consolidated metadata: the next attribute write drops it, as a store
            # that is being written again is read without it (it returns in `finish`).
            root = zarr.open_group(path, mode="r+", zarr_format=3, use_consolidated=False)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            raise StoreError(f"no run store at {path}")
        version = root.attrs.get("schema_version")
        if version != schema.SCHEMA_VERSION:
            raise StoreError(schema.version_message(path, version))
        return cls(root, path)

    @classmethod
    def create(
        cls,
        path: str,
        *,
        attrs: Mapping,
        schedule: list[int],
        samples: Mapping[str, np.ndarray],
        layers: list[LayerSpec],
        params: Mapping[str, tuple[int, ...]],
        activation_dtype: str = "float16",
        compressor: str | None = None,
        overwrite: bool = False,
        samples_attrs: Mapping | None = None,
    ) -> "RunWriter":
        """Lay out an empty store: the epoch axis is preallocated from the schedule
        plus one spare slot for the epoch at which a stop rule ends training."""
        if activation_dtype not in schema.ACTIVATION_DTYPES:
            raise StoreError(
                f"dtype: expected one of {', '.join(schema.ACTIVATION_DTYPES)}, "
                f"got {activation_dtype!r}"
            )
        codecs = _codecs(compressor)
        mode = "w" if overwrite else "w-"
        try:
            root = zarr.open_group(path, mode=mode, zarr_format=3)
        except (FileExistsError, zarr.errors.ContainsGroupError, zarr.errors.ContainsArrayError):
            raise StoreError(f"store {path} already exists (use --overwrite to replace it)")
        n_slots = len(schedule) + 1
        root.attrs.update(
            {
                **attrs,
                "schema_version": schema.SCHEMA_VERSION,
                "schedule": list(map(int, schedule)),
                "status": schema.STATUS_RUNNING,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            }
        )
        writer = cls(root, path)
        writer._create_samples(samples, samples_attrs or {})
        writer._create_epochs(schedule, n_slots, codecs)
        n_samples = len(samples["split"])
        # Groups list in no particular order; record the forward order of capture points.
        root.create_group(schema.ACTIVATIONS, attributes={"order": [l.name for l in layers]})
        for layer in layers:
            writer._create_layer(layer, n_slots, n_samples, activation_dtype, codecs)
        for name, shape in params.items():
            writer._create_param(name, tuple(shape), n_slots, codecs)
        metrics = root.create_group(schema.METRICS)
        for name in schema.METRIC_NAMES:
            metrics.create_array(
                name, shape=(n_slots,), chunks=(1,), dtype="float64", fill_value=np.nan,
                dimension_names=["epoch"], compressors=codecs,
            )
        return writer

    def _create_samples(self, samples: Mapping[str, np.ndarray], attrs: Mapping) -> None:
        missing = set(schema.SAMPLE_FIELDS) - set(samples)
        if missing:
            raise StoreError(f"samples: missing fields {sorted(missing)}")
        group = self.group.create_group(schema.SAMPLES, attributes=dict(attrs))
        n = len(samples["split"])
        for name, kind in schema.SAMPLE_FIELDS.items():
            values = np.asarray(samples[name])
            if values.shape != (n,):
                raise StoreError(f"samples/{name}: expected shape ({n},), got {values.shape}")
            dtype = str if kind == "str" else kind
            array = group.create_array(
                name, shape=(n,), chunks=(n,), dtype=dtype, dimension_names=["sample"],
                compressors=[ZstdCodec(level=1), Crc32cCodec()],
            )
            array = array.with_config({"write_empty_chunks": True})  # all-False `corrupted` too
            array[:] = values.astype(str) if kind == "str" else values.astype(kind)

    def _create_epochs(self, schedule: list[int], n_slots: int, codecs: list) -> None:
        group = self.group.create_group(schema.EPOCHS)
        epoch = group.create_array(
            "epoch", shape=(n_slots,), chunks=(1,), dtype="int64", fill_value=-1,
            dimension_names=["epoch"], compressors=codecs,
        )
        epoch[: len(schedule)] = np.asarray(schedule, dtype="int64")
        group.create_array(
            "committed", shape=(n_slots,), chunks=(1,), dtype="bool", fill_value=False,
            dimension_names=["epoch"], compressors=codecs,
        )

    def _create_layer(self, layer: LayerSpec, n_slots: int, n_samples: int, dtype: str,
                      codecs: list) -> None:
        group = self.group.require_group(schema.ACTIVATIONS).create_group(layer.name)
        group.attrs.update(
            {
                "reduction": layer.reduction,
                "original_shape": list(layer.original_shape),
                "penultimate": bool(layer.penultimate),
                **({"projection_seed": layer.projection_seed} if layer.projection_seed is not None else {}),
            }
        )
        block = schema.sample_block(n_samples, layer.units, np.dtype(dtype).itemsize)
        make_chunk_dirs(group.create_array(
            schema.VALUES, shape=(n_slots, n_samples, layer.units),
            chunks=(1, block, layer.units), dtype=dtype, fill_value=np.nan,
            dimension_names=["epoch", "sample", "unit"], compressors=codecs,
        ))

    def _create_param(self, name: str, shape: tuple[int, ...], n_slots: int,
                      codecs: list) -> None:
        group = self.group.require_group(schema.WEIGHTS).create_group(name)
        group.attrs.update({"shape": list(shape)})
        make_chunk_dirs(group.create_array(
            schema.VALUES, shape=(n_slots, *shape), chunks=(1, *shape),
            dtype=schema.WEIGHT_DTYPE, fill_value=np.nan,
            dimension_names=["epoch", *schema.weight_dims(len(shape))], compressors=codecs,
        ))

    # ----------------------------------------------------------------- writing
    def _array(self, path: str) -> zarr.Array:
        if path not in self._arrays:
            # Every written chunk is stored, even one that equals the fill value (a NaN
            # loss): `stores validate` can then tell a committed chunk that is missing.
            self._arrays[path] = self.group[path].with_config({"write_empty_chunks": True})
        return self._arrays[path]

    def sample_block(self, layer: str) -> int:
        """Samples per chunk of a layer; capture hands over whole chunks."""
        return self._array(f"{schema.ACTIVATIONS}/{layer}/{schema.VALUES}").chunks[1]

    def write_activations(self, slot: int, layer: str, start: int, values: np.ndarray) -> None:
        array = self._array(f"{schema.ACTIVATIONS}/{layer}/{schema.VALUES}")
        block = array.chunks[1]
        # A whole chunk (as capture hands over) goes straight to its file (chunkio).
        if start % block or not write_chunk(array, (slot, start // block, 0), values[None]):
            array[slot, start : start + len(values)] = values

    def _put(self, path: str, slot: int, value) -> None:
        """array[slot] = value, for arrays chunked one slot at a time: the chunk goes
        straight to its file (chunkio), or through zarr for compressed stores."""
        array = self._array(path)
        value = np.asarray(value, dtype=array.dtype)
        if not write_chunk(array, (slot,) + (0,) * value.ndim, value[None]):
            array[slot] = value

    def write_weights(self, slot: int, state: Mapping[str, np.ndarray]) -> None:
        for name, values in state.items():
            self._put(f"{schema.WEIGHTS}/{name}/{schema.VALUES}", slot, values)

    def write_metrics(self, slot: int, metrics: Mapping[str, float]) -> None:
        unknown = set(metrics) - set(schema.METRIC_NAMES)
        if unknown:
            raise StoreError(f"metrics: unknown names {sorted(unknown)}")
        for name, value in metrics.items():
            self._put(f"{schema.METRICS}/{name}", slot, value)

    def write_state(self, state) -> None:
        """The training state a resume needs (a `stores.state.TrainingState`), written
        before the commit of its slot."""
        from .state import write_state

        write_state(self.group, state)

    def commit(self, slot: int, epoch: int) -> None:
        """The last write of an epoch: its number, then its committed flag."""
        self._put(f"{schema.EPOCHS}/epoch", slot, epoch)
        self._put(f"{schema.EPOCHS}/committed", slot, True)

    def finish(self, status: str = schema.STATUS_COMPLETE) -> None:
        self.group.attrs["status"] = status
        consolidate(self.path)
