"""Create a run store and write epochs into it under the commit protocol.

An epoch's activations, weights and metrics are written first; `epochs/committed[slot]`
is written last, so a reader (or a crash) never sees half an epoch. The writer is
synchronous: `capture` drives it from one background thread, in order.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import errno
import os
import posixpath
import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import zarr

from . import location, schema
from .chunkio import make_chunk_dirs, write_chunk
from .errors import StoreError


@dataclass(frozen=True)
class LayerSpec:
    """One capture point: its name, its width after reduction, and how it was reduced."""

    name: str
    units: int
    original_shape: tuple[int, ...]
    reduction: str = "flatten"
    penultimate: bool = False
    projection_seed: int | None = None  # `project:D` only


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
        self._absent: set[str] = set()

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
        codecs = schema.compressors(compressor)
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
                compressors=schema.compressors(schema.COMPRESSED),
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
            node = f"{schema.METRICS}/{name}"
            if name in schema.OPTIONAL_METRICS and not self._has(node):
                continue  # a store laid out before this metric existed (resumed)
            self._put(node, slot, value)

    def _has(self, path: str) -> bool:
        if path not in self._arrays and path not in self._absent:
            if path in self.group:
                self._array(path)
            else:
                self._absent.add(path)
        return path in self._arrays

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


# ------------------------------------------------------------------ analysis results
# `python -m analyze` writes each `analysis/<name>` group aside, as a Zarr group of its
# own beside the store (`RUN.zarr.analysis-<name>.creating`: outside the store, so that
# neither a reader nor a consolidation of the store ever lists it), then swaps it into
# place. A reader sees the old group or the new one, never a part of either:
# * on a local file system the swap is one `renameat2(RENAME_EXCHANGE)` (Linux), and the
#   old group, now aside, is removed; where the kernel or file system cannot exchange,
#   the old group is renamed aside (`.replaced`) and the new one renamed in: for an
#   instant the group is absent (never partial), and a kill there leaves the old group
#   aside, which `recover_analysis` puts back;
# * on an object store (s3://, memory://) nothing renames a tree in one step: the old
#   group's `zarr.json` goes first (the group is absent), then its arrays, then the new
#   arrays, then the new group's `zarr.json` last. A kill in between leaves no group or
#   one whose arrays are incomplete, which `stores.runs.stored_analysis` reads as absent
#   (so analysis recomputes it).
# The store's consolidated metadata (present once a capture finished) would describe the
# old group: it is dropped before the first swap and written again after the last.
STAGING, REPLACED = "creating", "replaced"


def analysis_aside(path: str, name: str, what: str = STAGING) -> str:
    """Where the group `analysis/<name>` of the store at `path` is written aside."""
    return f"{str(path).rstrip('/')}.{schema.ANALYSIS}-{name}.{what}"


def write_analysis(path: str, datasets: Mapping) -> None:
    """Replace `analysis/<name>` groups of one store (`{name: xarray.Dataset}`) one by
    one, each atomically as above; nothing else in the store is touched. The caller holds
    the store's analysis lock (`stores.lock`). A store that is still being written is not
    consolidated here (its capture does that when it finishes)."""
    from .reader import run_attrs  # (reader imports this module)

    if not datasets:
        return
    name = next(iter(datasets))
    try:
        for name, ds in datasets.items():
            staging = analysis_aside(path, name)
            location.remove(staging)
            # Every chunk checksummed, as the captured data are (`python -m stores validate`).
            encoding = {v: {"compressors": schema.compressors(schema.COMPRESSED)} for v in ds.variables}
            ds.to_zarr(staging, mode="w-", zarr_format=3, consolidated=False, encoding=encoding)
        _drop_consolidated(path)
        root = zarr.open_group(path, mode="r+", zarr_format=3, use_consolidated=False)
        if schema.ANALYSIS not in root:
            root.create_group(schema.ANALYSIS)
        for name in datasets:
            _swap_in(analysis_aside(path, name), f"{str(path).rstrip('/')}/{schema.ANALYSIS}/{name}",
                     analysis_aside(path, name, REPLACED))
        # Read after the swaps: a capture that finishes meanwhile consolidates after them,
        # or has finished before this reads its status.
        if run_attrs(path).get("status") == schema.STATUS_COMPLETE:
            consolidate(path)
    except OSError as err:  # a full disk, a read-only folder: one line, nothing committed touched
        for aside in datasets:
            location.remove(analysis_aside(path, aside))
        raise StoreError(f"{path}: cannot write analysis/{name} "
                         f"({location.os_reason(err)}); the captured data and the "
                         "earlier analysis results are intact: free space or make the folder "
                         "writable, then run the analysis again") from err


def recover_analysis(path: str) -> list[str]:
    """Tidy what a killed analysis left beside the store: a group written aside but not
    swapped in is removed (it is recomputed); an old group moved aside whose replacement
    never arrived is put back. Returns what it did, one phrase each."""
    done = []
    parent, base = location.parent(path), location.name(path)
    prefix = f"{base}.{schema.ANALYSIS}-"
    try:
        entries = [location.name(e) for e in location.listdir(parent)]
    except FileNotFoundError:
        return done
    for entry in sorted(e for e in entries if e.startswith(prefix)):
        name, _, what = entry[len(prefix):].rpartition(".")
        aside = location.join(parent, entry)
        target = location.join(path, schema.ANALYSIS, name)
        if what == REPLACED and not location.is_store(target):
            location.remove(target)
            location.move(aside, target)
            done.append(f"put back analysis/{name}")
        elif what in (STAGING, REPLACED):
            location.remove(aside)
            done.append(f"removed {entry}")
    return done


def consolidate_if_stale(path: str) -> bool:
    """Consolidate the store's metadata again when its consolidated copy is missing or
    describes `analysis/` otherwise than the groups now there; True if it did."""
    meta = zarr.open_group(path, mode="r", zarr_format=3).metadata.consolidated_metadata
    plain = zarr.open_group(path, mode="r", zarr_format=3, use_consolidated=False)
    described = lambda node: {k: v for k, v in node.to_dict().items()  # noqa: E731
                              if k != "consolidated_metadata"}
    now = {}
    if schema.ANALYSIS in plain:
        now = {f"{schema.ANALYSIS}/{key}": described(node.metadata)
               for key, node in plain[schema.ANALYSIS].members(max_depth=None)}
    seen = {} if meta is None else {key: described(node) for key, node in meta.flattened_metadata.items()
                                     if key.startswith(f"{schema.ANALYSIS}/")}
    if meta is not None and now == seen:
        return False
    consolidate(path)
    return True


def _drop_consolidated(path: str) -> None:
    """Rewrite the root metadata without its consolidated copy of the tree (one atomic
    file write), so that no reader trusts it while analysis groups are swapped."""
    if zarr.open_group(path, mode="r", zarr_format=3).metadata.consolidated_metadata is None:
        return
    root = zarr.open_group(path, mode="r+", zarr_format=3, use_consolidated=False)
    root.attrs["status"] = root.attrs.get("status", schema.STATUS_RUNNING)  # rewrites zarr.json


def _swap_in(staging: str, target: str, replaced: str) -> None:
    if not location.is_local(staging):
        return _swap_in_remote(staging, target)
    staging, target, replaced = (location.normalize(p) for p in (staging, target, replaced))
    if not os.path.exists(target):
        _rename(staging, target)
        return
    if _exchange(staging, target):
        location.remove(staging)  # the old group, now aside
        return
    location.remove(replaced)
    _rename(target, replaced)
    _rename(staging, target)
    location.remove(replaced)


def _rename(source: str, target: str) -> None:
    os.rename(source, target)  # (one name, so that a test can kill the swap here)


def _exchange(a: str, b: str) -> bool:
    """Swap two paths in one step (Linux `renameat2(RENAME_EXCHANGE)`); False where the
    C library, kernel or file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), a)


def _swap_in_remote(staging: str, target: str) -> None:
    """The best an object store allows: the group is absent while it is replaced, and its
    `zarr.json` arrives last (see the comment above `write_analysis`)."""
    fs, src = location.filesystem(staging)
    dst = location.filesystem(target)[1]
    if fs.exists(dst):
        if fs.exists(posixpath.join(dst, "zarr.json")):
            fs.rm(posixpath.join(dst, "zarr.json"))
        fs.rm(dst, recursive=True)
    top = posixpath.join(src, "zarr.json")
    files = sorted(fs.find(src), key=lambda f: f.rstrip("/") == top.rstrip("/"))
    for file in files:
        fs.mv(file, dst + file[len(src):])
    if fs.exists(src):
        fs.rm(src, recursive=True)
