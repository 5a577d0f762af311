"""One analysis task: one (run, epoch, layer) slab, every requested probe.

A task receives a path, never an array: it opens the store itself, reads its slab
once, fits the probes and returns small results. The same function runs eagerly or on
a Dask worker, so the two paths cannot disagree.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from stores import slabs
from stores.config import AnalysisConfig

from . import edit
from .baselines import FAST
from .moments import shared_moments
from .probes import fit_masc_family
from .probes import make_probe as named_probe
from .samples import Breakdown, Samples, accuracies, breakdown

MASC_LABELS = ("observed", "true")  # which training labels build MASC's subspaces
# BLAS threads inside a task. One: parallelism comes from tasks, and a fixed thread count
# keeps floating-point sums (so lbfgs paths) identical on every path.
BLAS_THREADS = 1


@dataclass(frozen=True)
class Task:
    """One (run, epoch, layer) of the grid: where its slab is, and what else it computes.

    Attributes
    ----------
    store : str
        The run's store.
    run : str
        The run's name.
    slot, epoch : int
        The committed slot holding the epoch, and the epoch.
    layer : str
        The capture point.
    penultimate : bool
        Whether the layer feeds the head (the VeLPIC edit is computed there).
    head : str
        The head's parameter prefix.
    cross : tuple of (float, str, str)
        (corruption rate, run name, store) of each run whose observed labels also build
        MASC subspaces on this (clean) run's activations: P1's cross-run control.
    final : bool
        The run's final committed epoch: MASC predictions go back (relabelling).
    """

    store: str
    run: str
    slot: int
    epoch: int
    layer: str
    penultimate: bool = False
    head: str = "head"
    cross: tuple[tuple[float, str, str], ...] = ()
    final: bool = False


@dataclass
class TaskResult:
    """What one task sends back: small results only (accuracies, k per class, the edit).

    Attributes
    ----------
    task : Task
        The task.
    accuracy : dict
        probe -> score (`analyze.samples.SCORES`) -> accuracy; `class_accuracy`: probe -> (class,).
    masc_k : ndarray or None
        MASC's components kept per class (primary n, observed labels).
    edit_accuracy, edit_class_accuracy, edit_weight, edit_predictions
        The VeLPIC edit on the penultimate layer: variant -> score -> accuracy, variant
        -> (class,), the (n_classes, units) weight, the zero-bias edited predictions.
    not_converged, shrunk : tuple of str
        Probes whose solver stopped at its iteration limit; probes fitted with their
        regularised fallback (qda).
    masc_n : dict
        (n, subspaces) -> (scores, k per class): the n ablation.
    cross : dict
        corruption rate -> Breakdown: the cross-run control.
    masc_predictions, model_predictions : ndarray or None
        Primary-n MASC's and the model's predictions on every sample (final epoch).
    """

    task: Task
    accuracy: dict[str, dict[str, float]]
    masc_k: np.ndarray | None = None
    edit_accuracy: dict[str, dict[str, float]] | None = None
    edit_weight: np.ndarray | None = None
    edit_predictions: np.ndarray | None = None
    not_converged: tuple[str, ...] = ()
    class_accuracy: dict[str, np.ndarray] = field(default_factory=dict)
    edit_class_accuracy: dict[str, np.ndarray] = field(default_factory=dict)
    masc_n: dict[tuple[float, str], tuple[dict[str, float], np.ndarray]] = field(default_factory=dict)
    cross: dict[float, Breakdown] = field(default_factory=dict)
    masc_predictions: np.ndarray | None = None
    model_predictions: np.ndarray | None = None
    shrunk: tuple[str, ...] = ()


def make_probe(name: str, **params):
    """The estimator a task fits: the fast one of `baselines.FAST` (k-NN, logreg, LDA,
    QDA: the same predictions as scikit-learn's), else `probes.make_probe`'s."""
    return FAST[name](**params) if name in FAST else named_probe(name, **params)


def _predict(probe, x, samples: Samples):
    """Predictions on every row (k-NN: its training rows' neighbours from one symmetric product)."""
    if hasattr(probe, "predict_with_fit_rows"):
        return probe.predict_with_fit_rows(x, samples.train)
    return probe.predict(x)


def _fit_probe(name: str, x_train, y_train, settings: AnalysisConfig, spectral):
    """(fitted probe, whether its solver converged). A solver that stops at its
    iteration limit (logreg's lbfgs) is not an error: the fit is scored as it is, and the
    pipeline reports how many did so, once, instead of a warning per task."""
    if name in spectral:
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


def run_task(task: Task, settings: AnalysisConfig) -> TaskResult:
    """Read one slab, fit every probe of `settings`, score them (on `BLAS_THREADS` threads).

    Parameters
    ----------
    task : Task
        The (run, epoch, layer) to analyse.
    settings : AnalysisConfig
        The pipeline's `analysis:` block (its device possibly overridden).

    Returns
    -------
    TaskResult
    """
    with threadpool_limits(BLAS_THREADS):
        return _run_task(task, settings)


def _family(x_train, y_train, ns, settings: AnalysisConfig) -> tuple[dict, Any]:
    """({n: MASC} for the primary n and every n of `ns`, VeLPIC), from one decomposition."""
    ns = list(dict.fromkeys([settings.primary_n, *ns]))
    family, velpic = fit_masc_family(x_train, y_train, ns, method=settings.spectral, device=settings.device)
    return dict(zip(ns, family)), velpic


@dataclass
class Scored:
    """Every probe of one slab, fitted on its training rows and scored on all of them.

    Attributes
    ----------
    found : dict
        probe -> Breakdown, in the order of the settings' probes.
    spectral : dict
        The fitted spectral probes by name (`masc`, `velpic`, `masc_true`), for what else
        a task computes from them.
    families : dict
        Per label set ("observed", "true"), MASC at every n asked for, {n: MASC}, from the
        decomposition the spectral probes came from.
    not_converged, shrunk : tuple of str
        Probes whose solver stopped at its iteration limit (scored as they are); probes
        fitted with their regularised fallback (qda).
    """

    found: dict[str, Breakdown]
    spectral: dict
    families: dict = field(default_factory=dict)
    not_converged: tuple[str, ...] = ()
    shrunk: tuple[str, ...] = ()


def score_probes(x: np.ndarray, samples: Samples, settings: AnalysisConfig, *,
                 spectral: bool = False, ns: Sequence[float] = ()) -> Scored:
    """Fit every probe of `settings` on one slab's training rows and score each.

    Parameters
    ----------
    x : ndarray of shape (sample, unit)
        The slab, as the probes read it (float32).
    samples : Samples
        Its probe set: the probes learn the observed labels of the training rows (MASC's
        subspaces for `masc_true` from the true ones) and are scored on every score's rows.
    settings : AnalysisConfig
        The probes, MASC's n (the primary one), k-NN's k, the spectral method and device.
    spectral : bool
        Fit MASC and VeLPIC (on the observed labels) even where `settings` lists neither.
    ns : sequence of float
        MASC's other n (the ablation's), fitted beside the primary one from the same
        decomposition per label set.

    Returns
    -------
    Scored
    """
    x_train = samples.train_rows(x)
    labels = {"observed": samples.observed[samples.train], "true": samples.true[samples.train]}
    n = settings.primary_n
    fits, families = {}, {}
    if {"masc", "velpic"} & set(settings.probes) or spectral:
        families["observed"], fits["velpic"] = _family(x_train, labels["observed"], ns, settings)
        fits["masc"] = families["observed"][n]
    if "masc_true" in settings.probes:
        families["true"] = _family(x_train, labels["true"], ns, settings)[0]
        fits["masc_true"] = families["true"][n]
    found, not_converged, shrunk = {}, [], []
    with shared_moments():  # LDA, QDA and logreg share one set of class moments
        for name in settings.probes:
            probe, converged = _fit_probe(name, x_train, labels["observed"], settings, fits)
            found[name] = breakdown(_predict(probe, x, samples), samples)
            if not converged:
                not_converged.append(name)
            if getattr(probe, "shrunk_", None) is not None:
                shrunk.append(name)
    return Scored(found, fits, families, tuple(not_converged), tuple(shrunk))


def _run_task(task: Task, settings: AnalysisConfig) -> TaskResult:
    table = slabs.sample_table(task.store)
    x = slabs.slab(task.store, task.layer, task.slot).astype(np.float32)
    samples = Samples.of(table)
    scored = score_probes(x, samples, settings, spectral=task.penultimate or task.final,
                          ns=settings.masc_ns if settings.fits_masc else ())
    spectral = scored.spectral
    result = TaskResult(task, {name: b.scores for name, b in scored.found.items()},
                        not_converged=scored.not_converged, shrunk=scored.shrunk,
                        class_accuracy={name: b.per_class for name, b in scored.found.items()})
    x_train = samples.train_rows(x)
    labels = {"observed": samples.observed[samples.train], "true": samples.true[samples.train]}
    n = settings.primary_n
    if "masc" in spectral:
        result.masc_k = np.asarray(spectral["masc"].n_components_)
    if settings.fits_masc:
        result.masc_n = _ablation(x, x_train, labels, samples, scored.families, settings)
    for rate, _, source in task.cross:
        observed = slabs.sample_table(source)["label_observed"]
        masc = _family(x_train, observed[samples.train], (), settings)[0][n]
        result.cross[rate] = breakdown(masc.predict(x), Samples.of(table, observed, samples.n_classes))
    if task.final:
        result.masc_predictions = spectral["masc"].predict(x)
    if task.penultimate:
        _edit(task, result, x, samples, spectral["velpic"])
    return result


def _ablation(x, x_train, labels, samples: Samples, families: dict, settings: AnalysisConfig) -> dict:
    """MASC at every n of the ablation, from the observed and from the true labels: from
    the probes' own decomposition where the task fitted them (`families`), else from one
    decomposition per label set (`fit_masc_family`)."""
    out = {}
    for which in MASC_LABELS:
        fits = families.get(which) or _family(x_train, labels[which], settings.masc_ns, settings)[0]
        for n in settings.masc_ns:
            masc = fits[n]
            out[(float(n), which)] = (accuracies(masc.predict(x), samples), np.asarray(masc.n_components_))
    return out


def _edit(task: Task, result: TaskResult, x, samples: Samples, velpic) -> None:
    """Edited-model accuracies from the stored penultimate slab and head weights; the
    unedited variant is the model itself."""
    head_w = slabs.weight_slab(task.store, f"{task.head}.weight", task.slot)
    try:
        head_b = slabs.weight_slab(task.store, f"{task.head}.bias", task.slot)
    except KeyError:
        head_b = None
    weight = edit.velpic_weight(velpic, head_w.shape[0])
    logits = edit.variant_logits(x, head_w, head_b, weight)
    found = {variant: breakdown(z.argmax(1), samples) for variant, z in logits.items()}
    result.edit_accuracy = {variant: b.scores for variant, b in found.items()}
    result.edit_class_accuracy = {variant: b.per_class for variant, b in found.items()}
    result.edit_weight = weight.astype(np.float32)
    result.edit_predictions = logits["edit_zero_bias"].argmax(1)
    if task.final:
        result.model_predictions = logits["unedited"].argmax(1)
