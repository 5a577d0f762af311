"""analyze.fit_probes: the probes over any activations DataArray, scored as the tasks score
a store's slab (the same code, so equal exactly), lazily over Dask, over several leading
dims, with readable refusals."""

from __future__ import annotations

import numpy as np
import pytest
import threadpoolctl
from sklearn.exceptions import ConvergenceWarning
import xarray as xr

import analyze
import stores
from analyze import arrays
from analyze.samples import SCORES
from analyze.tasks import Scored, Task, run_task
from stores.config import PROBES, AnalysisConfig
from stores.errors import ConfigError

FEW = ("masc", "masc_true", "velpic", "ncm")  # the quick ones, for the tests about shape


def _synthetic(n: int = 120, units: int = 6, classes: int = 3, seed: int = 0) -> xr.DataArray:
    """(epoch: 2, sample, unit) blobs, a quarter of the training labels flipped, with the
    sample coordinates a store's activations carry."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, units)) * 3
    x = np.stack([centres[true] + rng.normal(size=(n, units)) for _ in range(2)]).astype(np.float32)
    split = np.where(np.arange(n) < 3 * n // 4, "train", "test")
    flip = (split == "train") & (rng.random(n) < 0.25)
    observed = np.where(flip, (true + 1) % classes, true)
    return xr.DataArray(x, dims=("epoch", "sample", "unit"), coords={
        "epoch": [0, 5], "split": ("sample", split), "label_true": ("sample", true),
        "label_observed": ("sample", observed)})


def test_equals_run_task_on_every_epoch_of_a_layer(tiny_store):
    slots, epochs = stores.slabs.committed_slots(tiny_store)
    acc = analyze.fit_probes(stores.activations(tiny_store, "relu2")).compute()
    assert acc.dims == ("epoch", "probe", "score")
    assert list(acc.probe.values) == list(PROBES) and list(acc.score.values) == list(SCORES)
    settings = AnalysisConfig()
    for slot, epoch in zip(slots, epochs):
        ref = run_task(Task(tiny_store, "run", int(slot), int(epoch), "relu2"), settings)
        want = [[ref.accuracy[p][s] for s in SCORES] for p in PROBES]
        # the same slab through the same code (score_probes): equal, not close
        np.testing.assert_array_equal(acc.sel(epoch=epoch).values, np.array(want))


def test_dask_input_gives_a_lazy_result_equal_to_the_eager_one(tiny_store, monkeypatch):
    h = stores.activations(tiny_store, "relu1")
    eager = analyze.fit_probes(h.compute(), probes=FEW)
    assert isinstance(eager.data, np.ndarray)
    calls = []
    fitted = arrays.score_probes
    monkeypatch.setattr(arrays, "score_probes", lambda *a, **k: calls.append(1) or fitted(*a, **k))
    blas = threadpoolctl.threadpool_info()
    lazy = analyze.fit_probes(h, probes=FEW)
    assert lazy.chunks is not None and not calls  # nothing fitted yet
    xr.testing.assert_identical(lazy.compute(), eager)  # on dask's threads
    assert len(calls) == h.sizes["epoch"]
    assert threadpoolctl.threadpool_info() == blas  # the BLAS limit is lifted afterwards


def test_leading_run_and_epoch_dims_match_each_run_alone(tiny_root):
    folder = tiny_root[1] / "quickstart"
    runs = stores.open_runs(folder)
    h = runs["activations/relu1/values"]  # (run, epoch, sample, unit); labels (run, sample)
    assert h["label_observed"].dims == ("run", "sample")
    acc = analyze.fit_probes(h, probes=("masc", "ncm")).compute()
    assert acc.dims == ("run", "epoch", "probe", "score")
    for name in runs["run_name"].values:
        alone = analyze.fit_probes(stores.activations(str(folder / f"{name}.zarr"), "relu1"),
                                   probes=("masc", "ncm"))
        got = acc.sel(run=acc.run_name == name).squeeze("run", drop=True)
        np.testing.assert_array_equal(got.values, alone.values)
    # the corrupted run's MASC learns its own observed labels, the clean one's its own
    clean = acc.sel(corruption=0.0, probe="masc", score="train_observed")
    assert clean.dims == ("seed", "epoch")


def test_three_leading_dims_from_concat():
    h = xr.concat([_synthetic(seed=0), _synthetic(seed=0) * 2], dim="scale").transpose(
        "epoch", "sample", "scale", "unit")  # leading dims anywhere, sample not second
    acc = analyze.fit_probes(h.expand_dims(layer=["a"]), probes=FEW)
    assert acc.dims == ("layer", "epoch", "scale", "probe", "score")
    alone = analyze.fit_probes(_synthetic(seed=0), probes=FEW)
    # a scaled layer: the spectral probes and the cosine nearest mean are scale-invariant
    for scale in (0, 1):
        np.testing.assert_array_equal(acc.isel(layer=0, scale=scale).values, alone.values)


def test_masc_true_is_masc_fitted_on_the_truth_labels():
    h = _synthetic()
    both = analyze.fit_probes(h, probes=("masc", "masc_true"))
    on_truth = analyze.fit_probes(h, labels="label_true", probes="masc")
    for score in ("train_true", "test"):  # the scores of all rows against the true labels
        np.testing.assert_array_equal(both.sel(probe="masc_true", score=score).values,
                                      on_truth.sel(probe="masc", score=score).values)
    assert (both.sel(probe="masc", score="flipped_observed") > 0.5).all()  # it memorizes


def test_one_slab_without_truth_and_a_missing_slab():
    h = _synthetic()
    one = analyze.fit_probes(h.isel(epoch=0), truth=None, probes=["velpic", "masc"])
    assert one.dims == ("probe", "score") and list(one.probe.values) == ["velpic", "masc"]
    assert np.isnan(one.sel(score="flipped_true")).all()  # no sample is flipped
    gap = h.copy(data=h.values.copy())
    gap[1] = np.nan  # an epoch a run did not capture, as open_runs pads it
    acc = analyze.fit_probes(gap, probes=FEW, config=AnalysisConfig(masc_components=1))
    assert np.isnan(acc.isel(epoch=1)).all() and not np.isnan(acc.isel(epoch=0, score=0)).any()


@pytest.mark.parametrize("keyword, name", [("labels", "label"), ("truth", "truth"),
                                           ("split", "splits"), ("split", "epoch")])
def test_a_bad_coordinate_name_is_refused_readably(keyword, name):
    with pytest.raises(ValueError, match=rf"^{keyword}: expected a coordinate of the activations "
                                         rf"along 'sample' \(one of split, label_true, "
                                         rf"label_observed\), got '{name}'$"):
        analyze.fit_probes(_synthetic(), **{keyword: name})


def test_bad_arrays_are_refused_readably():
    h = _synthetic()
    with pytest.raises(ValueError, match=r"expected dims 'sample' and 'unit' .*got dims \(epoch, sample\)"):
        analyze.fit_probes(h.isel(unit=0))
    with pytest.raises(ValueError, match="labels: expected integer class labels in 'label_observed', "
                                         "got dtype float64"):
        analyze.fit_probes(h.assign_coords(label_observed=h.label_observed * 1.0))
    with pytest.raises(ValueError, match="split: expected rows whose 'split' is 'train' to fit on, "
                                         "got values test"):
        analyze.fit_probes(h.assign_coords(split=("sample", np.full(h.sizes["sample"], "test"))))


def test_an_unknown_probe_is_refused_listing_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"^fit_probes\.probes: unknown 'mystery': expected names from "
                                          + ", ".join(PROBES)):
        analyze.fit_probes(_synthetic(), probes=["masc", "mystery"])


def test_a_solver_at_its_iteration_limit_is_scored_and_said(monkeypatch):
    fitted = arrays.score_probes

    def stopped(*args, **kwargs):
        scored = fitted(*args, **kwargs)
        return Scored(scored.found, scored.spectral, not_converged=("logreg",))

    monkeypatch.setattr(arrays, "score_probes", stopped)
    with pytest.warns(ConvergenceWarning, match="fit_probes: logreg stopped at the solver's iteration limit"):
        acc = analyze.fit_probes(_synthetic(), probes=("ncm", "logreg"))
    assert not np.isnan(acc.sel(score="test")).any()
