"""Schema version 2: the epoch and sample coordinates a plain xarray reader finds in the
store itself, the CF-style attributes, and version-1 stores that keep opening."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import stores
from stores import LayerSpec, RunWriter, StoreError, cf, coordinates, schema
from stores.groups import walk_arrays
from stores.repair import repair
from stores.validate import validate

V1_FIXTURE = Path(__file__).parent / "fixtures" / "v1_store.zarr"
SCHEDULE = [0, 1, 5, 10]


def _plain(path) -> xr.DataTree:
    with warnings.catch_warnings():  # a running store has no consolidated metadata
        warnings.simplefilter("ignore", RuntimeWarning)
        return xr.open_datatree(str(path), engine="zarr")


def _store(path, commits=((0, 0), (1, 1), (2, 5)), finish=True):
    """A store of two capture points and two parameters with `commits` (slot, epoch)
    written and committed; epoch 10 (and the spare slot) never reached."""
    rng = np.random.default_rng(0)
    n = 40
    samples = {"split": np.array(["train"] * 30 + ["test"] * 10), "index": np.arange(n) * 2,
               "label_true": rng.integers(0, 4, n), "corrupted": np.r_[rng.random(30) < 0.5,
                                                                      np.zeros(10, bool)]}
    samples["label_observed"] = np.where(samples["corrupted"], (samples["label_true"] + 1) % 4,
                                         samples["label_true"])
    writer = RunWriter.create(
        str(path), attrs={"run_name": "r"}, schedule=SCHEDULE, samples=samples,
        layers=[LayerSpec("a", 7, (7,)), LayerSpec("b", 3, (3,), penultimate=True)],
        params={"head.weight": (4, 3), "head.bias": (4,)}, metrics=["test_acc"])
    for slot, epoch in commits:
        writer.write_activations(slot, "a", 0, rng.normal(size=(n, 7)).astype(np.float16))
        writer.write_activations(slot, "b", 0, rng.normal(size=(n, 3)).astype(np.float16))
        writer.write_weights(slot, {"head.weight": rng.normal(size=(4, 3)).astype(np.float32),
                                    "head.bias": rng.normal(size=4).astype(np.float32)})
        writer.write_metrics(slot, {"test_acc": 0.1 * (slot + 1)})
        writer.commit(slot, epoch)
    if finish:
        writer.finish()
    return samples


def test_plain_xarray_selects_each_committed_epoch(tmp_path):
    samples = _store(tmp_path / "s.zarr")
    tree = _plain(tmp_path / "s.zarr")
    run = stores.open_run(str(tmp_path / "s.zarr"))
    assert list(run["activations/a"].dataset.epoch.values) == [0, 1, 5]
    for layer in ("a", "b"):
        plain, ours = tree[f"activations/{layer}/values"], stores.activations(run, layer)
        for epoch in ours.epoch.values:
            np.testing.assert_array_equal(plain.sel(epoch=epoch).values, ours.sel(epoch=epoch).values)
        # slots never committed are -1, never a scheduled epoch's number
        assert plain.epoch.values.tolist() == [0, 1, 5, -1, -1]
        with pytest.raises(KeyError):
            plain.sel(epoch=10)  # scheduled, never reached
        for field in schema.SAMPLE_COORDS:
            np.testing.assert_array_equal(plain[field].values, samples[field].astype(plain[field].dtype))
        assert plain.sample.values.tolist() == list(range(40))
    weights = stores.weights(run, "head.weight")
    np.testing.assert_array_equal(tree["weights/head.weight/values"].sel(epoch=5).values,
                                  weights.sel(epoch=5).values)
    assert tree["metrics"]["test_acc"].sel(epoch=5).item() == pytest.approx(0.3)
    committed = tree["metrics"]["test_acc"].epoch >= 0
    assert tree["metrics"]["test_acc"].isel(epoch=committed.values).epoch.values.tolist() == [0, 1, 5]


def test_every_array_has_cf_attributes_and_names_its_dims(tmp_path):
    _store(tmp_path / "s.zarr")
    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    arrays = list(walk_arrays(root))
    assert len(arrays) > 20
    for name, array in arrays:
        assert not cf.missing(dict(array.attrs)), name
        assert array.metadata.dimension_names is not None, name
    tree = _plain(tmp_path / "s.zarr")
    assert tree["activations/a/values"].attrs["long_name"] == "activations of a"
    assert tree["metrics"]["test_acc"].attrs["units"] == "1"


def test_a_kill_between_the_flag_and_the_copies_hides_the_epoch_until_synced(tmp_path):
    path = tmp_path / "s.zarr"
    _store(path, commits=((0, 0), (1, 1)), finish=False)
    # What a kill right after epoch 1's commit flag leaves: the copies still say slot 0 only.
    root = zarr.open_group(str(path), mode="r+")
    coordinates.write_copies(root, [True, False, False, False, False], SCHEDULE + [-1])
    assert _plain(path)["activations/a/values"].epoch.values.tolist()[:2] == [0, -1]
    report = validate(str(path))
    stale = [p for p in report.problems if p.kind == coordinates.STALE]
    assert {p.array for p in stale} == {"activations/epoch", "weights/epoch", "metrics/epoch"}
    assert len(stale) == len(report.problems) and all("epochs/committed" in str(p) for p in stale)
    _, result = repair(str(path))
    assert sorted(result.rewritten) == ["activations/epoch", "metrics/epoch", "weights/epoch"]
    assert not result.uncommitted and validate(str(path)).ok
    assert _plain(path)["activations/a/values"].epoch.values.tolist()[:2] == [0, 1]


def test_reopening_a_store_writes_the_copies_again(tmp_path):
    path = tmp_path / "s.zarr"
    _store(path, commits=((0, 0),), finish=False)
    zarr.open_array(str(path / "weights" / "epoch"), mode="r+")[:] = 7  # stale, whatever the cause
    RunWriter.reopen(str(path), [LayerSpec("a", 7, (7,)), LayerSpec("b", 3, (3,))],
                     {"head.weight": (4, 3), "head.bias": (4,)},
                     stores.slabs.sample_table(str(path)))
    assert _plain(path)["weights/head.bias/values"].epoch.values.tolist() == [0, -1, -1, -1, -1]


def test_names_taken_by_coordinates_are_refused(tmp_path):
    common = dict(attrs={}, schedule=[0], samples={k: np.zeros(2, bool if k == "corrupted" else int)
                                                    for k in schema.SAMPLE_FIELDS} | {
        "split": np.array(["train", "test"])}, params={})
    with pytest.raises(StoreError, match="taken by a coordinate"):
        RunWriter.create(str(tmp_path / "a.zarr"), layers=[LayerSpec("sample", 2, (2,))], **common)
    with pytest.raises(StoreError, match="taken by"):
        RunWriter.create(str(tmp_path / "b.zarr"), layers=[LayerSpec("x", 2, (2,))],
                         metrics=["epoch"], **common)
    with pytest.raises(StoreError, match="taken by the epoch coordinate"):
        writer = RunWriter.create(str(tmp_path / "c.zarr"), layers=[LayerSpec("x", 2, (2,))], **common)
        writer.write_metrics(0, {"epoch": 1.0})


# ------------------------------------------------------------------ version 1
def test_a_version_1_store_opens_validates_and_analyses(tmp_path):
    """tests/fixtures/v1_store.zarr was written by the last version-1 code (see
    make_v1_store.py beside it): no coordinate copies, no CF attributes."""
    path = tmp_path / "v1.zarr"
    shutil.copytree(V1_FIXTURE, path)
    assert stores.run_attrs(str(path))["schema_version"] == 1
    report = validate(str(path))
    assert report.ok, [str(p) for p in report.problems]
    run = stores.open_run(str(path))
    h = stores.activations(run, "relu1")
    assert h.dims == ("epoch", "sample", "unit") and list(h.epoch.values) == [0, 1, 2]
    assert "label_true" in h.coords and list(stores.metrics(run)) == ["test_acc"]
    plain = _plain(path)["activations/relu1/values"]
    assert "epoch" not in plain.coords  # version 1: positions only (the README says so)
    np.testing.assert_array_equal(plain.isel(epoch=2).values, h.sel(epoch=2).values)
    from analyze.pipeline import analyse_stores
    analyse_stores([str(path)], str(tmp_path / "out"), progress=False)
    assert (tmp_path / "out" / "report.md").is_file()
    assert stores.run_attrs(str(path))["schema_version"] == 1  # the analysis wrote no v2 layout
    dynamics = stores.open_run(str(path))["analysis/dynamics"]["accuracy"]
    assert dynamics.sizes["epoch"] == 3 and float(dynamics.max()) <= 1
    assert validate(str(path)).ok


def test_the_fixture_is_untouched_by_the_suite():
    root = zarr.open_group(str(V1_FIXTURE), mode="r")
    assert root.attrs["schema_version"] == 1 and schema.ANALYSIS not in root
