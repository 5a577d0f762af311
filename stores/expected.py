"""What the schema asks of a store's nodes (their dims and shapes, from the epoch axis
and the probe set), and the check of a store against it, for `stores.validate`."""

from __future__ import annotations

import zarr

from . import schema
from .coordinates import expected_coordinates, metric_arrays
from .problems import EPOCH_GROUPS, LAYOUT, Report


def expected_nodes(root: zarr.Group) -> dict[str, tuple[tuple, tuple]]:
    """name -> (dims, shape) of every array the schema asks of this store."""
    n_slots = len(root.attrs.get("schedule", [])) + 1
    n_samples = root[f"{schema.SAMPLES}/split"].shape[0] if "split" in root[schema.SAMPLES] else None
    expected: dict[str, tuple[tuple, tuple]] = {}
    for name in schema.SAMPLE_FIELDS:
        expected[f"{schema.SAMPLES}/{name}"] = (("sample",), (n_samples,))
    for name in ("epoch", "committed"):
        expected[f"{schema.EPOCHS}/{name}"] = (("epoch",), (n_slots,))
    # The metrics are whatever the store holds, plus, in a pipeline's store (one with a
    # run config), the built-in capture's (`val_acc` only where it was laid out).
    metrics = {name for name, _ in metric_arrays(root[schema.METRICS])} if schema.METRICS in root else set()
    if "config" in root.attrs:
        metrics |= set(schema.METRIC_NAMES) - set(schema.OPTIONAL_METRICS)
    for name in sorted(metrics):
        expected[f"{schema.METRICS}/{name}"] = (("epoch",), (n_slots,))
    for layer in root[schema.ACTIVATIONS].attrs.get("order", []):
        node = f"{schema.ACTIVATIONS}/{layer}/{schema.VALUES}"
        units = root[node].shape[-1] if node in root else None
        expected[node] = (("epoch", "sample", "unit"), (n_slots, n_samples, units))
    for param, group in root[schema.WEIGHTS].groups():
        shape = tuple(group.attrs.get("shape", ()))
        expected[f"{schema.WEIGHTS}/{param}/{schema.VALUES}"] = (
            ("epoch", *schema.weight_dims(len(shape))), (n_slots, *shape))
    expected.update(expected_coordinates(root, n_slots, n_samples))
    return expected


def check_layout(root: zarr.Group, report: Report) -> None:
    """Groups, arrays, dims and shapes the schema asks for."""
    missing = [g for g in (schema.SAMPLES, *EPOCH_GROUPS) if g not in root]
    for g in missing:
        report.add(g, None, "missing group", LAYOUT)
    if missing:
        return
    for name, (dims, shape) in expected_nodes(root).items():
        if name not in root:
            report.add(name, None, "missing array", LAYOUT)
            continue
        array = root[name]
        have_dims = tuple(array.metadata.dimension_names or ())
        if have_dims != dims:
            report.add(name, None, f"dims: expected {dims}, got {have_dims}", LAYOUT)
        if array.shape != shape:
            report.add(name, None, f"shape: expected {shape}, got {array.shape}", LAYOUT)
