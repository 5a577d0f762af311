"""The dynamics grid: list the tasks, run them (eagerly or on Dask), gather xarray results.

One task per (run, epoch, layer). Only store paths and small task descriptions travel
to the workers; only accuracies, per-class counts and the small edited weight travel
back. Results become, per run, two xarray Datasets written under `analysis/`.
"""

from __future__ import annotations

import logging
from typing import Iterable

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

import stores
from stores import slabs
from stores.config import AnalysisConfig

from .edit import VARIANTS
from .relabel import relabel
from .samples import SCORES, Samples
from .tasks import MASC_LABELS, Task, TaskResult, run_task

log = logging.getLogger(__name__)


def list_tasks(store_paths: Iterable[str], done: dict[str, set] | None = None,
               cross: dict[str, tuple] | None = None, final: bool = False) -> list[Task]:
    """The analysis tasks of the given stores, from metadata only.

    Parameters
    ----------
    store_paths : iterable of str
        The run stores. A store that is being written shows its committed epochs only;
        one without any is skipped.
    done : dict, optional
        store -> the (layer, epoch) pairs computed already (`incremental.done`): left out.
    cross : dict, optional
        A clean store's label sources (`cross.cross_sources`).
    final : bool, default False
        Mark each store's last committed epoch for relabelling.

    Returns
    -------
    list of Task
        Every (run, committed epoch, layer) not done, store by store, layer by layer.
    """
    tasks = []
    done, cross = done or {}, cross or {}
    for path in store_paths:
        attrs = stores.run_attrs(path)
        slots, epochs = slabs.committed_slots(path)
        if not len(slots):
            log.warning("%s has no committed epoch yet; skipping it", path)
            continue
        penultimate = stores.penultimate_layer(path)
        skip = done.get(path, set())
        for layer in stores.layers(path):
            for slot, epoch in zip(slots, epochs):
                if (layer, int(epoch)) in skip:
                    continue
                tasks.append(Task(path, attrs.get("run_name", path), int(slot), int(epoch),
                                  layer, layer == penultimate, attrs.get("head", "head"),
                                  cross.get(path, ()), final and int(epoch) == int(epochs[-1])))
    return tasks


def run_eager(tasks: list[Task], settings: AnalysisConfig, progress: bool = False) -> list[TaskResult]:
    """The reference path: every task in this process, in order; a list of TaskResult."""
    return [run_task(t, settings) for t in tqdm(tasks, desc="analysis", disable=not progress)]


def run_dask(tasks: list[Task], settings: AnalysisConfig, client, progress: bool = False) -> list[TaskResult]:
    """Every task on the Dask cluster behind `client` (`settings` travels with each);
    a list of TaskResult, in task order."""
    from distributed import as_completed

    futures = client.map(run_task, tasks, settings=settings, pure=False)
    index = {f.key: i for i, f in enumerate(futures)}
    results: list[TaskResult | None] = [None] * len(tasks)
    bar = tqdm(total=len(tasks), desc="analysis", disable=not progress, unit="task")
    for future in as_completed(futures):
        results[index[future.key]] = future.result()
        bar.update()
    bar.close()
    return results  # type: ignore[return-value]


def _string_coord(values: list[str]) -> np.ndarray:
    # Variable-length strings have a Zarr v3 spec; fixed-width unicode does not.
    return np.array(values, dtype=object)


def collect(results: list[TaskResult], settings: AnalysisConfig,
            relabel_seed: int | None = None) -> dict[str, dict[str, xr.Dataset]]:
    """The tasks' results as xarray Datasets, per store.

    Parameters
    ----------
    results : list of TaskResult
        From `run_eager` or `run_dask`.
    settings : AnalysisConfig
        What the tasks were run with (recorded in the Datasets' attrs).
    relabel_seed : int or None
        The relabelling's seed; None: no relabelling.

    Returns
    -------
    dict
        store -> {"dynamics": Dataset(probe, layer, epoch, score), "edit": Dataset, and
        "masc_n", "cross", "relabel" where computed}.
    """
    by_store: dict[str, list[TaskResult]] = {}
    for r in results:
        by_store.setdefault(r.task.store, []).append(r)
    return {path: _collect_run(path, rs, settings, relabel_seed) for path, rs in by_store.items()}


