"""Capture on real digits: what the store holds equals what the model computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import stores
from capture.data import load_dataset
from capture.epoch import EpochCapture
from capture.models import MLP, build_model, load_weights
from capture.points import resolve_points
from capture.run import capture_run
from stores import StoreError, load_pipeline, slabs
from stores.config import DataConfig, run_config_from_dict

from .tolerance import clear_argmax, relu_mlp_atol, unit_roundoff


def test_schedule_and_commits(tiny_store):
    run = stores.open_run(tiny_store)
    assert list(run["epochs"].epoch.values) == [0, 1, 2, 4]
    assert run.attrs["status"] == "complete"
    assert run.attrs["config_hash"] == run_config_from_dict(run.attrs["config"]).hash()


def test_corruption_bookkeeping_in_store(tiny_store):
    table = slabs.sample_table(tiny_store)
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
    # exact: pixels k/16 are exact in float16
    np.testing.assert_array_equal(x, np.concatenate([data.x_train, data.x_test]))
    state = {n: stores.weights(run, n).isel(epoch=-1).values for n in stores.param_names(tiny_store)}
    model = load_weights(build_model(config.model, 64, 10), state).eval()
    with torch.no_grad():
        h1 = model.relu1(model.fc1(torch.as_tensor(x, dtype=torch.float32)))
        logits = model(torch.as_tensor(x, dtype=torch.float32)).numpy()
    # The capture's batches against one batch here: two float32 paths through fc1, within
    # e = relu_mlp_atol of each other (ReLU is 1-Lipschitz); then the float16 store rounds
    # to within u16·|h| (or half the subnormal spacing, 2^-25, near zero).
    u16 = unit_roundoff(np.float16)
    e = relu_mlp_atol(x, [(state["fc1.weight"], state["fc1.bias"])], np.float32)
    np.testing.assert_allclose(stores.activations(run, "relu1").isel(epoch=-1).values,
                               h1.numpy(), rtol=u16, atol=e * (1 + u16) + 2.0**-25)
    labels = slabs.sample_table(tiny_store)["label_true"]
    test = slabs.sample_table(tiny_store)["split"] == "test"
    # test_acc came from the capture's batched float32 logits: a label can differ from
    # ours only on a row whose top-two margin rounding can close (clear_argmax).
    layers = [(m.weight.detach().numpy(), m.bias.detach().numpy())
              for m in model if isinstance(m, torch.nn.Linear)]
    near_ties = ~clear_argmax(logits[test], relu_mlp_atol(x[test], layers, np.float32))
    acc = np.mean(logits[test].argmax(1) == labels[test])
    stored = float(stores.metrics(run)["test_acc"].isel(epoch=-1))  # a float32 mean
    assert abs(acc - stored) <= near_ties.sum() / test.sum() + 2 * unit_roundoff(np.float32)


def test_penultimate_is_always_captured_and_marked():
    model = MLP(64, (8, 6), 10)
    assert resolve_points(model, ("relu1",), model.penultimate) == ["relu1", "relu2"]
    with pytest.raises(ValueError, match="expected names from input, flatten, fc1"):
        resolve_points(model, ("relu9",), model.penultimate)


def test_hooks_are_removed_and_writer_sees_whole_chunks(tmp_path):
    torch.manual_seed(0)  # the model's initialisation
    model = MLP(64, (8,), 10)
    written = []

    class FakeStore:
        def sample_block(self, layer):
            return 7

        def write_activations(self, slot, layer, start, values):
            written.append((layer, start, values.copy()))

    from capture.background import BackgroundWriter

    writer = BackgroundWriter(max_items=2)
    x = torch.randn(20, 64, generator=torch.Generator().manual_seed(0))
    capture = EpochCapture(model, ["input", "relu1"], FakeStore(), writer, x,
                           units={"input": 64, "relu1": 8}, batch_size=6)
    logits = capture(0)
    writer.close()
    assert not any(m._forward_hooks for m in model.modules())
    assert sorted((l, s, len(v)) for l, s, v in written) == sorted(
        [(l, s, n) for l in ("input", "relu1") for s, n in ((0, 7), (7, 7), (14, 6))])
    got = np.concatenate([v for l, s, v in sorted(written, key=lambda t: t[1]) if l == "input"])
    # Exact: torch's and NumPy's float32 -> float16 casts both round to nearest even.
    np.testing.assert_array_equal(got, x.numpy().astype(np.float16))
    # Batches of 6, 6, 6, 2 against one batch of 20: float32 products whose kernels (and
    # so summation orders) may differ with the row count. The bound is float32 rounding
    # of both layers (fan-in 64 + bias, then 8 + bias) carried through |W|, on these
    # magnitudes: the worst case, 7e-5 here on logits up to 1.1 (seen: 6e-8).
    layers = [(model.fc1.weight.detach().numpy(), model.fc1.bias.detach().numpy()),
              (model.head.weight.detach().numpy(), model.head.bias.detach().numpy())]
    np.testing.assert_allclose(logits.numpy(), model(x).detach().numpy(), rtol=0,
                               atol=relu_mlp_atol(x.numpy(), layers, np.float32))


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
