"""Analyse every run of a pipeline from its stores: grid, edit, cross-check, report."""

from __future__ import annotations

import contextlib
import dataclasses
import logging

import numpy as np

import stores
from stores import ConfigError, Pipeline, StoreError, location, slabs
from stores.config import AnalysisConfig
from stores.lock import StoreLock
from stores.runs import results_table, store_name
from stores.schema import ANALYSIS_NODES
from stores.results import consolidate_if_stale, recover_analysis, stored_analysis, write_analysis

from . import grid, incremental, modular, report, report_modular
from .cross import cross_sources
from .crosscheck import crosscheck_edit
from .samples import Samples
from .tasks import TaskResult

log = logging.getLogger(__name__)

CSV = "analysis.csv"  # the tidy table, next to the report


def settings_for(pipeline: Pipeline) -> AnalysisConfig:
    """The pipeline's `analysis:` block (all its runs share it): what every task fits.

    Parameters
    ----------
    pipeline : Pipeline

    Returns
    -------
    AnalysisConfig
    """
    return pipeline.runs()[0].analysis


def store_paths(pipeline: Pipeline, root: str, missing: list | None = None) -> list[str]:
    """The pipeline's run stores that exist (a capture may still be writing later ones);
    none at all is an error that says what to run. `missing`, if given, receives the
    (config, path) of each run without a store yet."""
    paths, missing = [], [] if missing is None else missing
    for config in pipeline.runs():
        path = config.store_path(root)
        if not location.is_store(path):
            missing.append((config, path))
            continue
        if stores.run_attrs(path).get("config_hash") != config.hash():
            raise StoreError(f"{path} was captured with a different config than "
                             f"pipeline {pipeline.name} now gives; capture it again")
        paths.append(path)
    if not paths:
        config, path = missing[0]
        raise StoreError(f"run {config.name} has no store at {path}: "
                         f"run `python -m capture {pipeline.name} --root {root}` first")
    for config, path in missing:
        log.warning("run %s has no store yet at %s; analysing the others", config.name, path)
    return paths


def preflight(pipeline: Pipeline, root: str, paths: list[str]) -> None:
    """What would fail only after every task was computed, checked before any is: each
    store (analysis writes its results into it) and the report's folder are writable,
    and `analysis.knn_neighbors` fits every run's training set."""
    _check_writable([*paths, location.join(root, pipeline.name)])
    _check_knn(paths, settings_for(pipeline), f"{pipeline.name}.analysis")


def _check_writable(paths: list[str]) -> None:
    for path in paths:
        try:
            location.check_writable(path)
        except OSError as err:
            raise StoreError(f"{path} is not writable ({location.os_reason(err)}): "
                             "analyze writes its results there; make it writable (or analyse a "
                             "writable copy) and run the same command again") from None


def _check_knn(paths: list[str], analysis: AnalysisConfig, where: str) -> None:
    if "knn" in analysis.probes:
        for path in paths:
            n_train = int(np.sum(slabs.sample_table(path)["split"] == "train"))
            if analysis.knn_neighbors > n_train:
                raise ConfigError(f"{where}.knn_neighbors: expected at most the "
                                  f"training set's {n_train} samples ({path}), got "
                                  f"{analysis.knn_neighbors}")


def analyse(pipeline: Pipeline, root: str, client=None, progress: bool = True,
            device: str | None = None) -> str:
    """Run the grid (on `client`, or eagerly without one) for what is new, write results
    and the report. `device` overrides the pipeline's `analysis.device`. A damaged chunk
    stops it with the chunk's name.

    Each store's analysis lock (`RUN.zarr.analysis.lock`, beside the capture's lock) is
    held from before its earlier results are read until its new ones are written: a
    second analysis of the same store is refused, naming the holder, before it computes
    anything (as a second capture of a run is); a capture may go on writing meanwhile.
    What would fail only after the tasks (a store that cannot be written, k-NN's k over a
    training set) is checked before any runs."""
    missing: list = []
    paths = store_paths(pipeline, root, missing)
    preflight(pipeline, root, paths)
    settings = settings_for(pipeline)
    if device is not None:
        settings = dataclasses.replace(settings, device=device)
    pending = [f"{config.name} (no store yet)" for config, _ in missing]
    return _analyse_locked(paths, client, progress, settings,
                           (pipeline.name, f"pipeline {pipeline.name}", location.join(root, pipeline.name)),
                           pending)


