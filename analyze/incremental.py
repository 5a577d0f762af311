"""Analysis that computes only what is new: results are keyed by (epoch, layer).

A store's earlier results (`analysis/dynamics`, `analysis/edit`) say which (layer, epoch)
pairs are computed already, with which probe settings. `python -m analyze` plans tasks
for the other committed pairs only and merges their results into the stored ones, so it
can run while a capture is still writing, and again later, without redoing any work.
Results for the same (layer, epoch) from the same committed data are the same whenever
they are computed, so merged results equal those of one full analysis.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from stores.runs import stored_analysis

from .tasks import ProbeSettings


def stored(path: str) -> dict[str, xr.Dataset]:
    """Every whole `analysis/<name>` group of a store, loaded into memory (empty if none);
    a group an interrupted analysis left incomplete is absent here, so it is recomputed."""
    return stored_analysis(path)


def usable(results: dict[str, xr.Dataset], settings: ProbeSettings) -> bool:
    """Stored grid results computed with these settings (else everything is redone)."""
    dyn, edit = results.get("dynamics"), results.get("edit")
    if dyn is None or edit is None:
        return False
    return ([str(p) for p in dyn.probe.values] == list(settings.probes)
            and dyn.attrs.get("masc_components") == settings.masc_components
            and dyn.attrs.get("knn_neighbors") == settings.knn_neighbors
            and dyn.attrs.get("spectral") == settings.spectral)


def done(results: dict[str, xr.Dataset], settings: ProbeSettings,
         layers: list[str]) -> set[tuple[str, int]]:
    """The (layer, epoch) pairs the stored results cover, by whole epochs: an epoch is
    done when every layer has its probes and the penultimate one its edit."""
    if not usable(results, settings):
        return set()
    dyn, edit = results["dynamics"], results["edit"]
    stored_layers = [str(x) for x in dyn.layer.values]
    if not set(layers) <= set(stored_layers):
        return set()
    computed = dyn["accuracy"].notnull().any(["probe", "score"]).values  # (layer, epoch)
    rows = [stored_layers.index(layer) for layer in layers]
    edited = {int(e) for e in edit.epoch.values}
    return {(layer, int(epoch)) for j, epoch in enumerate(dyn.epoch.values)
            if computed[rows, j].all() and int(epoch) in edited for layer in layers}


def merge(old: dict[str, xr.Dataset], new: dict[str, xr.Dataset], layers: list[str]) -> dict:
    """`new` grid results folded into `old` ones: new values win where both exist."""
    out = dict(new)
    out["dynamics"] = _merge_dynamics(old["dynamics"], new["dynamics"], layers)
    out["edit"] = _merge_edit(old["edit"], new["edit"])
    return out


def _merge_dynamics(old: xr.Dataset, new: xr.Dataset, layers: list[str]) -> xr.Dataset:
    epochs = sorted({int(e) for e in old.epoch.values} | {int(e) for e in new.epoch.values})
    n_class = max(old.sizes.get("class", 0), new.sizes.get("class", 0))
    probes = [str(p) for p in new.probe.values]
    scores = [str(s) for s in new.score.values]

    def align(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
        ds = ds.assign_coords(probe=[str(p) for p in ds.probe.values],
                              layer=[str(x) for x in ds.layer.values],
                              score=[str(s) for s in ds.score.values])
        acc = ds["accuracy"].reindex(probe=probes, layer=layers, epoch=epochs, score=scores)
        k = ds["masc_k"].reindex(layer=layers, epoch=epochs, fill_value=-1)
        pad = n_class - k.shape[-1]
        return acc.values, np.pad(k.values, ((0, 0), (0, 0), (0, pad)), constant_values=-1)

    (acc_old, k_old), (acc_new, k_new) = align(old), align(new)
    fresh = ~np.isnan(acc_new).all(axis=(0, 3))  # (layer, epoch) computed now
    acc = np.where(fresh[None, :, :, None], acc_new, acc_old)
    k = np.where(fresh[:, :, None], k_new, k_old)
    return xr.Dataset(
        {"accuracy": (("probe", "layer", "epoch", "score"), acc),
         "masc_k": (("layer", "epoch", "class"), k.astype(np.int64))},
        coords={"probe": np.array(probes, dtype=object), "layer": np.array(layers, dtype=object),
                "epoch": epochs, "score": np.array(scores, dtype=object)},
        attrs={**old.attrs, **new.attrs},
    )


def _merge_edit(old: xr.Dataset, new: xr.Dataset) -> xr.Dataset:
    replaced = {int(e) for e in new.epoch.values}
    keep = [int(e) for e in old.epoch.values if int(e) not in replaced]
    strings = lambda ds: ds.assign_coords(  # noqa: E731  (one string dtype for both)
        variant=np.array([str(v) for v in ds.variant.values], dtype=object),
        score=np.array([str(s) for s in ds.score.values], dtype=object))
    parts = [strings(old.sel(epoch=keep)), strings(new)] if keep else [strings(new)]
    merged = xr.concat(parts, dim="epoch", combine_attrs="override").sortby("epoch")
    merged.attrs = {**old.attrs, **new.attrs}
    return merged
