"""The run-store schema, version 1 (DESIGN.md §2): node names, dims and dtypes.

Everything that names a node of a store lives here, so the writer, the reader and
`python -m stores validate` cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

SCHEMA_VERSION = 1

# Groups directly under the root.
SAMPLES = "samples"
EPOCHS = "epochs"
ACTIVATIONS = "activations"
WEIGHTS = "weights"
METRICS = "metrics"
ANALYSIS = "analysis"

# Every capture point and every parameter is a group holding one array of this name,
# so that a dim name has one size within a group (layers differ in width).
VALUES = "values"

# samples/<name>: (sample,), the probe set.
SAMPLE_FIELDS = {
    "split": "str",  # "train" or "test"
    "index": "int64",  # row in the source dataset
    "label_true": "int64",
    "label_observed": "int64",  # what the model was trained on; = label_true on test
    "corrupted": "bool",
}

# metrics/<name>: (epoch,), measured on the probe set in eval mode at each capture.
METRIC_NAMES = ("train_loss", "train_acc_observed", "train_acc_true", "test_loss", "test_acc")

ACTIVATION_DTYPES = ("float16", "float32")
WEIGHT_DTYPE = "float32"

# Chunks of activations are one epoch by a block of samples: an epoch is cut into equal
# chunks of at most CHUNK_BYTES (so at least CHUNK_BYTES / 2, well above DESIGN.md's
# 1 MiB, unless the whole epoch is smaller): fewer, larger files are written faster (one
# file, one rename, one fsync each) and every analysis task reads a whole slab anyway.
CHUNK_BYTES = 8 << 20

# Status values of the root attribute `status`.
STATUS_RUNNING = "running"
STATUS_COMPLETE = "complete"

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
