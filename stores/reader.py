"""Read run stores as xarray objects, showing committed epochs only.

`open_run` gives the whole run as a lazy `xarray.DataTree`; the functions below it give
the pieces people ask for most (a layer's activations, the metrics, the weights) with
the sample coordinates attached. `slab` and `sample_table` are the narrow, eager reads
that analysis tasks use: one (epoch, layer) slab and the small per-sample arrays.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
import zarr

from . import schema
from .chunkio import CheckedStore, checked_group
from .errors import StoreError


def _open_group(path: str, checked: bool = True) -> zarr.Group:
    """The store's root group; `checked`: read through a CheckedStore, so that a chunk
    missing from a committed epoch raises StoreError instead of reading as fill."""
    try:
        # Zarr v3 only: a v2 store could name a pickle codec, and nothing is unpickled here.
        group = zarr.open_group(path, mode="r", zarr_format=3)
    except (FileNotFoundError, NotADirectoryError, zarr.errors.GroupNotFoundError):
        raise StoreError(f"no run store at {path}")
    except ValueError as err:  # a damaged zarr.json
        raise StoreError(f"{path}: unreadable store metadata ({err})")
    version = group.attrs.get("schema_version")
    if version != schema.SCHEMA_VERSION:
        raise StoreError(schema.version_message(path, version))
    return checked_group(group, path) if checked else group


def _array(group: zarr.Group, name: str, path: str) -> zarr.Array:
    """group[name], or one line naming the node and what to do when it is not there."""
    try:
        return group[name]
    except KeyError:
        raise StoreError(f"{path}: {name} is missing: run `python -m stores validate {path}` "
                         f"(`python -m stores repair {path}` rebuilds what it can)") from None


def committed_slots(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(slots, epochs) of the committed epochs, in training order.

    A complete store whose flags have holes inside its trained range (or none at all)
    has lost them: StoreError, since showing fewer epochs would be silently wrong."""
    group = _open_group(path, checked=False)  # the flags' absent chunks mean False
    committed = _array(group, f"{schema.EPOCHS}/committed", path)[:]
    slots = np.flatnonzero(committed)
    epochs = _array(group, f"{schema.EPOCHS}/epoch", path)[:][slots]
    if (epochs < 0).any():  # the fill value -1: a committed epoch's number is missing
        slot = int(slots[np.flatnonzero(epochs < 0)[0]])
        raise StoreError(f"{path}: {schema.EPOCHS}/epoch chunk ({slot},) of committed slot {slot} "
                         f"is missing (damage, not fill): run `python -m stores validate {path}`, "
                         f"then `python -m stores repair {path}` and resume the capture")
    if group.attrs.get("status") == schema.STATUS_COMPLETE:
        lost = schema.lost_commits(committed, list(group.attrs.get("schedule", [])), epochs)
        if lost:
            raise StoreError(f"{path}: marked complete but epoch(s) {', '.join(map(str, lost))} "
                             f"are not committed (lost commit flags or an interrupted repair): "
                             f"run `python -m stores repair {path}`")
    order = np.argsort(epochs, kind="stable")
    return slots[order], epochs[order]


def sample_table(path: str) -> dict[str, np.ndarray]:
    """The probe set's per-sample arrays (small), as NumPy."""
    group = _open_group(path)[schema.SAMPLES]
    table = {name: group[name][:] for name in schema.SAMPLE_FIELDS}
    table["split"] = np.array(table["split"].tolist(), dtype=str)  # StringDType -> <U
    return table


def slab(path: str, layer: str, slot: int) -> np.ndarray:
    """One epoch slot of one layer's activations, (sample, unit), read once."""
    group = _open_group(path)
    return group[f"{schema.ACTIVATIONS}/{layer}/{schema.VALUES}"][slot]


def weight_slab(path: str, param: str, slot: int) -> np.ndarray:
    """One epoch slot of one parameter (float32)."""
    group = _open_group(path)
    return group[f"{schema.WEIGHTS}/{param}/{schema.VALUES}"][slot]


def weight_slabs(path: str, param: str, slots) -> np.ndarray:
    """Several epoch slots of one parameter, stacked along a leading axis (one open)."""
    array = _open_group(path)[f"{schema.WEIGHTS}/{param}/{schema.VALUES}"]
    return np.stack([array[int(slot)] for slot in slots])


def layer_attrs(path: str, layer: str) -> dict:
    """A capture point's attributes: reduction, original_shape, penultimate, ..."""
    return node_attrs(path, f"{schema.ACTIVATIONS}/{layer}")


def node_attrs(path: str, node: str) -> dict:
    """The attributes of one group of a store (`analysis/edit`, ...); {} if it is absent."""
    group = _open_group(path)
    return dict(group[node].attrs) if node in group else {}


