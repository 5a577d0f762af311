"""One analysis task: one (run, epoch, layer) slab, every requested probe.

A task receives a path, never an array: it opens the store itself, reads its slab
once, fits the probes and returns small results. The same function runs eagerly or on
a Dask worker, so the two paths cannot disagree.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

import stores

from . import edit
from .probes import fit_spectral_probes, make_probe

SCORES = ("train_observed", "train_true", "test")


@dataclass(frozen=True)
class Task:
    store: str
    run: str
    slot: int
    epoch: int
    layer: str
    penultimate: bool = False
    head: str = "head"


@dataclass(frozen=True)
class ProbeSettings:
    probes: tuple[str, ...] = ("masc", "velpic", "ncm", "knn", "logreg")
    masc_components: float = 0.99
    knn_neighbors: int = 5
    # BLAS threads inside a task. One: parallelism comes from tasks, and a fixed thread
    # count keeps floating-point sums (so lbfgs paths) identical on every path.
    blas_threads: int | None = 1
    # MASC + VeLPIC: "fast" (float32 products, the same k per class as float64; see
    # analyze.spectral) or "exact" (float64 throughout); `device` runs the fast kernels
    # on torch there ("cuda"), None on NumPy.
    spectral: str = "fast"
    device: str | None = None


@dataclass
class TaskResult:
    task: Task
    accuracy: dict[str, dict[str, float]]  # probe -> score -> accuracy
    masc_k: np.ndarray | None = None  # components kept per class
    edit_accuracy: dict[str, dict[str, float]] | None = None  # variant -> score -> accuracy
    edit_weight: np.ndarray | None = None  # (n_classes, units)
    edit_predictions: np.ndarray | None = None  # zero-bias edited predictions, all samples
    not_converged: tuple[str, ...] = ()  # probes whose solver stopped at its iteration limit


def _scores(pred: np.ndarray, train: np.ndarray, y_obs: np.ndarray,
            y_true: np.ndarray) -> dict[str, float]:
    """Accuracies of probe-set predictions: train split against observed and true
    labels, test split against true labels."""
    mean = lambda a: float(np.mean(a)) if len(a) else float("nan")  # noqa: E731
    return {
        "train_observed": mean(pred[train] == y_obs[train]),
        "train_true": mean(pred[train] == y_true[train]),
        "test": mean(pred[~train] == y_true[~train]),
    }


def _fit_probe(name: str, x_train, y_train, settings: ProbeSettings, spectral):
    """(fitted probe, whether its solver converged). A solver that stops at its
    iteration limit (logreg's lbfgs) is not an error: the fit is scored as it is, and the
    pipeline reports how many did so, once, instead of a warning per task."""
    if name in ("masc", "velpic"):
        return spectral[name], True
    params = {"knn": {"k": settings.knn_neighbors}}.get(name, {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        probe = make_probe(name, **params).fit(x_train, y_train)
    converged = True
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            converged = False
        else:  # any other warning goes on as it came
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return probe, converged


def run_task(task: Task, settings: ProbeSettings) -> TaskResult:
    with threadpool_limits(settings.blas_threads):
        return _run_task(task, settings)


def _run_task(task: Task, settings: ProbeSettings) -> TaskResult:
    table = stores.sample_table(task.store)
    x = stores.slab(task.store, task.layer, task.slot).astype(np.float32)
    train = table["split"] == "train"
    y_obs, y_true = table["label_observed"], table["label_true"]
    x_train = x[train]
    spectral = {}
    if {"masc", "velpic"} & set(settings.probes) or task.penultimate:
        masc, velpic = fit_spectral_probes(x_train, y_obs[train], settings.masc_components,
                                           method=settings.spectral, device=settings.device)
        spectral = {"masc": masc, "velpic": velpic}
    accuracy, not_converged = {}, []
    for name in settings.probes:
        probe, converged = _fit_probe(name, x_train, y_obs[train], settings, spectral)
        accuracy[name] = _scores(probe.predict(x), train, y_obs, y_true)
        if not converged:
            not_converged.append(name)
    result = TaskResult(task, accuracy, not_converged=tuple(not_converged))
    if spectral:
        result.masc_k = np.asarray(spectral["masc"].n_components_)
    if task.penultimate:
        _edit(task, result, x, train, y_obs, y_true, spectral["velpic"])
    return result


def _edit(task: Task, result: TaskResult, x, train, y_obs, y_true, velpic) -> None:
    """Edited-model accuracies from the stored penultimate slab and head weights."""
    head_w = stores.weight_slab(task.store, f"{task.head}.weight", task.slot)
    try:
        head_b = stores.weight_slab(task.store, f"{task.head}.bias", task.slot)
    except KeyError:
        head_b = None
    weight = edit.velpic_weight(velpic, head_w.shape[0])
    logits = edit.variant_logits(x, head_w, head_b, weight)
    result.edit_accuracy = {
        variant: _scores(z.argmax(1), train, y_obs, y_true) for variant, z in logits.items()
    }
    result.edit_weight = weight.astype(np.float32)
    result.edit_predictions = logits["edit_zero_bias"].argmax(1)