def _collect_run(path: str, results: list[TaskResult], settings: AnalysisConfig,
                 relabel_seed: int | None) -> dict[str, xr.Dataset]:
    table = slabs.sample_table(path)
    samples = Samples.of(table)
    layers = list(dict.fromkeys(r.task.layer for r in results))
    epochs = sorted({r.task.epoch for r in results})
    at = {(r.task.layer, r.task.epoch): r for r in results}
    grid = [[at.get((layer, epoch)) for epoch in epochs] for layer in layers]
    probes = list(settings.probes)
    acc = _fill(grid, lambda r: [[r.accuracy[p][s] for s in SCORES] for p in probes],
                (len(probes), len(SCORES)))  # (layer, epoch, probe, score)
    per_class = _fill(grid, lambda r: [r.class_accuracy[p] for p in probes],
                      (len(probes), samples.n_classes))
    n_classes = max((len(r.masc_k) for r in results if r.masc_k is not None), default=0)
    masc_k = _fill(grid, lambda r: _pad(r.masc_k, n_classes), (n_classes,), fill=-1)
    coords = {"probe": _string_coord(probes), "layer": _string_coord(layers), "epoch": epochs,
              **_score_coords(samples)}
    dynamics = xr.Dataset(
        {"accuracy": (("probe", "layer", "epoch", "score"), acc.transpose(2, 0, 1, 3)),
         "class_accuracy": (("probe", "layer", "epoch", "class"), per_class.transpose(2, 0, 1, 3)),
         "masc_k": (("layer", "epoch", "class"), masc_k.astype(np.int64))},
        coords=coords,
        attrs={"masc_components": settings.primary_n, "knn_neighbors": settings.knn_neighbors,
               "spectral": settings.spectral,
               "description": "probe accuracy: fit on train activations with observed labels (masc_true: "
                              "true labels); train_observed/train_true score the train split, test the "
                              "test split, flipped_* the training rows whose observed label is not the "
                              "true one, unflipped the others; class_accuracy: test accuracy per true class"},
    )
    out = {"dynamics": dynamics, "edit": _collect_edit(results, samples)}
    if settings.fits_masc:
        out["masc_n"] = _collect_masc_n(grid, layers, epochs, settings, samples)
    crossed = {rate: name for r in results for rate, name, _ in r.task.cross}
    if crossed:
        out["cross"] = _collect_cross(grid, layers, epochs, crossed, samples)
    final = [r for r in results if r.task.final and r.masc_predictions is not None]
    # (relabelling holds out part of the test split: a probe set without one, as a
    # recorder's default all-train split, is not relabelled)
    if relabel_seed is not None and final and samples.flipped.any() and \
            np.count_nonzero(table["split"] == "test") >= 2:
        model = next((r.model_predictions for r in final if r.model_predictions is not None), None)
        out["relabel"] = relabel(table, {r.task.layer: r.masc_predictions for r in
                                                             sorted(final, key=lambda r: layers.index(r.task.layer))},
                                 model, seed=relabel_seed, epoch=final[0].task.epoch,
                                 n_components=settings.primary_n)
    return out


def _fill(grid: list[list[TaskResult | None]], values, shape: tuple[int, ...], fill=np.nan) -> np.ndarray:
    """(layer, epoch, *shape): `values(result)` where a task ran, `fill` elsewhere."""
    out = np.full((len(grid), len(grid[0]) if grid else 0, *shape), fill,
                  dtype=np.float64 if fill is np.nan else np.int64)
    for i, row in enumerate(grid):
        for j, r in enumerate(row):
            if r is not None:
                out[i, j] = values(r)
    return out


def _pad(k: np.ndarray | None, n: int) -> np.ndarray:
    out = np.full(n, -1, dtype=np.int64)
    if k is not None:
        out[: len(k)] = k
    return out


def _score_coords(samples: Samples) -> dict:
    """The score and class coordinates, with how many samples each averages over."""
    counts = samples.counts()
    return {"score": _string_coord(list(SCORES)),
            "score_samples": ("score", np.array([counts[s] for s in SCORES], dtype=np.int64)),
            "class": np.arange(samples.n_classes),
            "class_samples": ("class", samples.class_counts().astype(np.int64))}


