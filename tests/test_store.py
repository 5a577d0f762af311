"""Writer -> reader round trip, the commit protocol, and plain-xarray readability."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import zarr

import stores
from stores import LayerSpec, RunWriter, StoreError, slabs
from stores.groups import walk_arrays


def _make_store(path, rng):
    n_train, n_test, units = 30, 10, 7
    samples = {
        "split": np.array(["train"] * n_train + ["test"] * n_test),
        "index": np.arange(n_train + n_test) * 3,
        "label_true": rng.integers(0, 4, n_train + n_test),
        "corrupted": np.r_[rng.random(n_train) < 0.5, np.zeros(n_test, bool)],
    }
    samples["label_observed"] = np.where(samples["corrupted"], (samples["label_true"] + 1) % 4,
                                         samples["label_true"])
    writer = RunWriter.create(
        str(path), attrs={"run_name": "r", "config_hash": "x"}, schedule=[0, 1, 5],
        samples=samples, layers=[LayerSpec("a", units, (units,)), LayerSpec("b", 3, (3,), penultimate=True)],
        params={"head.weight": (4, 3), "head.bias": (4,)},
    )
    return writer, samples


def test_round_trip_and_commit_protocol(tmp_path):
    rng = np.random.default_rng(0)
    writer, samples = _make_store(tmp_path / "s.zarr", rng)
    acts = {e: rng.normal(size=(40, 7)).astype(np.float32) for e in range(3)}
    for slot, epoch in enumerate([0, 1, 5]):
        writer.write_activations(slot, "a", 0, acts[slot])
        writer.write_activations(slot, "b", 0, acts[slot][:, :3])
        writer.write_weights(slot, {"head.weight": np.full((4, 3), slot, np.float32),
                                    "head.bias": np.zeros(4, np.float32)})
        writer.write_metrics(slot, {"test_acc": 0.1 * slot})
        if slot < 2:  # slot 2 is fully written but never committed
            writer.commit(slot, epoch)
    writer.finish()

    run = stores.open_run(str(tmp_path / "s.zarr"))
    a = stores.activations(run, "a")
    assert a.dims == ("epoch", "sample", "unit")
    assert list(a.epoch.values) == [0, 1]  # the uncommitted epoch is invisible
    np.testing.assert_array_equal(a.values, np.stack([acts[0], acts[1]]).astype(np.float16))
    for name in ("split", "label_true", "label_observed", "corrupted"):
        np.testing.assert_array_equal(a[name].values, samples[name])
    m = stores.metrics(run)
    assert list(m.epoch.values) == [0, 1]
    np.testing.assert_allclose(m["test_acc"].values, [0.0, 0.1])
    w = stores.weights(run, "head.weight")
    assert w.dims == ("epoch", "out", "in")
    np.testing.assert_array_equal(w.values[1], np.ones((4, 3)))
    assert stores.penultimate_layer(run) == "b" == stores.penultimate_layer(str(tmp_path / "s.zarr"))
    assert stores.layers(str(tmp_path / "s.zarr")) == ["a", "b"]


def test_plain_xarray_reads_store_with_dims(tmp_path):
    writer, _ = _make_store(tmp_path / "s.zarr", np.random.default_rng(1))
    writer.write_activations(0, "a", 0, np.ones((40, 7), np.float32))
    writer.commit(0, 0)
    writer.finish()
    tree = xr.open_datatree(str(tmp_path / "s.zarr"), engine="zarr")
    assert tree["activations/a/values"].dims == ("epoch", "sample", "unit")
    assert tree["weights/head.weight/values"].dims == ("epoch", "out", "in")
    assert tree["samples/split"].dims == ("sample",)
    assert tree["epochs/committed"].values.tolist() == [True, False, False, False]
    # Every array in the store names its dims.
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    for path, array in walk_arrays(group):
        assert array.metadata.dimension_names is not None, path


def test_existing_store_is_not_overwritten(tmp_path):
    writer, _ = _make_store(tmp_path / "s.zarr", np.random.default_rng(2))
    writer.commit(0, 0)
    with pytest.raises(StoreError, match="already exists"):
        _make_store(tmp_path / "s.zarr", np.random.default_rng(2))
    assert list(slabs.committed_slots(str(tmp_path / "s.zarr"))[0]) == [0]


def test_missing_and_foreign_stores_give_clear_errors(tmp_path):
    with pytest.raises(StoreError, match="no run store"):
        stores.open_run(str(tmp_path / "nope.zarr"))
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w").attrs["x"] = 1
    with pytest.raises(StoreError, match="schema_version"):
        stores.open_run(str(tmp_path / "other.zarr"))


def test_chunks_are_one_epoch_and_at_least_a_mebibyte_or_whole():
    assert stores.schema.sample_block(100_000, 512, 2) * 512 * 2 >= 1 << 20
    assert stores.schema.sample_block(1797, 64, 2) == 1797  # a whole epoch is < 1 MiB


def test_analysis_groups_align_with_committed_epochs(tmp_path):
    path = str(tmp_path / "s.zarr")
    writer, _ = _make_store(tmp_path / "s.zarr", np.random.default_rng(3))
    for slot, epoch in enumerate([0, 1, 5]):
        writer.commit(slot, epoch)
    writer.finish()
    xr.Dataset({"acc": ("epoch", [0.5])}, coords={"epoch": [5]}).to_zarr(
        path, group="analysis/x", mode="w", zarr_format=3, consolidated=False)
    stores.consolidate(path)
    acc = stores.open_run(path)["analysis/x"]["acc"]
    assert list(acc.epoch.values) == [0, 1, 5]
    np.testing.assert_array_equal(acc.values, [np.nan, np.nan, 0.5])
