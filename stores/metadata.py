"""The metadata of a store's arrays as the schema lays them out.

`python -m stores validate` compares each array's own zarr.json (and the consolidated
copy) with `expected_metadata`, and `python -m stores repair` writes it again from there
where it is unreadable or wrong. What a store's layout follows from (`Layout`: slots,
probe-set size, dtype, compressor, widths and shapes) is read off the metadata that is
still readable (`layout_of`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import zarr
from zarr.storage import MemoryStore

from .cf import array_attrs
from .schema import (
    ACTIVATION_DTYPES,
    ACTIVATIONS,
    COMPRESSED,
    COMPRESSORS,
    COORDINATE_GROUPS,
    EPOCH_COORD,
    EPOCHS,
    INNER_BYTES,
    METRIC_NAME,
    METRIC_NAMES,
    METRICS,
    NOT_COMMITTED,
    PLAIN,
    SAMPLE_COORD,
    SAMPLE_COORDS,
    SAMPLE_FIELDS,
    SAMPLES,
    SCHEMA_VERSION,
    VALUES,
    WEIGHT_DTYPE,
    WEIGHTS,
    compressors,
    sample_block,
    weight_dims,
)


def reduced_units(reduction: str, original_shape) -> int:
    """The stored width of a capture point, known without data (capture/reduce.py's rule).

    Parameters
    ----------
    reduction : str
        `flatten`, `avgpool`, `pool:K` or `project:D`.
    original_shape : sequence of int
        The point's output shape per sample.

    Returns
    -------
    int
    """
    shape = [int(n) for n in original_shape]
    kind, _, size = str(reduction).partition(":")
    if kind == "avgpool":
        return shape[0]
    if kind == "pool":
        return shape[0] * int(size) ** 2
    if kind == "project":
        return int(size)
    return int(math.prod(shape))


def _document(shape, chunks, dtype, fill_value, dims, codecs, shards=None) -> dict:
    """The zarr.json that zarr writes for an array created with these arguments."""
    store: dict = {}
    zarr.create_array(MemoryStore(store), name="a", shape=tuple(shape), chunks=tuple(chunks),
                      shards=None if shards is None else tuple(shards), dtype=dtype,
                      fill_value=fill_value, dimension_names=list(dims), compressors=codecs)
    return json.loads(store["a/zarr.json"].to_bytes())


def activation_chunks(n_samples: int, units: int, dtype, sharded: bool = True) -> tuple:
    """The shard and chunk shapes of a capture point's activations.

    Version 2 (`sharded`): one shard per epoch slot, (1, S, units), of inner chunks
    (1, b, units), b samples of at most `INNER_BYTES` (`schema.sample_block`), S the
    probe set rounded up to whole inner chunks. Version 1: no shards, chunks of at most
    `CHUNK_BYTES`.

    Parameters
    ----------
    n_samples, units : int
        The probe set's size and the point's stored width.
    dtype : str or numpy.dtype
        The stored activations' dtype.
    sharded : bool, default True
        Version 2's layout (else version 1's).

    Returns
    -------
    shards : tuple of int or None
    chunks : tuple of int
    """
    itemsize = np.dtype(dtype).itemsize
    if not sharded:
        return None, (1, sample_block(n_samples, units, itemsize), units)
    block = sample_block(n_samples, units, itemsize, limit=INNER_BYTES)
    return (1, max(1, -(-n_samples // block)) * block, units), (1, block, units)


def weight_chunks(shape, sharded: bool = True) -> tuple:
    """The shard and chunk shapes of a parameter's values (epoch, *shape).

    Version 2: one shard per slot, its first parameter axis rounded up to whole inner
    chunks, cut along that axis into inner chunks of at most `INNER_BYTES` (a 0-d or
    one-row parameter is one inner chunk). Version 1: one chunk per slot.

    Parameters
    ----------
    shape : tuple of int
        The parameter's shape.
    sharded : bool, default True
        Version 2's layout (else version 1's).

    Returns
    -------
    shards : tuple of int or None
    chunks : tuple of int
    """
    shape = tuple(int(n) for n in shape)
    if not sharded:
        return None, (1, *shape)
    if not shape:
        return (1,), (1,)
    row = int(np.prod(shape[1:], dtype=np.int64))
    block = sample_block(shape[0], row, np.dtype(WEIGHT_DTYPE).itemsize, limit=INNER_BYTES)
    return (1, max(1, -(-shape[0] // block)) * block, *shape[1:]), (1, block, *shape[1:])


@dataclasses.dataclass(frozen=True)
class Layout:
    """What the metadata of a store's arrays follows from.

    Attributes
    ----------
    n_slots, n_samples : int
        The epoch slots (the schedule plus the spare one) and the probe set's size.
    activation_dtype : str, default "float16"
    compressor : str, default "none"
    units : dict of str to int
        Capture point -> its stored width.
    params : dict of str to list of int
        Parameter -> its shape.
    version : int, default SCHEMA_VERSION
        The store's `schema_version` (version 1: no shards, no coordinate copies).
    """

    n_slots: int
    n_samples: int
    activation_dtype: str = "float16"
    compressor: str = PLAIN
    units: dict = dataclasses.field(default_factory=dict)
    params: dict = dataclasses.field(default_factory=dict)
    version: int = SCHEMA_VERSION


def layout_of(docs: dict[str, dict | None]) -> Layout | None:
    """What a store's array metadata should follow from, read off the nodes that are
    readable (or their consolidated copies).

    Parameters
    ----------
    docs : dict of str to dict or None
        Node -> its zarr.json (`stores.validate.documents`).

    Returns
    -------
    Layout or None
        From the root attributes, the probe set, the layers' attributes and the
        parameters' shapes; None if it cannot be worked out.
    """
    root = docs.get("") or {}
    attrs = root.get("attributes") or {}
    consolidated = ((root.get("consolidated_metadata") or {}).get("metadata")) or {}

    def doc(name: str) -> dict:
        return docs.get(name) or consolidated.get(name) or {}

    act = f"{ACTIVATIONS}/"
    order = (doc(ACTIVATIONS).get("attributes") or {}).get("order") or sorted(
        {n.split("/")[1] for n in set(docs) | set(consolidated) if n.startswith(act)}
        - {EPOCH_COORD, SAMPLE_COORD})
    units, params = _widths(doc, order, set(docs) | set(consolidated))
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
        captured = [f"{EPOCHS}/committed", f"{EPOCHS}/epoch",
                    *(f"{METRICS}/{name}" for name in METRIC_NAMES)]
        codecs = next((doc(n)["codecs"] for n in captured if doc(n).get("codecs")), [])
        compressor = COMPRESSED if any(c.get("name") == COMPRESSED for c in codecs) else PLAIN
    version = attrs.get("schema_version")
    return Layout(len(attrs["schedule"]) + 1, max(set(sizes), key=sizes.count), dtype, compressor,
                  units, params, version if version in (1, SCHEMA_VERSION) else SCHEMA_VERSION)


def _widths(doc, order: list[str], names: set[str]) -> tuple[dict, dict]:
    """(layer -> units, param -> shape), from the groups' attributes where they are
    readable, else from their arrays' shapes."""
    node_attrs = lambda name: doc(name).get("attributes") or {}  # noqa: E731
    act, wts = f"{ACTIVATIONS}/", f"{WEIGHTS}/"
    units = {}
    for layer in order:
        group, values = node_attrs(f"{act}{layer}"), doc(f"{act}{layer}/{VALUES}")
        if "original_shape" in group:
            units[layer] = reduced_units(group.get("reduction", "flatten"), group["original_shape"])
        elif values.get("shape"):
            units[layer] = values["shape"][-1]
    params = {}
    for param in sorted({n.split("/")[1] for n in names if n.startswith(wts)} - {EPOCH_COORD}):
        group, values = node_attrs(f"{wts}{param}"), doc(f"{wts}{param}/{VALUES}")
        if "shape" in group:
            params[param] = list(group["shape"])
        elif values.get("shape"):
            params[param] = values["shape"][1:]
    return units, params


