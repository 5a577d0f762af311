"""What the report's modules share: the groups of runs that differ only in their seed,
each run's final analysed epoch, table cells, a figure's legend, and writing a figure
or a file whole.

Everything reads the `results` Dataset of `stores.analysis_results` (a `run`
MultiIndex over the swept parameters).
"""

from __future__ import annotations

import contextlib
import os

import matplotlib

matplotlib.use("Agg")  # files only; no display on batch nodes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from stores import StoreError, location  # noqa: E402

REPLICATE = "seed"  # the level that groups average over


# ------------------------------------------------------------------------- groups
def groups(results: xr.Dataset) -> list[tuple[str, np.ndarray]]:
    """The groups of runs that differ only in their seed.

    Parameters
    ----------
    results : xarray.Dataset
        Analysis results with a `run` MultiIndex.

    Returns
    -------
    list of (str, numpy.ndarray)
        (label, e.g. "corruption = 0.6", and the positions of its runs on `run`), sorted
        by the swept values; one group "all runs" when only the seed is swept.
    """
    index = results.indexes["run"]
    levels = [name for name in index.names if name != REPLICATE]
    if not levels:
        return [("all runs", np.arange(len(index)))]
    keys = [tuple(row) for row in index.to_frame(index=False)[levels].itertuples(index=False)]
    return [(", ".join(f"{name} = {value}" for name, value in zip(levels, key)),
             np.array([i for i, k in enumerate(keys) if k == key]))
            for key in sorted(set(keys))]


def n_seeds(positions: np.ndarray) -> str:
    """"1 seed", "3 seeds": how many runs a group has."""
    return f"{len(positions)} seed{'s' if len(positions) > 1 else ''}"


def analysed(results: xr.Dataset) -> xr.DataArray:
    """The epochs of each run that have both the model's metrics and probe results.

    Runs stop at different epochs (an epoch a run did not reach is NaN in the shared
    axis), and a run still being captured may have committed epochs that this analysis
    has not computed yet (committed after its tasks were planned).

    Parameters
    ----------
    results : xarray.Dataset
        Analysis results with `accuracy` and `model_test_acc`.

    Returns
    -------
    xarray.DataArray
        bool (run, epoch).
    """
    probed = results["accuracy"].notnull().any([d for d in results["accuracy"].dims
                                                 if d not in ("run", "epoch")])
    if "model_test_acc" not in results:  # stores whose model reported no test_acc
        return probed.transpose("run", "epoch")
    return (results["model_test_acc"].notnull() & probed).transpose("run", "epoch")


def last_epochs(results: xr.Dataset) -> xr.DataArray:
    """Each run's final analysed epoch (its last committed one once it is analysed).

    Parameters
    ----------
    results : xarray.Dataset
        Analysis results.

    Returns
    -------
    xarray.DataArray
        (run,) epochs.
    """
    reached = analysed(results).values
    return xr.DataArray([results.epoch.values[np.flatnonzero(row)[-1]] for row in reached], dims="run")


def final(results: xr.Dataset, values: xr.DataArray) -> xr.DataArray:
    """Each run's value at its own final analysed epoch.

    Parameters
    ----------
    results : xarray.Dataset
        The analysis results `values` belongs to.
    values : xarray.DataArray
        Values with `run` and `epoch` dims.

    Returns
    -------
    xarray.DataArray
        `values` without its `epoch` dim.
    """
    return values.sel(epoch=last_epochs(results))


def mean_std(values: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """The mean and the standard deviation (ddof 0) over `run`, skipping NaN.

    Parameters
    ----------
    values : xarray.DataArray
        Values with a `run` dim.

    Returns
    -------
    tuple of (xarray.DataArray, xarray.DataArray)
        (mean, std).
    """
    return values.mean("run", skipna=True), values.std("run", skipna=True, ddof=0)


def best_layer(group: xr.Dataset, probe: str) -> str:
    """The probe's best layer for one group of runs, as the published tables choose it.

    The highest mean over the seeds of the test accuracy at each run's final epoch (ties
    to the earlier layer).

    Parameters
    ----------
    group : xarray.Dataset
        The analysis results of one group's runs.
    probe : str
        A probe name.

    Returns
    -------
    str
        The layer name.
    """
    at_end = final(group, group["accuracy"].sel(probe=probe, score="test"))
    # (no test split, as in a recorder's all-train probe set: all NaN, the first layer)
    return str(at_end.mean("run").fillna(-np.inf).idxmax("layer").values)


# ------------------------------------------------------------------------- cells
def summary_cell(value: tuple, n: int) -> str:
    """A summary table's cell: "mean ± std (layer)".

    Parameters
    ----------
    value : tuple
        (mean, std) or (mean, std, layer).
    n : int
        The group's seeds: the ± term only over two or more.

    Returns
    -------
    str
    """
    text = f"{value[0]:.1f}" + (f" ± {value[1]:.1f}" if n > 1 else "")
    return text + (f" ({value[2]})" if len(value) > 2 else "")


def pct(value) -> str:
    """A percentage with one decimal, "—" for None or a non-finite value."""
    return "—" if value is None or not np.isfinite(value) else f"{value:.1f}"


# ------------------------------------------------------------------------- files
def legend_below(fig, axes) -> None:
    """One legend for all panels, below them, wrapped into as many lines as it needs.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure, laid out again to leave room for the legend.
    axes : numpy.ndarray of matplotlib.axes.Axes
        Its panels; each label appears once.
    """
    handles, labels = [], []
    for ax in axes.flat:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    ncol = min(len(labels), max(3, int(fig.get_figwidth() // 2.2)))  # wrap a long legend
    lines = -(-len(labels) // ncol)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, frameon=False)
    fig.tight_layout(rect=(0, min(0.4, (0.1 + 0.27 * lines) / fig.get_figheight()), 1, 1))


def save_figure(fig, path: str, **savefig) -> str:
    """Write a figure as PNG to a path or URL, and free it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure; closed afterwards.
    path : str
        Where the PNG goes (`replacing`: whole or not at all).
    **savefig
        More arguments of `Figure.savefig`.

    Returns
    -------
    str
        `path`.
    """
    try:
        with replacing(path, "wb") as f:
            fig.savefig(f, format="png", dpi=110, **savefig)
    finally:
        plt.close(fig)
    return path


@contextlib.contextmanager
def replacing(path: str, mode: str = "w"):
    """A file object whose content replaces `path` only once it is whole.

    Written to `PATH.partial-<pid>`, then renamed over `path` (one atomic rename on a
    local file system; a move on an object store), so a reader or a kill never finds
    half a report.

    Parameters
    ----------
    path : str
        A path or URL.
    mode : str, default "w"
        "w" for text, "wb" for bytes.

    Yields
    ------
    file object

    Raises
    ------
    stores.StoreError
        When the file cannot be written.
    """
    partial = f"{path}.partial-{os.getpid()}"
    try:
        with location.open_file(partial, mode) as f:
            yield f
        location.move(partial, path)
    except BaseException as err:
        location.remove(partial)
        if isinstance(err, OSError):
            raise StoreError(f"cannot write {path} ({location.os_reason(err)}); "
                             "the stores' analysis results are written: free space or make "
                             "the folder writable, then run the analysis again") from err
        raise
