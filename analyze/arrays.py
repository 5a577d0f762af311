"""The probes over any activations DataArray: `fit_probes`.

The pipeline's tasks read one (run, epoch, layer) slab from a store; `fit_probes` takes
the arrays instead, as `stores.activations` or `stores.open_runs` give them (or as
anyone builds them): every index of the dims other than `sample` and `unit` is one slab,
fitted and scored by the tasks' own code (`analyze.tasks.score_probes`), so the two
cannot disagree. Over a Dask-backed array the fits are lazy, one per block of slabs.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterable

import numpy as np
import xarray as xr
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from stores.config import AnalysisConfig, replace_checked

from .samples import SCORES, Samples
from .tasks import BLAS_THREADS, score_probes

CORE_DIMS = ("sample", "unit")  # one slab: the probe set's rows and the layer's units
NEW_DIMS = ("probe", "score")  # what a slab's accuracies are indexed by
# A slab is fitted on BLAS_THREADS BLAS threads, as a task is, so every path gives the same
# numbers. The limit is process-wide and limits set and restored from several threads at
# once restore each other's out of order (leaving BLAS at one thread afterwards): the
# threads of a Dask scheduler fit one slab at a time. Parallel slabs come from processes
# (a dask.distributed cluster of single-threaded workers, as `python -m analyze` runs).
ONE_SLAB_AT_A_TIME = threading.Lock()


def fit_probes(activations: xr.DataArray, *, labels: str = "label_observed",
               truth: str | None = "label_true", split: str = "split",
               probes: str | Iterable[str] | None = None,
               config: AnalysisConfig | None = None) -> xr.DataArray:
    """Fit the probes on every slab of an activations array and score them.

    Parameters
    ----------
    activations : xarray.DataArray
        Dims `sample` and `unit` plus any leading ones (`epoch`, `run`, `layer`, ...),
        e.g. `stores.activations(run, layer)` or a node of `stores.open_runs`. Every
        index of the leading dims is one slab, read as float32 (as the tasks read it).
        A slab holding NaN (an epoch a run of `open_runs` did not capture) scores NaN.
    labels : str
        The coordinate (along `sample`, possibly also along leading dims) of the
        integer labels the probes learn: the observed, possibly corrupted, ones.
    truth : str or None
        The coordinate of the true labels: MASC's subspaces of the `masc_true` probe,
        and what the `*_true`, `test` and `unflipped` scores compare against. None: the
        `labels` are the true ones too (no sample is flipped).
    split : str
        The coordinate of each sample's split: the probes learn the rows whose split is
        "train"; `test` scores the rows whose split is "test".
    probes : str or iterable of str, optional
        Names from `stores.config.PROBES`, in the order the result lists them. Default:
        the probes of `config`.
    config : AnalysisConfig, optional
        MASC's n (its primary one), k-NN's k, the spectral method and device, and the
        default probes. Default: ``AnalysisConfig()`` (every probe).

    Returns
    -------
    xarray.DataArray
        `accuracy`, dims (*leading, probe, score) with `probe` and `score` coordinates
        (`analyze.samples.SCORES`; NaN where a score has no rows); the leading dims' own
        coordinates kept. Dask-backed (nothing computed yet) when `activations` is.

    Raises
    ------
    ValueError
        A missing `sample` or `unit` dim, a `labels`, `truth` or `split` name that is
        not a coordinate along `sample`, labels that are not integers, no training row.
    stores.ConfigError
        A probe name not in `stores.config.PROBES` (the message lists them).

    Notes
    -----
    Each slab is fitted on one BLAS thread, one slab at a time per process, as the
    pipeline's tasks are (so eager, threaded and distributed results are the same
    numbers); slabs run in parallel on the processes of a `dask.distributed` cluster.
    """
    settings = _settings(probes, config)
    _check_dims(activations)
    found = [_coordinate(activations, role, name)
             for role, name in (("labels", labels), ("truth", truth or labels), ("split", split))]
    return _apply(activations, found, settings)


def _apply(activations: xr.DataArray, found: list[xr.Variable], settings: AnalysisConfig) -> xr.DataArray:
    """`_slab_accuracy` over every slab: one Dask task per block of slabs where the array
    is Dask-backed (its labels may be too), at once otherwise."""
    x = activations.transpose(..., *CORE_DIMS)
    if activations.chunks is not None:  # a slab is one block: whole along sample and unit
        x = x.chunk(dict.fromkeys(CORE_DIMS, -1))
    else:
        found = [variable.compute() for variable in found]
    accuracy = xr.apply_ufunc(
        _slab_accuracy, x, *found, kwargs={"settings": settings},
        input_core_dims=[list(CORE_DIMS), ["sample"], ["sample"], ["sample"]],
        output_core_dims=[list(NEW_DIMS)], vectorize=True, dask="parallelized",
        output_dtypes=[np.float64], keep_attrs=False,
        dask_gufunc_kwargs={"output_sizes": {"probe": len(settings.probes), "score": len(SCORES)}})
    return accuracy.assign_coords(probe=list(settings.probes), score=list(SCORES)).rename("accuracy")


def _settings(probes, config: AnalysisConfig | None) -> AnalysisConfig:
    """`config` (default AnalysisConfig()) with `probes` in place of its own, checked as
    a config file's `analysis.probes` is."""
    config = AnalysisConfig() if config is None else config
    if probes is None:
        return config
    names = (probes,) if isinstance(probes, str) else tuple(dict.fromkeys(probes))
    return replace_checked(config, "fit_probes", probes=names)