def _collect_masc_n(grid, layers, epochs, settings: AnalysisConfig, samples: Samples) -> xr.Dataset:
    ns = [float(n) for n in settings.masc_ns]
    keys = [(n, which) for n in ns for which in MASC_LABELS]
    acc = _fill(grid, lambda r: [[r.masc_n[key][0][s] for s in SCORES] for key in keys],
                (len(keys), len(SCORES)))
    n_classes = max((len(r.masc_n[key][1]) for row in grid for r in row if r is not None
                     for key in keys), default=0)
    k = _fill(grid, lambda r: [_pad(r.masc_n[key][1], n_classes) for key in keys], (len(keys), n_classes), fill=-1)
    shape = (len(layers), len(epochs), len(ns), len(MASC_LABELS))
    coords = {"n": ns, "subspaces": _string_coord(list(MASC_LABELS)), "layer": _string_coord(layers),
              "epoch": epochs, **_score_coords(samples)}
    coords["class"] = np.arange(n_classes)
    coords.pop("class_samples")
    return xr.Dataset(
        {"accuracy": (("n", "subspaces", "layer", "epoch", "score"),
                      acc.reshape(*shape, len(SCORES)).transpose(2, 3, 0, 1, 4)),
         "masc_k": (("n", "subspaces", "layer", "epoch", "class"),
                    k.reshape(*shape, n_classes).transpose(2, 3, 0, 1, 4).astype(np.int64))},
        coords=coords,
        attrs={"spectral": settings.spectral, "primary_n": settings.primary_n,
               "description": "MASC's n ablation: n in (0, 1) keeps the components reaching that "
                              "explained fraction per class, n >= 1 that many; subspaces from the "
                              "observed or the true training labels"},
    )


def _collect_cross(grid, layers, epochs, crossed: dict[float, str], samples: Samples) -> xr.Dataset:
    rates = sorted(crossed)
    acc = _fill(grid, lambda r: [[r.cross[rate].scores[s] for s in SCORES] for rate in rates],
                (len(rates), len(SCORES)))
    per_class = _fill(grid, lambda r: [r.cross[rate].per_class for rate in rates],
                      (len(rates), samples.n_classes))
    any_result = next(r for row in grid for r in row if r is not None)
    source = slabs.sample_table(any_result.task.cross[0][2])
    # score_samples of the first source (the flipped rows differ between sources)
    coords = {"labels_from": rates, "layer": _string_coord(layers), "epoch": epochs,
              **_score_coords(Samples.of(slabs.sample_table(any_result.task.store),
                                         source["label_observed"], samples.n_classes))}
    return xr.Dataset(
        {"accuracy": (("labels_from", "layer", "epoch", "score"), acc.transpose(2, 0, 1, 3)),
         "class_accuracy": (("labels_from", "layer", "epoch", "class"), per_class.transpose(2, 0, 1, 3))},
        coords=coords,
        attrs={"labels_from_runs": [crossed[r] for r in rates],  # the run of each labels_from
               "labels_from_rates": [float(r) for r in rates],
               "description": "P1's control: MASC on this (clean) run's activations with subspaces "
                              "from the observed labels of the run of corruption `labels_from` "
                              "(the same samples); observed-label scores use those labels"},
    )


def _collect_edit(results: list[TaskResult], samples: Samples) -> xr.Dataset:
    edits = sorted((r for r in results if r.task.penultimate), key=lambda r: r.task.epoch)
    acc = np.array([[[r.edit_accuracy[v][s] for s in SCORES] for v in VARIANTS] for r in edits])
    per_class = np.array([[r.edit_class_accuracy[v] for v in VARIANTS] for r in edits])
    weight = np.stack([r.edit_weight for r in edits])
    return xr.Dataset(
        {"accuracy": (("variant", "epoch", "score"), acc.transpose(1, 0, 2)),
         "class_accuracy": (("variant", "epoch", "class"), per_class.transpose(1, 0, 2)),
         "weight": (("epoch", "out", "in"), weight)},
        coords={"variant": _string_coord(list(VARIANTS)), "epoch": [r.task.epoch for r in edits],
                **_score_coords(samples)},
        attrs={"layer": edits[0].task.layer, "head": edits[0].task.head,
               "description": "final layer weight = VeLPIC vectors of the penultimate layer; "
                              "edit_zero_bias sets its bias to 0, edit_keep_bias keeps it; "
                              "unedited is the model as trained (from the stored penultimate "
                              "activations)"},
    )
