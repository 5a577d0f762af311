"""Write a run store under the commit protocol.

An epoch's activations, weights and metrics are written first, then `epochs/committed[slot]`,
so a reader (or a crash) never sees half an epoch; in a version-2 store the epoch-coordinate
copies follow (`stores.coordinates`). The writer is
synchronous: `capture` drives it from one background thread, in order. A fresh store is
laid out beside its final place and moved there in one rename (`RunWriter.create_atomic`);
an unfinished one is reopened only if it is laid out as the run's would be
(`RunWriter.reopen`; `stores.layout`).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import zarr

from . import coordinates, location, schema
from .errors import StoreError
from .groups import consolidate
from .shardio import ShardWriter, handover_rows
from .layout import LayerSpec, check_layout, create_metric, lay_out
from .state import TrainingState, write_state

__all__ = ["LayerSpec", "RunWriter"]


class RunWriter:
    """Writes one run's store: `create_atomic` (or `create`) lays out a new one, `reopen`
    (or `open`) goes on writing one.

    Parameters
    ----------
    group : zarr.Group
        The store's root group, open for writing.
    path : str
        The store.

    Attributes
    ----------
    path : str
        The store.
    attrs : dict
        A copy of the store's root attributes (`update_attrs` writes them).
    """

    def __init__(self, group: zarr.Group, path: str):
        self._group = group
        self.path = path
        self._arrays: dict[str, zarr.Array] = {}
        self._absent: set[str] = set()
        self._metric_names: list[str] | None = None  # the store's, listed at first need
        self._reported: dict[int, set[str]] = {}  # slot -> the metrics written there
        self._record: tuple[np.ndarray, np.ndarray] | None = None  # `_commit_record`
        self._copies: list[zarr.Array] | None = None  # the epoch-coordinate copies
        self._shards = ShardWriter(path)  # the shards of version-2 stores being written

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(cls, path: str) -> "RunWriter":
        """An existing store, to go on writing it.

        Parameters
        ----------
        path : str
            The store to go on writing.

        Returns
        -------
        RunWriter
        """
        try:
            # Without consolidated metadata: the next attribute write drops it, as a store
            # that is being written again is read without it (it returns in `finish`).
            root = zarr.open_group(path, mode="r+", zarr_format=3, use_consolidated=False)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            raise StoreError(f"no run store at {path}")
        version = root.attrs.get("schema_version")
        if not schema.readable(version):
            raise StoreError(schema.version_message(path, version))
        return cls(root, path)

    @classmethod
    def reopen(cls, path: str, layers: list[LayerSpec], params: Mapping[str, tuple[int, ...]],
               samples: Mapping[str, np.ndarray]) -> "RunWriter":
        """An unfinished store of a run, to resume its capture.

        Parameters
        ----------
        path : str
            The unfinished store.
        layers, params, samples
            The run's capture points, parameter shapes and probe set, as `create` takes.

        Returns
        -------
        RunWriter

        Raises
        ------
        StoreError
            When the store's arrays are not what this code would write for the run.
        """
        writer = cls.open(path)
        check_layout(writer._group, path, layers, params, samples)
        # A kill between a commit flag and the epoch-coordinate copies left them behind.
        coordinates.sync(writer._group)
        return writer

    @classmethod
    def create_atomic(cls, path: str, *, replace: bool = False, **layout) -> "RunWriter":
        """Lay a new store out beside its final place (`PATH.creating`), then move it
        there in one rename: a kill during creation leaves no half-made store to be
        mistaken for a run.

        Parameters
        ----------
        path : str
            Where the new store goes.
        replace : bool, default False
            Replace the store at `path` (moved aside first, so that no mix of the two
            ever exists).
        **layout
            What `create` takes after `path`.

        Returns
        -------
        RunWriter
            The store at `path`, open for writing.
        """
        staging, replaced = f"{path}.creating", f"{path}.replaced"
        try:
            for leftover in (staging, replaced):  # left by a killed creation
                location.remove(leftover)
            cls.create(staging, **layout)
            if replace:
                location.move(path, replaced)
            location.move(staging, path)
            location.remove(replaced)
        except OSError as err:
            raise StoreError(f"cannot create {path} ({location.os_reason(err)})")
        return cls.open(path)

    @classmethod
    def create(cls, path: str, **layout) -> "RunWriter":
        """Lay out an empty store in place (`stores.layout.lay_out`): the epoch axis is
        preallocated from the schedule, plus one spare slot for the epoch at which a
        stop rule ends training.

        Parameters
        ----------
        path : str
            Where the new store is laid out.
        attrs : mapping
            Root attributes (the run config, its hash, ...).
        schedule : list of int
            The epochs to capture.
        samples : mapping of str to numpy.ndarray
            The probe set (`schema.SAMPLE_FIELDS`).
        layers : list of LayerSpec
            The capture points, in forward order.
        params : mapping of str to tuple of int
            Each parameter's and buffer's shape.
        activation_dtype : {"float16", "float32"}, default "float16"
        compressor : {"none", "zstd"} or None, default None
        overwrite : bool, default False
            Replace a store at `path` (else StoreError).
        samples_attrs : mapping, optional
            Attributes of `samples/` (the corruption).
        metrics : iterable of str, default ()
            The metrics laid out now (the built-in capture declares
            `schema.METRIC_NAMES`); any other is laid out at its first write.

        Returns
        -------
        RunWriter
        """
        writer = cls(lay_out(path, **layout), path)
        # Nothing is committed yet: the commit record is known without reading it.
        writer._record = coordinates.uncommitted(writer._array(coordinates.COMMITTED).shape[0])
        return writer

    # ----------------------------------------------------------------- writing
    def _array(self, path: str) -> zarr.Array:
        if path not in self._arrays:
            # Every written chunk is stored, even one that equals the fill value (a NaN
            # loss): `stores validate` can then tell a committed chunk that is missing.
            self._arrays[path] = self._group[path].with_config({"write_empty_chunks": True})
        return self._arrays[path]

    def sample_block(self, layer: str) -> int:
        """Samples a capture point's activations are handed over by: a chunk (version 1),
        or a whole number of inner chunks of its shards, about `schema.CHUNK_BYTES`.

        Parameters
        ----------
        layer : str
            The capture point.

        Returns
        -------
        int
        """
        return handover_rows(self._array(f"{schema.ACTIVATIONS}/{layer}/{schema.VALUES}"))

    def write_activations(self, slot: int, layer: str, start: int, values: np.ndarray) -> None:
        """Activations of samples `start`... of one capture point at one epoch slot.

        Parameters
        ----------
        slot : int
            The epoch slot.
        layer : str
            The capture point.
        start : int
            The first sample (a multiple of `sample_block` goes straight to its file or
            its place in its shard).
        values : numpy.ndarray
            (n, unit), in the store's activation dtype.
        """
        name = f"{schema.ACTIVATIONS}/{layer}/{schema.VALUES}"
        self._shards.put_rows(name, self._array(name), slot, start, values)

    def _put(self, path: str, slot: int, value) -> None:
        """array[slot] = value, for arrays chunked (or sharded) one slot at a time: the
        chunk or shard goes straight to its file (chunkio, shardio), or through zarr for
        compressed stores."""
        self._shards.put_slot(path, self._array(path), slot, value)

    def write_weights(self, slot: int, state: Mapping[str, np.ndarray]) -> None:
        """Parameters and buffers at one epoch slot.

        Parameters
        ----------
        slot : int
            The epoch slot.
        state : mapping of str to numpy.ndarray
            Parameter name -> its values (a state dict on the host).
        """
        for name, values in state.items():
            self._put(f"{schema.WEIGHTS}/{name}/{schema.VALUES}", slot, values)

    def write_metrics(self, slot: int, metrics: Mapping[str, float]) -> None:
        """The model's own losses and accuracies, or any other scalar, at one epoch slot.

        Parameters
        ----------
        slot : int
            The epoch slot.
        metrics : mapping of str to float
            Name (`schema.METRIC_NAME`) -> value: a number (NaN and infinities are
            stored as they are; None as NaN). A metric the store has not laid out yet is
            laid out now, like a declared one; at slots it is not written, it reads NaN.

        Raises
        ------
        StoreError
            For a name that does not match `schema.METRIC_NAME` or a value that is not a
            number (nothing of `metrics` is written then).
        """
        values = {schema.check_metric_name(name): schema.metric_value(name, value)
                  for name, value in metrics.items()}
        for name, value in values.items():
            node = f"{schema.METRICS}/{name}"
            if not self._has(node):
                if name in schema.OPTIONAL_METRICS and "config" in self._group.attrs:
                    continue  # a pipeline's store laid out before this metric existed (resumed)
                self._create_metric(name)
            self._put(node, slot, value)
            self._reported.setdefault(slot, set()).add(name)

    def _create_metric(self, name: str) -> None:
        """Lay out a metric first written now, as `lay_out` lays out a declared one."""
        committed = self._group[f"{schema.EPOCHS}/committed"]  # same slots and codecs
        create_metric(self._group.require_group(schema.METRICS), name, committed.shape[0],
                      committed.compressors)
        self._absent.discard(f"{schema.METRICS}/{name}")
        self._metrics().append(name)

    def _metrics(self) -> list[str]:
        if self._metric_names is None:
            group = self._group[schema.METRICS]
            self._metric_names = [name for name, _ in coordinates.metric_arrays(group)]
        return self._metric_names

    def _has(self, path: str) -> bool:
        if path not in self._arrays and path not in self._absent:
            if path in self._group:
                self._array(path)
            else:
                self._absent.add(path)
        return path in self._arrays

    def write_state(self, state: TrainingState, weights_written: bool = False) -> None:
        """The training state a resume needs, written before the commit of its slot; the
        model tensors `weights/` holds at its slot are referenced, not copied (`stores.state`).

        Parameters
        ----------
        state : stores.state.TrainingState
        weights_written : bool, default False
            `write_weights` wrote the state's slot from this state's model just before
            (the recorder's commit order): they are referenced without reading them back.
        """
        weights = {}
        for name in state.arrays.get("model", {}):
            node = f"{schema.WEIGHTS}/{name}/{schema.VALUES}"
            if self._has(node):
                weights[name] = self._arrays[node]
        write_state(self._group, state, weights, written=weights_written)

    def commit(self, slot: int, epoch: int) -> None:
        """The last write of an epoch: its number, then its committed flag.

        Parameters
        ----------
        slot : int
            The epoch slot.
        epoch : int
            The epoch number it holds.
        """
        self._close_shards(slot)
        # Every metric of the store gets a chunk at every slot committed after it was laid
        # out (NaN where it was not reported), so that a chunk missing there is damage
        # (`stores.validate`). The built-in capture reports all of its metrics each time;
        # a slot committed already keeps what it holds.
        reported = self._reported.pop(slot, set())
        record = self._commit_record()
        if not record[0][slot]:
            for name in self._metrics():
                if name not in reported:
                    self._put(f"{schema.METRICS}/{name}", slot, np.nan)
        self._put(f"{schema.EPOCHS}/epoch", slot, epoch)
        self._put(f"{schema.EPOCHS}/committed", slot, True)
        # Then the copies a plain xarray reader indexes by (`stores.coordinates`).
        record[0][slot], record[1][slot] = True, epoch
        if self._copies is None:
            self._copies = [self._array(n) for n in coordinates.epoch_copies(self._group)
                            if self._has(n)]
        coordinates.write_copies(self._group, *record, arrays=self._copies)

    def _commit_record(self) -> tuple[np.ndarray, np.ndarray]:
        """The commit flags and epoch numbers, read once (this writer is the store's only
        one, under its write lock) and kept up to date by `commit`."""
        if self._record is None:
            self._record = coordinates.commit_record(self._group)
        return self._record

    def _close_shards(self, slot: int) -> None:
        """Refuse to commit `slot` while a shard of it is incomplete (StoreError naming
        the node and the rows missing; version-2 stores, `stores.shardio`): every shard
        is in place once its last inner chunk is written."""
        self._shards.close(slot)

    def finish(self, status: str = schema.STATUS_COMPLETE) -> None:
        """Mark the store `status` and consolidate its metadata (the capture ended)."""
        self._group.attrs["status"] = status
        consolidate(self.path)

    # ----------------------------------------------------------------- attributes
    @property
    def attrs(self) -> dict:
        """A copy of the store's root attributes."""
        return dict(self._group.attrs)

    def update_attrs(self, attrs: Mapping) -> None:
        """Write root attributes (`status`, `resumes`, `early_stopping`, ...).

        Parameters
        ----------
        attrs : mapping
            Attribute name -> JSON-able value; other attributes are kept.
        """
        self._group.attrs.update(dict(attrs))

    def committed_values(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """An (epoch,) array of the store at its committed slots, in slot order.

        Parameters
        ----------
        name : str
            The array's path in the store (`metrics/val_acc`).

        Returns
        -------
        epochs, values : numpy.ndarray
            The committed epochs' numbers and the array's values there.
        """
        committed = self._group[f"{schema.EPOCHS}/committed"][:]
        epochs = self._group[f"{schema.EPOCHS}/epoch"][:][committed]
        return epochs, self._group[name][:][committed]
