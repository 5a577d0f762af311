"""Analyse captured runs: probes on hidden-layer activations, and the pipeline around them.

`analyse(pipeline, root)` fits every probe of the pipeline's `analysis:` block on every
(run, epoch, layer) of its stores, writes the results back into each store and writes
the report. The probes are scikit-learn estimators (`MASC`, `VeLPIC`,
`NearestMeanCosine`, `QDA` and the baseline factories; the tasks' fast baselines
`KNeighborsCosine`, `StandardizedLogisticRegression`, `LinearDiscriminantAnalysis`,
`QuadraticDiscriminantAnalysis`, and the authors' `AdamLogisticRegression`;
`make_probe` builds one by name); `fit_spectral_probes` and `fit_masc_family` fit MASC and VeLPIC from one
per-class decomposition (`class_spectra` is its float64 reference). `fit_probes` fits
and scores them over every slab of any activations DataArray (lazily over Dask), as the
pipeline's tasks (`run_task`) do for a store's slab. The submodules load
on first use, so `import analyze` stays light (no scikit-learn until needed).
"""

from __future__ import annotations

import importlib

__all__ = ["AdamLogisticRegression", "KNeighborsCosine", "LinearDiscriminantAnalysis", "MASC",
           "NearestMeanCosine", "QDA", "QuadraticDiscriminantAnalysis",
           "StandardizedLogisticRegression", "VeLPIC", "analyse", "class_spectra",
           "fit_masc_family", "fit_probes", "fit_spectral_probes", "knn_cosine", "lda",
           "list_tasks", "logistic_regression", "make_probe", "run_task"]

_HOMES = {"AdamLogisticRegression": "linear", "KNeighborsCosine": "knn",
          "LinearDiscriminantAnalysis": "discriminant",
          "QuadraticDiscriminantAnalysis": "discriminant",
          "StandardizedLogisticRegression": "linear", "MASC": "probes", "QDA": "baselines", "NearestMeanCosine": "probes", "VeLPIC": "probes",
          "analyse": "pipeline", "class_spectra": "spectral", "fit_masc_family": "probes",
          "fit_probes": "arrays", "fit_spectral_probes": "probes", "knn_cosine": "baselines",
          "lda": "baselines", "list_tasks": "grid", "logistic_regression": "baselines",
          "make_probe": "probes", "run_task": "tasks"}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