def _check_dims(activations: xr.DataArray) -> None:
    if not isinstance(activations, xr.DataArray):
        raise ValueError(f"activations: expected an xarray.DataArray, got {type(activations).__name__}")
    dims = ", ".join(map(str, activations.dims)) or "none"
    if not set(CORE_DIMS) <= set(activations.dims):
        raise ValueError(f"activations: expected dims 'sample' and 'unit' (and any leading ones), "
                         f"got dims ({dims})")
    if set(NEW_DIMS) & set(activations.dims):
        raise ValueError(f"activations: expected no dim named 'probe' or 'score' (the result's), "
                         f"got dims ({dims})")


def _coordinate(activations: xr.DataArray, role: str, name: str) -> xr.Variable:
    """The coordinate `name` of the activations along `sample`, checked for its role."""
    along = [str(c) for c, v in activations.coords.items() if "sample" in v.dims and c != "sample"]
    if name not in along:
        raise ValueError(f"{role}: expected a coordinate of the activations along 'sample' "
                         f"(one of {', '.join(along) or 'none'}), got {name!r}")
    variable = activations.coords[name].variable
    if role != "split" and variable.dtype.kind not in "iub":
        raise ValueError(f"{role}: expected integer class labels in {name!r}, got dtype {variable.dtype}")
    if role == "split" and isinstance(variable.data, np.ndarray) and not (variable.data == "train").any():
        values = ", ".join(map(str, np.unique(variable.data)))
        raise ValueError(f"split: expected rows whose {name!r} is 'train' to fit on, got values {values}")
    return variable


def _slab_accuracy(x: np.ndarray, observed: np.ndarray, true: np.ndarray, split: np.ndarray, *,
                   settings: AnalysisConfig) -> np.ndarray:
    """(probe, score) accuracies of one (sample, unit) slab, computed as a task does."""
    x = np.asarray(x).astype(np.float32)
    if np.isnan(x).any():
        return np.full((len(settings.probes), len(SCORES)), np.nan)
    samples = Samples.of({"label_observed": np.asarray(observed), "label_true": np.asarray(true),
                          "split": np.asarray(split)})
    with ONE_SLAB_AT_A_TIME, threadpool_limits(BLAS_THREADS):
        scored = score_probes(x, samples, settings)
    if scored.not_converged:  # scored as fitted, as the tasks do (a warning filter shows it once)
        warnings.warn(f"fit_probes: {', '.join(scored.not_converged)} stopped at the solver's "
                      "iteration limit; scored as fitted", ConvergenceWarning, stacklevel=2)
    return np.array([[scored.found[name].scores[score] for score in SCORES] for name in settings.probes])
