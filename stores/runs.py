"""Many runs as one xarray object: `open_runs` stacks run stores along a `run` dimension
whose index is a MultiIndex over the swept parameters, so that

    runs = stores.open_runs("runs/quickstart")
    runs.runs.sel(corruption=0.6)                # every node, the 0.6 runs only
    runs["metrics"]["test_acc"].sel(seed=0)      # (run, epoch)

work, with activations, metrics, weights and analysis results aligned on `epoch` (the
union of the runs' committed epochs; an epoch a run did not capture is NaN there).
`analysis_results` and `analysis_table` give a pipeline's probe accuracies as one
Dataset (probe × layer × epoch × score × run) and one tidy pandas table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import xarray as xr

from . import location, schema
from .catalog import list_runs
from .errors import StoreError
from .reader import node_attrs, open_run, run_attrs
from .schema import CROSS, DYNAMICS, EDIT, MASC_N


def run_paths(source: str | Path | Iterable[str | Path]) -> list[str]:
    """The stores a source names.

    Parameters
    ----------
    source : str, Path or iterable of them
        A folder or URL (every store under it), one store (`*.zarr`), or a list of stores.

    Returns
    -------
    list of str
        Their normalized paths.
    """
    if isinstance(source, (str, Path)):
        if str(source).rstrip("/").endswith(".zarr"):
            return [location.normalize(source)]
        paths = list_runs(source)
    else:
        paths = [location.normalize(p) for p in source]
    if not paths:
        raise StoreError(f"no run stores under {source}")
    return paths


def run_index(paths: list[str]) -> pd.MultiIndex:
    """The `run` index of some stores.

    Parameters
    ----------
    paths : list of str
        The stores.

    Returns
    -------
    pandas.MultiIndex
        One entry per store: its swept parameters (plus `pipeline` when several
        pipelines are mixed; `index` by position for runs without a sweep; `store`, the
        store's name without `.zarr`, for stores no pipeline wrote, which have no
        `params`: a recorder's).
    """
    rows = []
    for path in paths:
        attrs = run_attrs(path)
        row = {"pipeline": attrs.get("pipeline", "?"), **attrs.get("params", {})}
        if "params" not in attrs:
            row["store"] = store_name(path)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame["pipeline"].nunique() == 1:
        frame = frame.drop(columns="pipeline")
    if frame.shape[1] == 0:  # runs of a pipeline without a sweep: name them by position
        frame["index"] = range(len(paths))
    if frame.duplicated().any():
        dup = frame[frame.duplicated(keep=False)].iloc[0].to_dict()
        raise StoreError(f"two stores have the same swept parameters {dup}: pass distinct runs")
    return pd.MultiIndex.from_frame(frame)


def store_name(path: str) -> str:
    """A store's name in its folder, without `.zarr` (`corruption=0.6,seed=0`).

    Parameters
    ----------
    path : str
        The store.

    Returns
    -------
    str
    """
    name = location.name(path)
    return name[: -len(".zarr")] if name.endswith(".zarr") else name


def _stack(datasets: list[xr.Dataset], index: pd.MultiIndex, positions: list[int]) -> xr.Dataset:
    """Concatenate one node's datasets along `run` (outer join on epoch and sample); a
    per-sample coordinate that differs between runs (the observed labels) gains `run`."""
    fill = {name: _missing(var.dtype) for ds in datasets for name, var in ds.variables.items()}
    stacked = xr.concat(datasets, dim="run", join="outer", coords="different", compat="equals",
                        combine_attrs="drop_conflicts", fill_value=fill)
    return stacked.drop_vars([c for c in ("run",) if c in stacked.coords]).assign_coords(
        xr.Coordinates.from_pandas_multiindex(index[positions], "run"))


@xr.register_datatree_accessor("runs")
class RunsAccessor:
    """`tree.runs` of a DataTree from `open_runs`: the run selection.

    Parameters
    ----------
    tree : xarray.DataTree
        A tree with a `run` dimension (indexed by the swept parameters) at its root.
    """

    def __init__(self, tree: xr.DataTree):
        self._tree = tree

    def sel(self, indexers=None, method=None, tolerance=None, drop=False, **indexers_kwargs) -> xr.DataTree:
        """`DataTree.sel` that also takes the levels of the `run` MultiIndex by name.

        `tree.runs.sel(corruption=0.6)` keeps, on every node, the runs whose `corruption`
        is 0.6; the `run` dimension and all its levels stay.

        Parameters
        ----------
        indexers : dict, optional
            Level or dim name -> a value or a list of values (as `**indexers_kwargs`).
        method, tolerance, drop
            As `xarray.DataTree.sel`'s, for the other dims.

        Returns
        -------
        xarray.DataTree

        Raises
        ------
        KeyError
            When no run has the given level values.
        """
        indexers = dict(indexers or {}, **indexers_kwargs)
        tree = self._tree
        index = tree.xindexes["run"].index if "run" in tree.xindexes else pd.MultiIndex.from_tuples([])
        by_level = {name: indexers.pop(name) for name in list(indexers) if name in index.names}
        if by_level:
            keep = np.ones(len(index), dtype=bool)
            for name, value in by_level.items():
                wanted = value if isinstance(value, (list, tuple, np.ndarray)) else [value]
                keep &= index.get_level_values(name).isin(wanted)
            if not keep.any():
                raise KeyError(f"no run with {by_level}; runs have {index.names}: {list(index)}")
            tree = _from_datasets({node.path: node.to_dataset(inherit=True).isel(run=keep)
                                   for node in tree.subtree})
        if not indexers:
            return tree
        return xr.DataTree.sel(tree, indexers, method=method, tolerance=tolerance, drop=drop)


def _missing(dtype: np.dtype):
    """What an epoch or sample a run lacks reads as: NaN, or -1 / False for integers and
    flags (so that `masc_k` and `committed` keep their dtypes)."""
    if dtype.kind in "iu":
        return -1
    if dtype.kind == "b":
        return False
    return np.nan


def _blank(template: xr.Dataset) -> xr.Dataset:
    """`template`'s layout with every variable missing (`_missing`), lazily."""
    return template.assign({name: xr.full_like(var, _missing(var.dtype))
                            for name, var in template.data_vars.items()})


def open_runs(source: str | Path | Iterable[str | Path]) -> xr.DataTree:
    """Many runs as one lazy DataTree with a `run` dimension.

    Parameters
    ----------
    source : str, Path or iterable of them
        A pipeline's folder (or URL): every store under it; one store; or a list of
        stores.

    Returns
    -------
    xarray.DataTree
        Nodes with the same paths as `open_run`'s, stacked along `run` (a MultiIndex
        over the swept parameters, with `run_name` beside it) and aligned on `epoch`
        (the union of the runs' committed epochs: NaN where a run has none). Select
        runs by parameter with `tree.runs.sel(corruption=0.6)` (`RunsAccessor`).
    """
    paths = run_paths(source)
    index = run_index(paths)
    trees = [open_run(p) for p in paths]
    nodes: dict[str, xr.Dataset] = {}
    for node_path in dict.fromkeys(n.path for t in trees for n in t.subtree):
        present = {i: trees[i][node_path].to_dataset(inherit=True)
                   for i, t in enumerate(trees) if _has(t, node_path)}
        # a node some runs lack (a layer, an analysis group) reads as missing values there
        template = next(iter(present.values()))
        datasets = [present[i] if i in present else _blank(template) for i in range(len(trees))]
        nodes[node_path] = _stack(datasets, index, list(range(len(trees))))
    epochs = nodes["/"].indexes.get("epoch")
    for node_path, ds in nodes.items():  # a node only some runs have: on every epoch too
        if epochs is not None and "epoch" in ds.dims and not ds.indexes["epoch"].equals(epochs):
            nodes[node_path] = ds.reindex(epoch=epochs, fill_value={
                name: _missing(var.dtype) for name, var in ds.data_vars.items()})
    names = [run_attrs(p).get("run_name", store_name(p)) for p in paths]
    # Only indexed coordinates are inherited in a DataTree: each node gets the run names.
    return _from_datasets({path: ds.assign_coords(run_name=("run", names)) for path, ds in nodes.items()})


def _from_datasets(nodes: dict[str, xr.Dataset]) -> xr.DataTree:
    """A tree from full (inherited-coordinates-included) node datasets: the root keeps
    `run` and `epoch`, which the other nodes inherit from it. (Built node by node because
    xarray's own DataTree.isel cannot drop a row of an inherited MultiIndex.)"""
    shared = list(nodes["/"].xindexes)  # run, its levels and epoch
    return xr.DataTree.from_dict({path: ds if path == "/" else ds.drop_vars(shared, errors="ignore")
                               for path, ds in nodes.items()})


def _has(tree: xr.DataTree, path: str) -> bool:
    try:
        tree[path]
    except KeyError:
        return False
    return True


def analysis_results(source: str | Path | Iterable[str | Path]) -> xr.Dataset:
    """A pipeline's analysis results in one Dataset, aligned on epoch.

    Parameters
    ----------
    source : str, Path or iterable of them
        As `open_runs` takes: a pipeline's folder, one store or a list of stores.

    Returns
    -------
    xarray.Dataset
        `accuracy` (probe, layer, epoch, score, run) and `class_accuracy` (probe, layer,
        epoch, class, run), `masc_k`; the edited (and the unedited) model's
        `edit_accuracy` (variant, epoch, score, run) and `edit_class_accuracy`; MASC's n
        ablation `masc_n_accuracy` (n, subspaces, layer, epoch, score, run) and the
        cross-run control `cross_accuracy` (labels_from, layer, epoch, score, run)
        where stored; the model's own metrics `model_*` (epoch, run). Computed.

    Raises
    ------
    StoreError
        When no store has analysis results yet.
    """
    tree = open_runs(source)
    if not _has(tree, DYNAMICS):
        raise StoreError(f"no analysis results in {source}: run `python -m analyze` first")
    parts, attrs = _analysis_parts(tree)
    out = xr.merge(parts, join="outer", compat="no_conflicts", combine_attrs="drop").assign_attrs(attrs)
    if "labels_from" in out.dims:  # which run's labels built each clean run's subspaces
        out = out.assign_coords(labels_from_run=(("run", "labels_from"), _label_sources(
            run_paths(source), out["labels_from"].values)))
    # Zarr's variable-length strings come back as NumPy's StringDType, which xarray's
    # idxmax/where cannot promote yet: labels become fixed-width unicode.
    labels = {name: np.array(out[name].values.tolist(), dtype=str)
              for name in ("probe", "layer", "score", "variant", "subspaces") if name in out.coords}
    return out.assign_coords(labels).compute()


def _analysis_parts(tree: xr.DataTree) -> tuple[list[xr.Dataset], dict]:
    """The datasets `analysis_results` merges (their variables renamed apart), and its
    attributes."""
    dynamics = tree[DYNAMICS].to_dataset()
    parts = [dynamics, tree[schema.METRICS].to_dataset().rename(
        {name: f"model_{name}" for name in tree[schema.METRICS].data_vars})]
    attrs = dict(dynamics.attrs)
    renames = {EDIT: "edit_", MASC_N: "masc_n_", CROSS: "cross_"}
    for node, prefix in renames.items():
        if not _has(tree, node):
            continue
        ds = tree[node].to_dataset()
        keep = [v for v in ("accuracy", "class_accuracy") if v in ds.data_vars]
        # one dataset's per-score and per-class sample counts stand for all (they are
        # the probe set's, the same in every group but cross, whose flipped rows are
        # the source run's: those keep their own name)
        drop = [c for c in ("score_samples", "class_samples") if c in ds.coords]
        part = ds[keep].rename({v: f"{prefix}{v}" for v in keep})
        if node == CROSS:
            part = part.assign_coords({f"cross_{c}": ds[c] for c in drop})
        parts.append(part.drop_vars(drop))
        if node == EDIT:
            attrs["edit_layer"] = ds.attrs.get("layer")
    return parts, attrs


def _label_sources(paths: list[str], rates: np.ndarray) -> np.ndarray:
    """(run, labels_from): the name of the run whose observed labels built each clean
    run's cross-run subspaces ("" where a run has none)."""
    out = np.full((len(paths), len(rates)), "", dtype=object)
    for i, path in enumerate(paths):
        attrs = node_attrs(path, CROSS)
        for rate, name in zip(attrs.get("labels_from_rates", []), attrs.get("labels_from_runs", [])):
            out[i, list(map(float, rates)).index(float(rate))] = name
    return out.astype(str)


def analysis_table(source: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """A pipeline's analysis results as one tidy table.

    Parameters
    ----------
    source : str, Path or iterable of them
        As `analysis_results` takes.

    Returns
    -------
    pandas.DataFrame
        One row per (run, probe, layer, epoch, score), and per class on the test split,
        with the swept parameters as columns (`TABLE_COLUMNS` after them); the edited
        model's variants appear as probes on the penultimate layer (the model itself as
        `unedited`), the n ablation as MASC rows with their `n`, and the cross-run
        control as `masc_cross` rows with `labels_from`.
    """
    return results_table(analysis_results(source))


TABLE_COLUMNS = ["probe", "n", "labels_from", "layer", "epoch", "score", "class", "accuracy"]


def results_table(results: xr.Dataset) -> pd.DataFrame:
    """`analysis_table` of results already read.

    Parameters
    ----------
    results : xarray.Dataset
        What `analysis_results` returns.

    Returns
    -------
    pandas.DataFrame
        As `analysis_table`'s.
    """
    index_names = list(results.indexes["run"].names)
    primary = results.attrs.get("masc_components")
    frames = [_rows(results["accuracy"]), _rows(results["class_accuracy"], score="test")
              if "class_accuracy" in results else None]
    edit_layer = results.attrs.get("edit_layer")
    for var, score in (("edit_accuracy", None), ("edit_class_accuracy", "test")):
        if var in results:
            frames.append(_rows(results[var], score=score).rename(columns={"variant": "probe"})
                          .assign(layer=edit_layer))
    if "masc_n_accuracy" in results:
        n = _rows(results["masc_n_accuracy"])
        n["probe"] = np.where(n.pop("subspaces") == "true", "masc_true", "masc")
        frames.append(n[n["n"] != primary])  # the primary n's rows are the probes' own
    for var, score in (("cross_accuracy", None), ("cross_class_accuracy", "test")):
        if var in results:
            frames.append(_rows(results[var], score=score).assign(probe="masc_cross"))
    table = pd.concat([f for f in frames if f is not None], ignore_index=True).dropna(subset=["accuracy"])
    for column in ("n", "labels_from", "class"):
        if column not in table:
            table[column] = np.nan
    table.loc[table["probe"].isin(["masc", "masc_true", "masc_cross"]) & table["n"].isna(), "n"] = primary
    table["class"] = table["class"].astype("Int64")
    columns = ["run_name", *index_names, *TABLE_COLUMNS]
    return table[columns].rename(columns={"run_name": "run"}).reset_index(drop=True)


def _rows(values: xr.DataArray, score: str | None = None) -> pd.DataFrame:
    """A result array as tidy rows named `accuracy` (per-class arrays: on `score`)."""
    frame = values.rename("accuracy").to_dataframe().reset_index()
    frame = frame[[c for c in frame.columns if c not in ("score_samples", "class_samples",
                                                            "cross_score_samples", "cross_class_samples")]]
    if score is not None:
        frame["score"] = score
    return frame
