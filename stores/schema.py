"""The run-store schema, version 1 (DESIGN.md §2): node names, dims and dtypes.

Everything that names a node of a store lives here, so the writer, the reader and
`python -m stores validate` cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any

import numpy as np

from .errors import StoreError

SCHEMA_VERSION = 1

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
    """Why a store's `schema_version` cannot be read, in one line."""
    if version is None:
        return f"{path}: not a latentgen run store (no schema_version attribute)"
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        return (f"{path}: written by a newer latentgen (schema_version {version}); this one reads "
                f"schema_version {SCHEMA_VERSION}: upgrade latentgen to use this store")
    return f"{path}: expected schema_version {SCHEMA_VERSION}, got {version!r}"


def lost_commits(committed, schedule: list[int], committed_epochs) -> list[int]:
    """The scheduled epochs that a *complete* store must have committed and has not:
    every scheduled epoch up to its last committed one (all of them if none is). A
    capture commits its epochs in order and marks the store complete after the last, so
    these are flags lost, or epochs un-committed by a repair that was interrupted
    before it could mark the store running."""
    committed = np.asarray(committed, dtype=bool)
    final = max((int(e) for e in committed_epochs), default=None)
    return [int(e) for slot, e in enumerate(schedule)
            if slot < len(committed) and not committed[slot] and (final is None or e < final)]


def weight_dims(ndim: int) -> tuple[str, ...]:
    """Dim names after `epoch` for a parameter of `ndim` axes, named by role."""
    roles = {0: (), 1: ("out",), 2: ("out", "in"), 4: ("out", "in", "kh", "kw")}
    return roles.get(ndim, tuple(f"axis_{i}" for i in range(ndim)))


