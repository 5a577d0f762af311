"""Analysis that computes only what is new: results are keyed by (epoch, layer).

A store's earlier results (`analysis/dynamics`, `analysis/edit`) say which (layer, epoch)
pairs are computed already, with which probe settings. `python -m analyze` lists tasks
for the other committed pairs only and merges their results into the stored ones, so it
can run while a capture is still writing, and again later, without redoing any work.
Results for the same (layer, epoch) from the same committed data are the same whenever
they are computed, so merged results equal those of one full analysis.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from stores.config import AnalysisConfig

from .samples import SCORES


def usable(results: dict[str, xr.Dataset], settings: AnalysisConfig) -> bool:
    """Stored grid results computed with these settings, in this version's layout (else
    everything is redone)."""
    dyn, edit = results.get("dynamics"), results.get("edit")
    if dyn is None or edit is None or "class_accuracy" not in dyn or "class_accuracy" not in edit:
        return False
    return ([str(p) for p in dyn.probe.values] == list(settings.probes)
            and [str(s) for s in dyn.score.values] == list(SCORES)
            and dyn.attrs.get("masc_components") == settings.primary_n
            and dyn.attrs.get("knn_neighbors") == settings.knn_neighbors
            and dyn.attrs.get("spectral") == settings.spectral)


def done(results: dict[str, xr.Dataset], settings: AnalysisConfig, layers: list[str],
         cross: tuple = (), final: int | None = None, relabel_seed: int | None = None
         ) -> set[tuple[str, int]]:
    """The (layer, epoch) pairs the stored results cover, by whole epochs: an epoch is
    done when every layer has its probes, every n of the ablation and every cross-run
    source, and the penultimate layer its edit; the `final` epoch, also the relabelling
    (when `relabel_seed` asks for one)."""
    if not usable(results, settings):
        return set()
    dyn, edit = results["dynamics"], results["edit"]
    stored_layers = [str(x) for x in dyn.layer.values]
    if not set(layers) <= set(stored_layers):
        return set()
    rows = [stored_layers.index(layer) for layer in layers]
    computed = dyn["accuracy"].notnull().any(["probe", "score"]).values[rows]  # (layer, epoch)
    computed &= _covered(results.get("masc_n"), "n", settings.masc_ns if settings.fits_masc else (),
                         stored_layers, dyn)[rows]
    computed &= _covered(results.get("cross"), "labels_from", [rate for rate, _, _ in cross],
                         stored_layers, dyn)[rows]
    edited = {int(e) for e in edit.epoch.values}
    out = {(layer, int(epoch)) for j, epoch in enumerate(dyn.epoch.values)
           if computed[:, j].all() and int(epoch) in edited for layer in layers}
    stored_relabel = results.get("relabel")
    if relabel_seed is not None and final is not None and not (
            stored_relabel is not None and stored_relabel.attrs.get("epoch") == final
            and stored_relabel.attrs.get("seed") == relabel_seed):
        out = {(layer, epoch) for layer, epoch in out if epoch != final}
    return out


def _covered(ds: xr.Dataset | None, dim: str, wanted, layers: list[str], dyn: xr.Dataset) -> np.ndarray:
    """(layer, epoch) of `dyn`: whether `ds` holds a result for every `wanted` value of `dim`."""
    shape = (len(layers), dyn.sizes["epoch"])
    if not len(wanted):
        return np.ones(shape, dtype=bool)
    if ds is None or not set(map(float, wanted)) <= {float(v) for v in ds[dim].values}:
        return np.zeros(shape, dtype=bool)
    acc = _strings(ds)["accuracy"].sel({dim: [float(v) for v in wanted]})
    acc = acc.reindex(layer=layers, epoch=dyn.epoch.values)
    return acc.notnull().any([d for d in acc.dims if d not in ("layer", "epoch")]).transpose(
        "layer", "epoch").values


STRING_DIMS = ("probe", "layer", "score", "variant", "subspaces", "part")


def _strings(ds: xr.Dataset) -> xr.Dataset:
    """String coordinates as object arrays of str (what Zarr reads back is NumPy's
    StringDType; what a task builds, object): one dtype, so the two align."""
    return ds.assign_coords({name: (ds[name].dims, np.array([str(v) for v in ds[name].values], dtype=object))
                             for name in STRING_DIMS if name in ds.coords})


def merge(old: dict[str, xr.Dataset], new: dict[str, xr.Dataset], layers: list[str]) -> dict:
    """`new` grid results folded into `old` ones: new values win where both exist. The n
    ablation keeps the stored values of every n it holds (a later analysis with other n
    adds them); the relabelling is the newest one."""
    out = dict(new)
    for name in ("dynamics", "edit", "masc_n", "cross"):
        if name in new and name in old:
            out[name] = combine(new[name], old[name], layers)
        elif name in old and name != "cross":
            out[name] = old[name]
    if "relabel" not in new and "relabel" in old:
        out["relabel"] = old["relabel"]
    return out


def combine(new: xr.Dataset, old: xr.Dataset, layers: list[str] | None = None) -> xr.Dataset:
    """The union of two results of one group on every coordinate, `new` where it has a
    value; integer arrays (masc_k) keep -1 for "none"; layers (and the other labels) keep
    `new`'s order, then `old`'s."""
    new, old = _strings(new), _strings(old)
    ints = [v for v in new.data_vars if new[v].dtype.kind in "iu"]
    as_float = lambda ds: ds.assign({v: ds[v].where(ds[v] >= 0) for v in ints if v in ds})  # noqa: E731
    merged = as_float(new).combine_first(as_float(old))
    merged = merged.assign({v: merged[v].fillna(-1).astype(np.int64) for v in ints})
    order = {dim: list(dict.fromkeys([*map(str, new[dim].values), *map(str, old[dim].values)]))
             for dim in ("probe", "score", "variant", "subspaces") if dim in new.dims}
    if layers is not None and "layer" in new.dims:
        order["layer"] = [x for x in layers if x in set(map(str, merged.layer.values))]
    merged = merged.reindex({dim: np.array(values, dtype=object) for dim, values in order.items()})
    if "epoch" in merged.dims:
        merged = merged.sortby("epoch")
    merged.attrs = {**old.attrs, **new.attrs}
    return merged