def run_attrs(path: str) -> dict:
    """The root attributes: schema version, config, its hash, params, status, ..."""
    return dict(_open_group(path).attrs)


def open_run(path: str) -> xr.DataTree:
    """The run as a lazy DataTree with committed epochs only.

    The root holds the `epoch` coordinate (inherited by every node); nodes with a
    `sample` dim carry the sample coordinates `sample` (0..n-1), `split`,
    `label_true`, `label_observed` and `corrupted`.
    """
    group = _open_group(path, checked=False)  # clear errors for a missing or foreign store
    # A finished store has consolidated metadata; a running one is read without it.
    consolidated = group.metadata.consolidated_metadata is not None
    slots, epochs = committed_slots(path)
    # Through a CheckedStore that knows the committed slots: a chunk of one of them that
    # is absent raises when it is read (lazily) instead of reading as NaN.
    where = group.store_path
    store = CheckedStore(where.store, path, where.path, frozenset(int(s) for s in slots))
    raw = xr.open_datatree(store, engine="zarr", chunks={}, consolidated=consolidated,
                           zarr_format=3, **({"group": where.path} if where.path else {}))
    table = sample_table(path)
    sample_coords = {name: ("sample", values) for name, values in table.items() if name != "index"}
    sample_coords["sample"] = np.arange(len(table["split"]))
    root = xr.Dataset(coords={"epoch": epochs}, attrs=raw.attrs)
    nodes: dict[str, xr.Dataset] = {"/": root}
    for node in raw.subtree:
        if node.path == "/" or node.path.split("/")[1] == schema.STATE:
            continue  # the training state is for resuming a capture, not for reading
        ds = node.to_dataset(inherit=False)
        if "epoch" in ds.dims and "epoch" in ds.coords:
            ds = ds.reindex(epoch=epochs)  # analysis results carry the epochs they cover
        elif "epoch" in ds.dims:
            ds = ds.isel(epoch=slots)  # captured arrays are indexed by slot
        ds = ds.drop_vars([c for c in ("epoch", "sample") if c in ds.coords])
        if "sample" in ds.dims and node.path != f"/{schema.SAMPLES}":
            ds = ds.assign_coords(sample_coords)
        nodes[node.path] = ds
    return xr.DataTree.from_dict(nodes)


def _as_tree(run: xr.DataTree | str) -> xr.DataTree:
    return open_run(run) if isinstance(run, str) else run


def layers(run: xr.DataTree | str) -> list[str]:
    """Capture point names, in forward order."""
    if isinstance(run, str):
        return list(_open_group(run)[schema.ACTIVATIONS].attrs["order"])
    return list(run[schema.ACTIVATIONS].attrs.get("order", run[schema.ACTIVATIONS].children))


def penultimate_layer(run: xr.DataTree | str) -> str:
    """The capture point that feeds the final linear layer."""
    if isinstance(run, str):
        group = _open_group(run)[schema.ACTIVATIONS]
        marked = [name for name, node in group.groups() if node.attrs.get("penultimate")]
    else:
        marked = [n for n, node in run[schema.ACTIVATIONS].children.items()
                  if node.attrs.get("penultimate")]
    if not marked:
        raise StoreError("store has no capture point marked penultimate")
    return marked[0]


def param_names(path: str) -> list[str]:
    """Names of the stored parameters and buffers (`fc1.weight`, ...), sorted."""
    return sorted(name for name, _ in _open_group(path)[schema.WEIGHTS].groups())


def activations(run: xr.DataTree | str, layer: str) -> xr.DataArray:
    """A layer's activations, (epoch, sample, unit), lazy, with sample coordinates."""
    tree = _as_tree(run)
    names = layers(tree)
    if layer not in names:
        raise StoreError(f"layer: expected one of {', '.join(names)}, got {layer!r}")
    node = tree[f"{schema.ACTIVATIONS}/{layer}"]
    array = node[schema.VALUES].rename(layer)
    array.attrs.update(node.attrs)
    return array


def metrics(run: xr.DataTree | str) -> xr.Dataset:
    """The model's own losses and accuracies per committed epoch."""
    return _as_tree(run)[schema.METRICS].to_dataset()


def weights(run: xr.DataTree | str, param: str | None = None) -> xr.DataArray | dict:
    """One parameter over epochs, or all of them as a dict name -> DataArray."""
    tree = _as_tree(run)
    group = tree[schema.WEIGHTS]
    if param is None:
        return {name: node[schema.VALUES].rename(name) for name, node in group.children.items()}
    if param not in group.children:
        raise StoreError(f"param: expected one of {', '.join(group.children)}, got {param!r}")
    return group[f"{param}/{schema.VALUES}"].rename(param)