def sample_block(n_samples: int, n_units: int, itemsize: int) -> int:
    """Samples per chunk: an epoch cut into as many chunks as it has CHUNK_BYTES (at
    least one), of equal size, so the last chunk is not mostly fill-value padding;
    each holds between CHUNK_BYTES / 2 and CHUNK_BYTES (or the whole epoch)."""
    per_sample = max(1, n_units * itemsize)
    n_chunks = max(1, -(-n_samples * per_sample // CHUNK_BYTES))  # ceil division
    return int(max(1, -(-n_samples // n_chunks)))


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace, the form that is hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def config_hash(config: dict) -> str:
    """The identity of a run: sha256 of its resolved config in canonical JSON."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


# ------------------------------------------------------------------ array metadata
# What the writer lays out, array by array (stores/layout.py): `python -m stores validate`
# compares each array's own zarr.json (and the consolidated copy) with it, and
# `python -m stores repair` writes it again where it is unreadable or wrong.
def reduced_units(reduction: str, original_shape) -> int:
    """Stored width of a capture point (capture/reduce.py's rule, known without data)."""
    shape = [int(n) for n in original_shape]
    kind, _, size = str(reduction).partition(":")
    if kind == "avgpool":
        return shape[0]
    if kind == "pool":
        return shape[0] * int(size) ** 2
    if kind == "project":
        return int(size)
    return int(math.prod(shape))


def _document(shape, chunks, dtype, fill_value, dims, codecs) -> dict:
    """The zarr.json that zarr writes for an array created with these arguments."""
    import zarr
    from zarr.storage import MemoryStore

    store: dict = {}
    zarr.create_array(MemoryStore(store), name="a", shape=tuple(shape), chunks=tuple(chunks),
                      dtype=dtype, fill_value=fill_value, dimension_names=list(dims),
                      compressors=codecs)
    return json.loads(store["a/zarr.json"].to_bytes())


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


@dataclasses.dataclass(frozen=True)
class Layout:
    """What the metadata of a store's arrays follows from: the slots, the probe set's
    size, the activation dtype and compressor, and each layer's and parameter's shape."""

    n_slots: int
    n_samples: int
    activation_dtype: str = "float16"
    compressor: str = PLAIN
    units: dict = dataclasses.field(default_factory=dict)  # layer -> units
    params: dict = dataclasses.field(default_factory=dict)  # param -> shape


def layout_of(docs: dict[str, dict | None]) -> Layout | None:
    """What the store's array metadata should follow from: the root attributes, the
    probe set, the layers' attributes and the parameters' shapes, read from the nodes
    that are readable (or their consolidated copies); None if it cannot be worked out."""
    root = docs.get("") or {}
    attrs = root.get("attributes") or {}
    consolidated = ((root.get("consolidated_metadata") or {}).get("metadata")) or {}

    def doc(name: str) -> dict:
        return docs.get(name) or consolidated.get(name) or {}

    def node_attrs(name: str) -> dict:
        return doc(name).get("attributes") or {}

    names = set(docs) | set(consolidated)
    act, wts = f"{ACTIVATIONS}/", f"{WEIGHTS}/"
    order = node_attrs(ACTIVATIONS).get("order") or sorted(
        {n.split("/")[1] for n in names if n.startswith(act)})
    units = {}
    for layer in order:
        group, values = node_attrs(f"{act}{layer}"), doc(f"{act}{layer}/{VALUES}")
        if "original_shape" in group:
            units[layer] = reduced_units(group.get("reduction", "flatten"), group["original_shape"])
        elif values.get("shape"):
            units[layer] = values["shape"][-1]
    params = {}
    for param in sorted({n.split("/")[1] for n in names if n.startswith(wts)}):
        group, values = node_attrs(f"{wts}{param}"), doc(f"{wts}{param}/{VALUES}")
        if "shape" in group:
            params[param] = list(group["shape"])
        elif values.get("shape"):
            params[param] = values["shape"][1:]
    sizes = [doc(f"{SAMPLES}/{n}").get("shape", [None])[0] for n in SAMPLE_FIELDS]
    sizes += [(doc(f"{act}{layer}/{VALUES}").get("shape") or [None, None])[1] for layer in order]
    sizes = [int(n) for n in sizes if isinstance(n, int)]
    if not sizes or "schedule" not in attrs:
        return None
    capture = (attrs.get("config") or {}).get("capture") or {}
    dtype = capture.get("dtype")
    if dtype not in ACTIVATION_DTYPES:  # a store laid out without a run config
        have = {doc(f"{act}{layer}/{VALUES}").get("data_type") for layer in order}
        dtype = next(iter(sorted(have & set(ACTIVATION_DTYPES))), "float16")
    compressor = capture.get("compressor")
    if compressor not in COMPRESSORS:
        codecs = doc(f"{METRICS}/{METRIC_NAMES[0]}").get("codecs") or []
        compressor = COMPRESSED if any(c.get("name") == COMPRESSED for c in codecs) else PLAIN
    return Layout(len(attrs["schedule"]) + 1, max(set(sizes), key=sizes.count),
                         dtype, compressor, units, params)


def expected_metadata(layout: Layout, name: str) -> dict | None:
    """The zarr.json document of array `name` as the writer lays it out (None: not an
    array the schema knows, such as state/ or analysis/)."""
    codecs = compressors(layout.compressor)
    parts = name.split("/")
    n, slots = layout.n_samples, layout.n_slots
    if parts[0] == SAMPLES and len(parts) == 2 and parts[1] in SAMPLE_FIELDS:
        kind = SAMPLE_FIELDS[parts[1]]
        return _document((n,), (n,), str if kind == "str" else kind, None, ["sample"],
                         compressors(COMPRESSED))
    if parts[0] == EPOCHS and len(parts) == 2 and parts[1] in ("epoch", "committed"):
        dtype, fill = ("int64", -1) if parts[1] == "epoch" else ("bool", False)
        return _document((slots,), (1,), dtype, fill, ["epoch"], codecs)
    if parts[0] == METRICS and len(parts) == 2 and parts[1] in METRIC_NAMES:
        return _document((slots,), (1,), "float64", float("nan"), ["epoch"], codecs)
    if parts[0] == ACTIVATIONS and len(parts) == 3 and parts[2] == VALUES and parts[1] in layout.units:
        units, dtype = int(layout.units[parts[1]]), layout.activation_dtype
        block = sample_block(n, units, np.dtype(dtype).itemsize)
        return _document((slots, n, units), (1, block, units), dtype, float("nan"),
                         ["epoch", "sample", "unit"], codecs)
    if parts[0] == WEIGHTS and len(parts) == 3 and parts[2] == VALUES and parts[1] in layout.params:
        shape = tuple(int(s) for s in layout.params[parts[1]])
        return _document((slots, *shape), (1, *shape), WEIGHT_DTYPE, float("nan"),
                         ["epoch", *weight_dims(len(shape))], codecs)
    return None


# The metadata fields compared with the schema (not attributes: arrays carry none).
METADATA_FIELDS = ("shape", "data_type", "chunk_grid", "chunk_key_encoding", "fill_value",
                   "codecs", "dimension_names", "node_type")


def metadata_differences(expected: dict, have: dict) -> list[str]:
    """'field: expected X, got Y' for every compared field that differs."""
    out = []
    for key in METADATA_FIELDS:
        want, got = expected.get(key), have.get(key)
        if key == "shape" or key == "dimension_names":
            want, got = list(want or []), list(got or [])
        if want != got:
            out.append(f"{key}: expected {_brief(want)}, got {_brief(got)}")
    return out


def _brief(value) -> str:
    if isinstance(value, dict) and set(value) == {"name", "configuration"}:
        return _brief(value["configuration"].get("chunk_shape", value))
    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        return "[" + ", ".join(v["name"] for v in value) + "]"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
