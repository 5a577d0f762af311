"""Analyse every run of a pipeline from its stores: grid, edit, cross-check, report."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

import stores
from stores import Pipeline, StoreError

from . import grid, modular, report, report_modular
from .crosscheck import crosscheck_edit
from .tasks import ProbeSettings, TaskResult

log = logging.getLogger(__name__)


def settings_for(pipeline: Pipeline) -> ProbeSettings:
    analysis = pipeline.runs()[0].analysis
    return ProbeSettings(tuple(analysis.probes), analysis.masc_components, analysis.knn_neighbors)


def store_paths(pipeline: Pipeline, root: str) -> list[str]:
    """The pipeline's run stores; a missing one is an error that says what to run."""
    paths = []
    for config in pipeline.runs():
        path = config.store_path(root)
        if not (Path(path) / "zarr.json").exists():
            raise StoreError(f"run {config.name} has no store at {path}: "
                             f"run `python -m capture {pipeline.name} --root {root}` first")
        if stores.run_attrs(path).get("config_hash") != config.hash():
            raise StoreError(f"{path} was captured with a different config than "
                             f"pipeline {pipeline.name} now gives; capture it again")
        paths.append(path)
    return paths


def analyse(pipeline: Pipeline, root: str, client=None, progress: bool = True) -> Path:
    """Run the grid (on `client`, or eagerly without one), write results and the report."""
    paths = store_paths(pipeline, root)
    settings = settings_for(pipeline)
    tasks = grid.plan(paths)
    log.info("%d tasks over %d runs", len(tasks), len(paths))
    if client is None:
        results = grid.run_eager(tasks, settings, progress)
    else:
        results = grid.run_dask(tasks, settings, client, progress)
    per_store = grid.collect(results, settings)
    for path, datasets in per_store.items():
        datasets["edit"].attrs.update(_crosscheck(path, results))
    modular_paths = [path for path in paths if modular.is_modular(path)]
    for path, datasets in zip(modular_paths, _neuron_results(modular_paths, client)):
        per_store[path].update(datasets)
    for path, datasets in per_store.items():
        grid.write(path, datasets)
    out_dir = Path(root) / pipeline.name
    csv = out_dir / "analysis.csv"
    grid.tidy(per_store).to_csv(csv, index=False)
    runs = [(path, per_store[path]) for path in paths]
    extra = report_modular.section(runs, out_dir) if modular_paths else ""
    return report.write_report(pipeline.name, out_dir, paths, csv.name, extra)


def _neuron_results(paths: list[str], client) -> list[dict]:
    """Neuron diagnostics, one task per modular run (on the cluster when there is one)."""
    if client is None:
        return [modular.neuron_task(path) for path in paths]
    return client.gather(client.map(modular.neuron_task, paths, pure=False))


def _crosscheck(path: str, results: list[TaskResult]) -> dict:
    """Cross-check the edit once per run, at its final epoch."""
    final = max((r for r in results if r.task.store == path and r.task.penultimate),
                key=lambda r: r.task.epoch)
    check = crosscheck_edit(path, final.task.slot, final.edit_weight, final.edit_predictions)
    if check and check["crosscheck_agreement"] < 0.99:
        log.warning("%s: edited model rebuilt from weights agrees with the store on only "
                    "%.2f%% of samples", path, 100 * check["crosscheck_agreement"])
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in check.items()}