def analyse_stores(paths: list[str], out_dir: str | None = None, client=None,
                   progress: bool = True, device: str | None = None) -> str:
    """Analyse run stores without a pipeline (`python -m analyze --stores PATH...`): a
    recorder's stores, or any others. Every store is fitted with the default
    `AnalysisConfig` (its capture points and penultimate layer come from its
    attributes); the results go into each store, report.md and analysis.csv into
    `out_dir`.

    Parameters
    ----------
    paths : list of str
        The stores.
    out_dir : str, optional
        Where the report and the table go (made if missing); default: the first
        store's folder.
    client : distributed.Client, optional
        Runs the tasks; None: eagerly, in this process.
    progress : bool, default True
    device : str, optional
        As `analyse`'s.

    Returns
    -------
    str
        Where report.md went.

    Raises
    ------
    StoreError
        In one line, for a path that does not exist or is not a run store.
    """
    paths = [_checked_store(location.normalize(p)) for p in dict.fromkeys(map(str, paths))]
    out_dir = location.normalize(out_dir) if out_dir else location.parent(paths[0])
    try:
        location.makedirs(out_dir)
    except OSError as err:
        raise StoreError(f"cannot create {out_dir} ({location.os_reason(err)}): --out must "
                         "be a writable folder") from None
    settings = AnalysisConfig(**({} if device is None else {"device": device}))
    _check_writable([*paths, out_dir])
    _check_knn(paths, settings, "analysis")
    names = [stores.run_attrs(p).get("run_name", store_name(p)) for p in paths]
    title = ", ".join(names) if len(names) <= 3 else f"{len(names)} stores"
    return _analyse_locked(paths, client, progress, settings, (title, title, out_dir), [])


def _checked_store(path: str) -> str:
    """`path`, or StoreError in one line when it is missing or not a run store."""
    if not location.exists(path):
        raise StoreError(f"{path}: no such file or directory")
    if not location.is_store(path):
        raise StoreError(f"{path} is not a run store (no zarr.json)")
    stores.run_attrs(path)  # a foreign store or a newer schema: its own one-line error
    return path


def _analyse_locked(paths: list[str], client, progress: bool, settings: AnalysisConfig,
                    names: tuple[str, str, str], pending: list[str]) -> str:
    """`_analyse` holding each store's analysis lock (`analyse` says why); a damaged
    chunk stops it with the chunk's name."""
    try:
        with contextlib.ExitStack() as locks:
            for path in paths:
                locks.enter_context(StoreLock(path, purpose="analysis"))
                for what in recover_analysis(path):
                    log.warning("%s: %s (left by an interrupted analysis)", path, what)
            return _analyse(names, paths, client, progress, settings, pending)
    except ValueError as err:
        if "checksum" not in str(err).lower():
            raise
        raise _damage_error(paths, err) from err


def _damage_error(paths: list[str], err: ValueError) -> StoreError:
    from stores.validate import damaged

    for path in paths:
        found = damaged(path)
        if found:
            return StoreError(f"{path}: {found[0].array} chunk {found[0].index} is "
                              f"{found[0].what}: run `python -m stores validate {path}`")
    return StoreError(f"a chunk is damaged ({str(err).splitlines()[0]}): "
                      "run `python -m stores validate STORE` on the pipeline's stores")


def _analyse(names: tuple[str, str, str], paths: list[str], client, progress: bool,
             settings: AnalysisConfig, pending: list[str]) -> str:
    """Compute what is new, write it, then the table and the report. `names`: the
    report's title, what the stores are in messages, and the report's folder."""
    title, what, out_dir = names
    old = {path: stored_analysis(path) for path in paths}
    results, new, planned = _run_new(paths, old, client, progress, settings)
    per_store = _merged(paths, old, new, results, planned, settings)
    if not per_store:
        raise StoreError(f"no store of {what} has a committed epoch yet: "
                         f"analyse it once its capture has committed one")
    pending += [f"{stores.run_attrs(p).get('run_name', p)} (no committed epoch yet)"
                for p in paths if p not in per_store]
    modular_paths = _with_neurons(per_store, old, new, client)
    for path in per_store:
        if path in new:
            write_analysis(path, per_store[path])  # only stores with something new
        _consolidated(path)
    results = stores.analysis_results(list(per_store))  # read once: the CSV and the report
    with report.replacing(location.join(out_dir, CSV), "w") as f:
        results_table(results).to_csv(f, index=False)
    runs = list(per_store.items())
    extra = report_modular.section(runs, out_dir) if modular_paths else ""
    return report.write_report(title, out_dir, list(per_store), results, CSV, extra,
                               pending=pending)


def _run_new(paths: list[str], old: dict, client, progress: bool, settings: AnalysisConfig):
    """(results, new, planned): the tasks not computed yet, run (on `client`, or eagerly),
    their results collected per store, and each store's last committed epoch when the
    tasks were listed."""
    cross = cross_sources(paths) if settings.cross_labels else {}
    # A capture may commit more epochs while this runs: everything below is about the
    # epochs committed now, when the tasks were listed.
    planned = {path: int(epochs[-1]) for path in paths
               if len(epochs := slabs.committed_slots(path)[1])}
    relabel_seed = settings.relabel_seed if "masc" in settings.probes else None
    relabels = {path: relabel_seed if _relabelable(path) else None for path in paths}  # corrupted runs
    tasks = grid.list_tasks(paths, {path: incremental.done(old[path], settings, stores.layers(path),
                                                           cross.get(path, ()), planned.get(path),
                                                           relabels[path])
                                    for path in paths}, cross, final=relabel_seed is not None)
    log.info("%d new tasks over %d runs", len(tasks), len(paths))
    if not tasks:
        results = []
    elif client is None:
        results = grid.run_eager(tasks, settings, progress)
    else:
        results = grid.run_dask(tasks, settings, client, progress)
    _report_unconverged(results)
    _report_shrunk(results)
    return results, grid.collect(results, settings, relabel_seed), planned


