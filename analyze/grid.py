"""The dynamics grid: plan tasks, run them (eagerly or on Dask), gather xarray results.

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
from stores.writer import write_analysis

from .edit import VARIANTS
from .tasks import SCORES, ProbeSettings, Task, TaskResult, run_task

log = logging.getLogger(__name__)

DYNAMICS = "analysis/dynamics"
EDIT = "analysis/edit"


def plan(store_paths: Iterable[str], done: dict[str, set] | None = None) -> list[Task]:
    """Every (run, committed epoch, layer) of the given stores, from metadata only, less
    the (layer, epoch) pairs of each store that `done` says are computed already. A store
    that is being written shows its committed epochs only; one without any is skipped."""
    tasks = []
    done = done or {}
    for path in store_paths:
        attrs = stores.run_attrs(path)
        slots, epochs = stores.committed_slots(path)
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
                                  layer, layer == penultimate, attrs.get("head", "head")))
    return tasks


def run_eager(tasks: list[Task], settings: ProbeSettings, progress: bool = False) -> list[TaskResult]:
    """The reference path: every task in this process, in order."""
    return [run_task(t, settings) for t in tqdm(tasks, desc="analysis", disable=not progress)]


def run_dask(tasks: list[Task], settings: ProbeSettings, client, progress: bool = False) -> list[TaskResult]:
    """Every task on the Dask cluster behind `client`; results in task order."""
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


def collect(results: list[TaskResult], settings: ProbeSettings) -> dict[str, dict[str, xr.Dataset]]:
    """Per store: {"dynamics": Dataset(probe, layer, epoch, score), "edit": Dataset}."""
    by_store: dict[str, list[TaskResult]] = {}
    for r in results:
        by_store.setdefault(r.task.store, []).append(r)
    return {path: _collect_run(rs, settings) for path, rs in by_store.items()}


def _collect_run(results: list[TaskResult], settings: ProbeSettings) -> dict[str, xr.Dataset]:
    layers = list(dict.fromkeys(r.task.layer for r in results))
    epochs = sorted({r.task.epoch for r in results})
    probes = list(settings.probes)
    acc = np.full((len(probes), len(layers), len(epochs), len(SCORES)), np.nan)
    n_classes = max((len(r.masc_k) for r in results if r.masc_k is not None), default=0)
    masc_k = np.full((len(layers), len(epochs), n_classes), -1, dtype=np.int64)
    for r in results:
        i, j = layers.index(r.task.layer), epochs.index(r.task.epoch)
        for p, probe in enumerate(probes):
            acc[p, i, j] = [r.accuracy[probe][s] for s in SCORES]
        if r.masc_k is not None:
            masc_k[i, j, : len(r.masc_k)] = r.masc_k
    coords = {"probe": _string_coord(probes), "layer": _string_coord(layers), "epoch": epochs,
              "score": _string_coord(list(SCORES))}
    dynamics = xr.Dataset(
        {"accuracy": (("probe", "layer", "epoch", "score"), acc),
         "masc_k": (("layer", "epoch", "class"), masc_k)},
        coords=coords,
        attrs={"masc_components": settings.masc_components, "knn_neighbors": settings.knn_neighbors,
               "spectral": settings.spectral,
               "description": "probe accuracy: fit on train activations with observed labels; "
                              "train_observed/train_true score the train split, test the test split"},
    )
    return {"dynamics": dynamics, "edit": _collect_edit(results, epochs)}


def _collect_edit(results: list[TaskResult], epochs: list[int]) -> xr.Dataset:
    edits = sorted((r for r in results if r.task.penultimate), key=lambda r: r.task.epoch)
    acc = np.array([[[r.edit_accuracy[v][s] for s in SCORES] for v in VARIANTS] for r in edits])
    weight = np.stack([r.edit_weight for r in edits])
    return xr.Dataset(
        {"accuracy": (("variant", "epoch", "score"), acc.transpose(1, 0, 2)),
         "weight": (("epoch", "out", "in"), weight)},
        coords={"variant": _string_coord(list(VARIANTS)), "epoch": [r.task.epoch for r in edits],
                "score": _string_coord(list(SCORES))},
        attrs={"layer": edits[0].task.layer, "head": edits[0].task.head,
               "description": "final layer weight = VeLPIC vectors of the penultimate layer; "
                              "edit_zero_bias sets its bias to 0, edit_keep_bias keeps it"},
    )


def write(path: str, datasets: dict[str, xr.Dataset]) -> None:
    """Replace `analysis/<name>` groups of one store, each atomically (a reader or a kill
    sees the old group or the new one: `stores.writer.write_analysis`); nothing else is
    touched. The caller holds the store's analysis lock."""
    write_analysis(path, datasets)
