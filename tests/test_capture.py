"""Capture on real digits: what the store holds equals what the model computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import stores
from capture.data import load_dataset
from capture.epoch import EpochCapture
from capture.models import MLP, build_model, load_weights, resolve_points
from capture.run import capture_run
from stores import StoreError, load_pipeline
from stores.config import DataConfig, run_config_from_dict


def test_schedule_and_commits(tiny_store):
    run = stores.open_run(tiny_store)
    assert list(run["epochs"].epoch.values) == [0, 1, 2, 4]
    assert run.attrs["status"] == "complete"
    assert run.attrs["config_hash"] == run_config_from_dict(run.attrs["config"]).hash()


def test_corruption_bookkeeping_in_store(tiny_store):
    table = stores.sample_table(tiny_store)
    train = table["split"] == "train"
    assert not table["corrupted"][~train].any()  # the test split is never corrupted
    np.testing.assert_array_equal(table["label_observed"][~train], table["label_true"][~train])
    clean = train & ~table["corrupted"]
    np.testing.assert_array_equal(table["label_observed"][clean], table["label_true"][clean])
    assert 0.5 < table["corrupted"][train].mean() < 0.7  # rate 0.6
    attrs = stores.open_run(tiny_store)["samples"].attrs
    assert (attrs["corruption_mode"], attrs["corruption_rate"], attrs["corruption_seed"]) == ("resample", 0.6, 0)
    # The recorded corruption is the one the seed gives.
    from capture.corruption import corrupt
    data = load_dataset(DataConfig())
    observed, mask = corrupt(data.y_train, "resample", 0.6, 10, seed=0)
    np.testing.assert_array_equal(table["label_observed"][train], observed)
    np.testing.assert_array_equal(table["corrupted"][train], mask)


def test_stored_activations_match_the_model_rebuilt_from_stored_weights(tiny_store):
    run = stores.open_run(tiny_store)
    config = run_config_from_dict(run.attrs["config"])
    data = load_dataset(config.data)
    x = stores.activations(run, "input").isel(epoch=-1).values
    np.testing.assert_array_equal(x, np.concatenate([data.x_train, data.x_test]))  # exact
    state = {n: stores.weights(run, n).isel(epoch=-1).values for n in stores.param_names(tiny_store)}
    model = load_weights(build_model(config.model, 64, 10), state).eval()
    with torch.no_grad():
        h1 = model.relu1(model.fc1(torch.as_tensor(x, dtype=torch.float32)))
        logits = model(torch.as_tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(stores.activations(run, "relu1").isel(epoch=-1).values,
                               h1.numpy(), rtol=1e-3, atol=1e-3)  # float16 storage
    labels = stores.sample_table(tiny_store)["label_true"]
    test = stores.sample_table(tiny_store)["split"] == "test"
    acc = np.mean(logits[test].argmax(1) == labels[test])
    assert acc == pytest.approx(float(stores.metrics(run)["test_acc"].isel(epoch=-1)))


def test_penultimate_is_always_captured_and_marked():
    model = MLP(64, (8, 6), 10)
    assert resolve_points(model, ("relu1",)) == ["relu1", "relu2"]
    with pytest.raises(ValueError, match="expected names from input, flatten, fc1"):
        resolve_points(model, ("relu9",))


def test_hooks_are_removed_and_writer_sees_whole_chunks(tmp_path):
    model = MLP(64, (8,), 10)
    written = []

    class FakeStore:
        def sample_block(self, layer):
            return 7

        def write_activations(self, slot, layer, start, values):
            written.append((layer, start, values.copy()))

    from capture.background import BackgroundWriter

    writer = BackgroundWriter(max_items=2)
    x = torch.randn(20, 64)
    capture = EpochCapture(model, ["input", "relu1"], FakeStore(), writer, x,
                           units={"input": 64, "relu1": 8}, batch_size=6)
    logits = capture(0)
    writer.close()
    assert not any(m._forward_hooks for m in model.modules())
    assert sorted((l, s, len(v)) for l, s, v in written) == sorted(
        [(l, s, n) for l in ("input", "relu1") for s, n in ((0, 7), (7, 7), (14, 6))])
    got = np.concatenate([v for l, s, v in sorted(written, key=lambda t: t[1]) if l == "input"])
    np.testing.assert_array_equal(got, x.numpy().astype(np.float16))
    np.testing.assert_allclose(logits.numpy(), model(x).detach().numpy(), rtol=1e-6)


def test_complete_store_is_skipped_and_other_config_refused(tiny_root, tiny_store):
    pipelines, root = tiny_root
    config = load_pipeline("quickstart", pipelines).run({"corruption": 0.6})
    before = stores.run_attrs(tiny_store)["created"]
    assert capture_run(config, str(root), progress=False) == tiny_store  # complete: skipped
    assert stores.run_attrs(tiny_store)["created"] == before
    import dataclasses
    other = dataclasses.replace(config, train=dataclasses.replace(config.train, lr=0.01))
    with pytest.raises(StoreError, match=r"differs in: train\.lr"):
        capture_run(other, str(root), progress=False)
    assert stores.run_attrs(tiny_store)["created"] == before