def _merged(paths: list[str], old: dict, new: dict, results: list[TaskResult], planned: dict,
            settings: AnalysisConfig) -> dict:
    """Store -> its analysis groups: the new results (with the edit's cross-check) merged
    into the stored ones where those are usable, the stored ones alone where nothing is new."""
    per_store = {}
    for path in paths:
        if path in new:
            new[path]["edit"].attrs.update(_crosscheck(path, results, planned.get(path)))
            if incremental.usable(old[path], settings):
                new[path] = incremental.merge(old[path], new[path], stores.layers(path))
            elif "masc_n" in new[path] and "masc_n" in old[path] and (
                    old[path]["masc_n"].attrs.get("spectral") == settings.spectral):
                # other n computed before are kept: the ablation adds, never overwrites
                new[path]["masc_n"] = incremental.combine(new[path]["masc_n"], old[path]["masc_n"],
                                                          stores.layers(path))
            per_store[path] = new[path]
        elif incremental.usable(old[path], settings):
            per_store[path] = {k: old[path][k] for k in ANALYSIS_NODES if k in old[path]}
    return per_store


def _with_neurons(per_store: dict, old: dict, new: dict, client) -> list[str]:
    """The modular runs among `per_store`, their neuron diagnostics added: recomputed where
    a run has new results or none stored (those count as new), else the stored ones."""
    modular_paths = [path for path in per_store if modular.is_modular(path)]
    redo = [path for path in modular_paths if path in new or "neurons" not in old[path]]
    for path, datasets in zip(redo, _neuron_results(redo, client)):
        per_store[path].update(datasets)
        new.setdefault(path, per_store[path])
    for path in modular_paths:
        per_store[path].update({k: old[path][k] for k in ("neurons", "pruning")
                                if k not in per_store[path]})
    return modular_paths


def _relabelable(path: str) -> bool:
    """Whether a run trained on a label that is not the true one and has a test split to
    hold part of out (so it can be relabelled; `grid.collect`)."""
    table = slabs.sample_table(path)
    return bool(Samples.of(table).flipped.any()) and np.count_nonzero(table["split"] == "test") >= 2


def _counted(results: list[TaskResult], field: str) -> dict[str, int]:
    """Probe name -> in how many results it is listed under `field`."""
    counts: dict[str, int] = {}
    for result in results:
        for name in getattr(result, field):
            counts[name] = counts.get(name, 0) + 1
    return counts


def _report_shrunk(results: list[TaskResult]) -> None:
    """One line for the QDA fits that needed scikit-learn's shrinkage remedy."""
    for name, count in _counted(results, "shrunk").items():
        log.info("%s: a class covariance was singular (fewer samples than units, or a constant "
                 "unit) in %d of %d fits; fitted with solver='eigen' and shrinkage there",
                 name, count, len(results))


def _report_unconverged(results: list[TaskResult]) -> None:
    """One line for all the fits whose solver stopped at its iteration limit."""
    for name, count in _counted(results, "not_converged").items():
        log.warning("%s: the solver stopped at its iteration limit in %d of %d fits (not "
                    "converged); those accuracies are reported as fitted", name, count,
                    len(results))


def _consolidated(path: str) -> None:
    """A finished store whose consolidated metadata is missing or does not describe its
    analysis groups as they are (its capture finished while an analysis was swapping
    them, or an analysis was killed between the swap and the consolidation) is
    consolidated again."""
    if stores.run_attrs(path).get("status") == stores.schema.STATUS_COMPLETE:
        consolidate_if_stale(path)


def _neuron_results(paths: list[str], client) -> list[dict]:
    """Neuron diagnostics, one task per modular run (on the cluster when there is one)."""
    if client is None:
        return [modular.neuron_task(path) for path in paths]
    return client.gather(client.map(modular.neuron_task, paths, pure=False))


def _crosscheck(path: str, results: list[TaskResult], last: int | None) -> dict:
    """Cross-check the edit once per run, at its final committed epoch when the tasks
    were planned (`last`; when that one is among the new results; else the stored
    cross-check stands)."""
    final = max((r for r in results if r.task.store == path and r.task.penultimate),
                key=lambda r: r.task.epoch, default=None)
    if final is None or final.task.epoch != last:
        return {}
    check = crosscheck_edit(path, final.task.slot, final.edit_weight, final.edit_predictions)
    if check and check["crosscheck_agreement"] < 0.99:
        log.warning("%s: edited model rebuilt from weights agrees with the store on only "
                    "%.2f%% of samples", path, 100 * check["crosscheck_agreement"])
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in check.items()}
