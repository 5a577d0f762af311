"""The run-store schema, version 2 (DESIGN.md §2): node names, dims, dtypes and codecs.

Everything that names a node of a store lives here (the analysis groups' too), so the
writer, the reader, the analysis and `python -m stores validate` cannot drift apart;
the array metadata laid out from it is `stores.metadata`.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import numpy as np

from .errors import StoreError

SCHEMA_VERSION = 2
# The versions this code reads (and resumes and analyses): version 1 has no coordinate
# copies, no CF attributes and one file per chunk (no sharding).
READABLE_VERSIONS = (1, 2)

# Groups directly under the root.
SAMPLES = "samples"
EPOCHS = "epochs"
ACTIVATIONS = "activations"
WEIGHTS = "weights"
METRICS = "metrics"
ANALYSIS = "analysis"

# The groups indexed by epoch slot, written under the commit protocol.
CAPTURED = (EPOCHS, ACTIVATIONS, WEIGHTS, METRICS)

# analysis/<name>: the groups the analysis grid writes, by short name, in the order it
# writes them, and their full paths in a store.
ANALYSIS_NODES = ("dynamics", "edit", "masc_n", "cross", "relabel")
DYNAMICS, EDIT, MASC_N, CROSS, RELABEL = (f"{ANALYSIS}/{name}" for name in ANALYSIS_NODES)

# analysis/<name>: the variables a whole write of each kind `analyze` writes leaves
# (a group without them is what a killed write leaves; `python -m stores validate`).
ANALYSIS_VARIABLES = {"dynamics": ("accuracy", "masc_k"), "edit": ("accuracy",)}

# The variables (and their dims) of each analysis group that `python -m analyze` writes:
# a group that lacks one (left by an analysis killed before writes were atomic, or cut
# short on an object store) is read as absent, so the analysis computes it again
# (`stores.results.stored_analysis`).
ANALYSIS_LAYOUT = {
    "dynamics": {"accuracy": ("probe", "layer", "epoch", "score"), "masc_k": ("layer", "epoch", "class")},
    "edit": {"accuracy": ("variant", "epoch", "score"), "weight": ("epoch", "out", "in")},
    "masc_n": {"accuracy": ("n", "subspaces", "layer", "epoch", "score"),
               "masc_k": ("n", "subspaces", "layer", "epoch", "class")},
    "cross": {"accuracy": ("labels_from", "layer", "epoch", "score"),
              "class_accuracy": ("labels_from", "layer", "epoch", "class")},
    "relabel": {"label": ("sample",), "holdout": ("sample",), "layer_accuracy": ("layer", "part")},
    "neurons": {"ipr": ("epoch", "neuron"), "mean_ipr": ("epoch",), "ipr_histogram": ("epoch", "bin")},
    "pruning": {"accuracy": ("order", "group", "pruned"), "neuron_order": ("order", "rank")},
}

# Version 2: the coordinates a plain `xarray.open_datatree` reader needs, in the store.
# `activations/epoch`, `weights/epoch` and `metrics/epoch` are copies of the committed
# epochs' numbers, NOT_COMMITTED (-1) at every slot not committed, written whole after
# each commit flag (so a copy never shows an epoch before it is committed); xarray
# attaches them as the `epoch` index of every node below. `activations/sample` is the
# probe set's row (0..n-1), and each capture point's group holds the sample coordinates
# (`SAMPLE_COORDS`, copies of samples/*) that its `values` name in their `coordinates`.
EPOCH_COORD = "epoch"
NOT_COMMITTED = -1
COORDINATE_GROUPS = ("activations", "weights", "metrics")
SAMPLE_COORD = "sample"
SAMPLE_COORDS = ("split", "label_true", "label_observed", "corrupted")
# Names a metric or a capture point may not take (they are coordinates' names).
RESERVED_NAMES = (EPOCH_COORD, SAMPLE_COORD, *SAMPLE_COORDS)

# Every capture point and every parameter is a group holding one array of this name,
# so that a dim name has one size within a group (layers differ in width).
VALUES = "values"

# samples/<name>: (sample,), the probe set.
SAMPLE_FIELDS = {
    "split": "str",  # one of SPLITS
    "index": "int64",  # row in the source dataset
    "label_true": "int64",
    "label_observed": "int64",  # what the model was trained on; = label_true on test
    "corrupted": "bool",
}

# samples/split: "val" is the holdout of a relabel-and-retrain run (its early stopping
# watches it); the test metrics are on "test" only.
SPLITS = ("train", "val", "test")

# metrics/<name>: (epoch,), measured on the probe set in eval mode at each capture.
# val_acc: accuracy on split "val" (NaN for runs without one).
METRIC_NAMES = ("train_loss", "train_acc_observed", "train_acc_true", "test_loss", "test_acc",
                "val_acc")
# Metrics added after the first stores were written: a store without them is whole.
OPTIONAL_METRICS = ("val_acc",)
# Any other metric a store holds (a recorder's `grad_norm`) is named like a Python
# identifier, so that it is a valid node name and an xarray variable name.
METRIC_NAME = r"[A-Za-z_][A-Za-z0-9_]*"

ACTIVATION_DTYPES = ("float16", "float32")
WEIGHT_DTYPE = "float32"

# Compressors of the arrays (`compressors` gives their codecs): captured arrays take the
# capture's choice; the probe set and the analysis results are always compressed, the
# training state never (its chunks are rewritten in place).
PLAIN, COMPRESSED = "none", "zstd"
COMPRESSORS = (PLAIN, COMPRESSED)

# Chunks of activations are one epoch by a block of samples: an epoch is cut into equal
# chunks of at most CHUNK_BYTES (so at least CHUNK_BYTES / 2, well above DESIGN.md's
# 1 MiB, unless the whole epoch is smaller): fewer, larger files are written faster (one
# file, one rename, one fsync each) and every analysis task reads a whole slab anyway.
CHUNK_BYTES = 8 << 20
# Version 2 shards activations and weights (the Zarr v3 sharding codec): one shard (one
# file) per epoch slot and node; the chunks inside it (inner chunks) are cut the same
# way, at most INNER_BYTES each, for reading a block of samples (or of rows).
INNER_BYTES = 2 << 20

# Status values of the root attribute `status`.
STATUS_RUNNING = "running"
STATUS_COMPLETE = "complete"
STATUS_DIVERGED = "diverged"  # training stopped: its loss went non-finite

# state/<copy>/...: what a killed capture needs to go on (model, optimizer, random
# generators), for the latest committed epochs. Two copies alternate by slot parity, so
# writing one never touches the copy that the last committed epoch names.
STATE = "state"
STATE_COPIES = 2


def version_message(path: str, version: Any) -> str:
    """Why a store's `schema_version` cannot be read, in one line.

    Parameters
    ----------
    path : str
        The store, for the message.
    version : object
        Its `schema_version` attribute (None: absent).

    Returns
    -------
    str
    """
    if version is None:
        return f"{path}: not a latentgen run store (no schema_version attribute)"
    if isinstance(version, int) and not isinstance(version, bool) and version > max(READABLE_VERSIONS):
        return (f"{path}: written by a newer latentgen (schema_version {version}); this one reads "
                f"schema_version {' and '.join(map(str, READABLE_VERSIONS))}: upgrade latentgen to use "
                "this store")
    return (f"{path}: expected schema_version {' or '.join(map(str, READABLE_VERSIONS))}, "
            f"got {version!r}")


def readable(version: Any) -> bool:
    """Whether this code reads a store of `schema_version` `version`."""
    return isinstance(version, int) and not isinstance(version, bool) and version in READABLE_VERSIONS


def check_metric_name(name: Any) -> str:
    """A metric's name, checked against `METRIC_NAME`.

    Parameters
    ----------
    name : object
        The name a metric was reported under.

    Returns
    -------
    str

    Raises
    ------
    StoreError
        For a name that is not a str matching `METRIC_NAME`, or is `epoch`.
    """
    if not isinstance(name, str) or not re.fullmatch(METRIC_NAME, name):
        raise StoreError(f"metrics: expected names matching {METRIC_NAME}, got {name!r}")
    if name == EPOCH_COORD:
        raise StoreError(f"metrics: the name {name!r} is taken by the epoch coordinate "
                         "(metrics/epoch); choose another")
    return name


def metric_value(name: str, value: Any) -> float:
    """A metric's value as a float (None: NaN).

    Parameters
    ----------
    name : str
        The metric, for the message.
    value : object
        What was reported: a number (NaN and infinities as they are) or None.

    Returns
    -------
    float

    Raises
    ------
    StoreError
        Naming the metric, for a value that is not a number.
    """
    if value is None:
        return float("nan")
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        return float(value)
    except (TypeError, ValueError):
        raise StoreError(f"metrics/{name}: expected a number, got {value!r}") from None


def lost_commits(committed, schedule: list[int], committed_epochs) -> list[int]:
    """The scheduled epochs that a *complete* store must have committed and has not.

    A capture commits its epochs in order and marks the store complete after the last,
    so these are flags lost, or epochs un-committed by a repair that was interrupted
    before it could mark the store running.

    Parameters
    ----------
    committed : array-like of bool
        (slot,): the commit flags.
    schedule : list of int
        The store's `schedule` attribute.
    committed_epochs : iterable of int
        The committed epochs' numbers.

    Returns
    -------
    list of int
        Every scheduled epoch before the last committed one (all of them if none is)
        that is not committed.
    """
    committed = np.asarray(committed, dtype=bool)
    final = max((int(e) for e in committed_epochs), default=None)
    return [int(e) for slot, e in enumerate(schedule)
            if slot < len(committed) and not committed[slot] and (final is None or e < final)]


def weight_dims(ndim: int) -> tuple[str, ...]:
    """The dim names after `epoch` of a parameter, named by role.

    Parameters
    ----------
    ndim : int
        The parameter's number of axes.

    Returns
    -------
    tuple of str
        `out`, `in`, `kh`, `kw` for 1, 2 and 4 axes; `axis_<i>` otherwise.
    """
    roles = {0: (), 1: ("out",), 2: ("out", "in"), 4: ("out", "in", "kh", "kw")}
    return roles.get(ndim, tuple(f"axis_{i}" for i in range(ndim)))


def sample_block(n_samples: int, n_units: int, itemsize: int, limit: int = CHUNK_BYTES) -> int:
    """Samples (rows) per chunk of a capture point's activations (or of a parameter).

    An epoch is cut into as many chunks as it has `limit` bytes (at least one), of equal
    size, so the last chunk is not mostly fill-value padding: each holds between
    `limit` / 2 and `limit` (or the whole epoch).

    Parameters
    ----------
    n_samples, n_units : int
        The probe set's size and the point's stored width (rows, and values per row).
    itemsize : int
        Bytes per value (2 for float16).
    limit : int, default CHUNK_BYTES
        The most bytes per chunk: CHUNK_BYTES for version 1's chunks, INNER_BYTES for
        version 2's inner chunks.

    Returns
    -------
    int
    """
    per_sample = max(1, n_units * itemsize)
    n_chunks = max(1, -(-n_samples * per_sample // limit))  # ceil division
    return int(max(1, -(-n_samples // n_chunks)))


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace, the form that is hashed.

    Parameters
    ----------
    obj : object
        JSON-able.

    Returns
    -------
    str
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def config_hash(config: dict) -> str:
    """The identity of a run: the sha256 of its config's identity in canonical JSON.

    Parameters
    ----------
    config : dict
        What identifies the run (`RunConfig.identity`), JSON-able.

    Returns
    -------
    str
        The hex digest (64 characters), stored as the root's `config_hash`.
    """
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def compressors(compressor: str | None) -> list:
    """The bytes-to-bytes codecs of an array: optional compression, then always a crc32c
    checksum (so that `python -m stores validate` finds damaged chunks).

    Parameters
    ----------
    compressor : {"none", "zstd"} or None
        The capture's `compressor` (None: "none"); the probe set and the analysis
        results always use `COMPRESSED`, training state `PLAIN`.

    Returns
    -------
    list
        Zarr codec objects, for `compressors=` of `zarr.create_array`.

    Raises
    ------
    StoreError
        For a name not in `COMPRESSORS`.
    """
    from zarr.codecs import Crc32cCodec, ZstdCodec

    if compressor in (None, PLAIN):
        return [Crc32cCodec()]
    if compressor == COMPRESSED:
        return [ZstdCodec(level=1), Crc32cCodec()]
    raise StoreError(f"compressor: expected one of {', '.join(COMPRESSORS)}, got {compressor!r}")
