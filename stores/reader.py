"""Read run stores as xarray objects, showing committed epochs only.

`open_run` gives the whole run as a lazy `xarray.DataTree`; the functions below it give
the pieces people ask for most (a layer's activations, the metrics, the weights) with
the sample coordinates attached, and the attributes of the run and its nodes. (The
narrow, eager NumPy reads that analysis tasks use are `stores.slabs`.)
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from . import schema
from .chunkio import CheckedStore
from .errors import StoreError
from .groups import open_group
from .slabs import committed_slots, sample_table


def layer_attrs(path: str, layer: str) -> dict:
    """A capture point's attributes.

    Parameters
    ----------
    path : str
        The store holding the capture point.
    layer : str
        The capture point.

    Returns
    -------
    dict
        `reduction`, `original_shape`, `penultimate` (and `projection_seed`).
    """
    return node_attrs(path, f"{schema.ACTIVATIONS}/{layer}")


def node_attrs(path: str, node: str) -> dict:
    """The attributes of one group of a store.

    Parameters
    ----------
    path : str
        The store whose group to read.
    node : str
        The group's path in the store (`schema.EDIT`, `activations/fc1`).

    Returns
    -------
    dict
        Its attributes; {} if the group is absent.
    """
    group = open_group(path)
    return dict(group[node].attrs) if node in group else {}


def run_attrs(path: str) -> dict:
    """The root attributes of a store.

    Parameters
    ----------
    path : str
        The store whose root to read.

    Returns
    -------
    dict
        `schema_version`, `config` and `config_hash`, `params`, `schedule`, `status`, ...
    """
    return dict(open_group(path).attrs)


def open_run(path: str) -> xr.DataTree:
    """A run as a lazy DataTree, with its committed epochs only.

    Parameters
    ----------
    path : str
        The store (a local path or an fsspec URL).

    Returns
    -------
    xarray.DataTree
        Nodes as in the store (`activations/<layer>`, `weights/<param>`, `metrics`,
        `analysis/<name>`, ...; not the training state). The root holds the `epoch`
        coordinate, inherited by every node; nodes with a `sample` dim carry the
        coordinates `sample` (0..n-1), `split`, `label_true`, `label_observed` and
        `corrupted`.
    """
    group = open_group(path, checked=False)  # clear errors for a missing or foreign store
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
        captured = node.path.split("/")[1] in schema.CAPTURED
        if "epoch" in ds.dims and (captured or "epoch" not in ds.coords):
            ds = ds.isel(epoch=slots)  # captured arrays are indexed by slot
        elif "epoch" in ds.dims:
            ds = ds.reindex(epoch=epochs)  # analysis results carry the epochs they cover
        # The store's own coordinates (schema version 2) give way to the committed ones.
        ds = ds.drop_vars([c for c in ("epoch", "sample", *(schema.SAMPLE_COORDS if captured else ()))
                           if c in ds.coords])
        if "sample" in ds.dims and node.path != f"/{schema.SAMPLES}":
            ds = ds.assign_coords(sample_coords)
        nodes[node.path] = ds
    return xr.DataTree.from_dict(nodes)


def _as_tree(run: xr.DataTree | str) -> xr.DataTree:
    return open_run(run) if isinstance(run, str) else run


def layers(run: xr.DataTree | str) -> list[str]:
    """The capture points of a run.

    Parameters
    ----------
    run : xarray.DataTree or str
        A tree from `open_run`, or a store.

    Returns
    -------
    list of str
        Capture point names, in forward order.
    """
    if isinstance(run, str):
        return list(open_group(run)[schema.ACTIVATIONS].attrs["order"])
    return list(run[schema.ACTIVATIONS].attrs.get("order", run[schema.ACTIVATIONS].children))


def penultimate_layer(run: xr.DataTree | str) -> str:
    """The capture point that feeds the final linear layer.

    Parameters
    ----------
    run : xarray.DataTree or str
        The run: an `open_run` tree, or the path of its store.

    Returns
    -------
    str
        Its name.
    """
    if isinstance(run, str):
        group = open_group(run)[schema.ACTIVATIONS]
        marked = [name for name, node in group.groups() if node.attrs.get("penultimate")]
    else:
        marked = [n for n, node in run[schema.ACTIVATIONS].children.items()
                  if node.attrs.get("penultimate")]
    if not marked:
        raise StoreError("store has no capture point marked penultimate")
    return marked[0]


def param_names(path: str) -> list[str]:
    """The stored parameters and buffers of a run.

    Parameters
    ----------
    path : str
        The store whose weights to list.

    Returns
    -------
    list of str
        Their names (`fc1.weight`, `bn.running_var`), sorted.
    """
    return sorted(name for name, _ in open_group(path)[schema.WEIGHTS].groups())


def activations(run: xr.DataTree | str, layer: str) -> xr.DataArray:
    """A capture point's activations.

    Parameters
    ----------
    run : xarray.DataTree or str
        An `open_run` tree, or a store to open.
    layer : str
        The capture point.

    Returns
    -------
    xarray.DataArray
        (epoch, sample, unit), lazy, named `layer`, with the sample coordinates and
        the capture point's attributes.
    """
    tree = _as_tree(run)
    names = layers(tree)
    if layer not in names:
        raise StoreError(f"layer: expected one of {', '.join(names)}, got {layer!r}")
    node = tree[f"{schema.ACTIVATIONS}/{layer}"]
    array = node[schema.VALUES].rename(layer)
    array.attrs.update(node.attrs)
    return array


def metrics(run: xr.DataTree | str) -> xr.Dataset:
    """The model's own losses and accuracies, and any other metric the store holds.

    Parameters
    ----------
    run : xarray.DataTree or str
        The run's tree (`open_run`) or its store.

    Returns
    -------
    xarray.Dataset
        Every metric of the store (a pipeline's: `schema.METRIC_NAMES`; a recorder's:
        whatever names it reported), each (epoch,), per committed epoch; NaN at the
        epochs before a metric was first reported.
    """
    return _as_tree(run)[schema.METRICS].to_dataset()


def weights(run: xr.DataTree | str, param: str | None = None) -> xr.DataArray | dict:
    """A run's weights over epochs.

    Parameters
    ----------
    run : xarray.DataTree or str
        A run as `open_run` gives it, or its store.
    param : str, optional
        One parameter (`fc1.weight`); None: all of them.

    Returns
    -------
    xarray.DataArray or dict of str to xarray.DataArray
        (epoch, out, in, ...) named `param`, or every parameter by name.
    """
    tree = _as_tree(run)
    group = tree[schema.WEIGHTS]
    if param is None:
        return {name: node[schema.VALUES].rename(name) for name, node in group.children.items()}
    if param not in group.children:
        raise StoreError(f"param: expected one of {', '.join(group.children)}, got {param!r}")
    return group[f"{param}/{schema.VALUES}"].rename(param)