def expected_metadata(layout: Layout, name: str) -> dict | None:
    """An array's zarr.json as the writer lays it out.

    Parameters
    ----------
    layout : Layout
        What the store's layout follows from (`layout_of`).
    name : str
        The array's path in the store.

    Returns
    -------
    dict or None
        The document; None for an array the schema does not lay out (state/,
        analysis/).
    """
    doc = _schema_document(layout, name)
    if doc is not None and layout.version >= 2:  # version 2: CF attributes on every array
        doc["attributes"] = array_attrs(name)
        if name.startswith(f"{ACTIVATIONS}/") and name.endswith(f"/{VALUES}"):
            doc["attributes"]["coordinates"] = " ".join(SAMPLE_COORDS)
    return doc


def _schema_document(layout: Layout, name: str) -> dict | None:
    """`expected_metadata` without the attributes."""
    codecs = compressors(layout.compressor)
    parts = name.split("/")
    n, slots, v2 = layout.n_samples, layout.n_slots, layout.version >= 2
    if parts[0] == SAMPLES and len(parts) == 2 and parts[1] in SAMPLE_FIELDS:
        return _sample_document(n, parts[1])
    if v2 and len(parts) == 2 and parts[0] in COORDINATE_GROUPS and parts[1] == EPOCH_COORD:
        return _document((slots,), (slots,), "int64", NOT_COMMITTED, ["epoch"], codecs)
    if v2 and parts == [ACTIVATIONS, SAMPLE_COORD]:
        return _document((n,), (n,), "int64", 0, ["sample"], compressors(COMPRESSED))
    if v2 and parts[0] == ACTIVATIONS and len(parts) == 3 and parts[2] in SAMPLE_COORDS \
            and parts[1] in layout.units:
        return _sample_document(n, parts[2])
    if parts[0] == EPOCHS and len(parts) == 2 and parts[1] in ("epoch", "committed"):
        dtype, fill = ("int64", -1) if parts[1] == "epoch" else ("bool", False)
        return _document((slots,), (1,), dtype, fill, ["epoch"], codecs)
    if parts[0] == METRICS and len(parts) == 2 and re.fullmatch(METRIC_NAME, parts[1]):
        return _document((slots,), (1,), "float64", float("nan"), ["epoch"], codecs)
    if parts[0] == ACTIVATIONS and len(parts) == 3 and parts[2] == VALUES and parts[1] in layout.units:
        units, dtype = int(layout.units[parts[1]]), layout.activation_dtype
        shards, chunks = activation_chunks(n, units, dtype, sharded=v2)
        return _document((slots, n, units), chunks, dtype, float("nan"),
                         ["epoch", "sample", "unit"], codecs, shards)
    if parts[0] == WEIGHTS and len(parts) == 3 and parts[2] == VALUES and parts[1] in layout.params:
        shape = tuple(int(s) for s in layout.params[parts[1]])
        shards, chunks = weight_chunks(shape, sharded=v2)
        return _document((slots, *shape), chunks, WEIGHT_DTYPE, float("nan"),
                         ["epoch", *weight_dims(len(shape))], codecs, shards)
    return None


def _sample_document(n: int, field: str) -> dict:
    """samples/<field>'s zarr.json (and its copies' beside the activations)."""
    kind = SAMPLE_FIELDS[field]
    return _document((n,), (n,), str if kind == "str" else kind, None, ["sample"],
                     compressors(COMPRESSED))


# The metadata fields compared with the schema (not attributes: CF attributes, `stores.cf`).
METADATA_FIELDS = ("shape", "data_type", "chunk_grid", "chunk_key_encoding", "fill_value",
                   "codecs", "dimension_names", "node_type")


def metadata_differences(expected: dict, have: dict) -> list[str]:
    """How an array's metadata differs from the schema's, field by field.

    Parameters
    ----------
    expected, have : dict
        The schema's zarr.json (`expected_metadata`) and the store's.

    Returns
    -------
    list of str
        'field: expected X, got Y' for every field of METADATA_FIELDS that differs.
    """
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
