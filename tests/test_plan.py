"""The run plan (`--list-layers`) sizes what a capture really stores, and every
published pipeline parses and plans without its data on disk."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
import zarr

import stores
from capture.__main__ import main as capture_main
from capture.estimate import estimate_run
from stores import load_pipeline
from stores.config import yaml_load
from tests.conftest import REPO
from tests.test_vision import write_cifar10, write_cifar100, write_mnist, write_tiny

PUBLISHED = ["mnist-mlp", "cifar10-mlp", "mnist-cnn", "fashion-cnn", "cifar10-cnn",
             "cifar10-resnet18", "cifar100-alexnet", "tinyimagenet-alexnet"]


def test_plan_bytes_match_a_real_store(tiny_root, tiny_store):
    pipelines, _ = tiny_root
    config = load_pipeline("quickstart", pipelines).run({"corruption": 0.6, "seed": 0})
    p = estimate_run(config)
    group = zarr.open_group(tiny_store, mode="r")
    acts = sum(int(np.prod(g["values"].shape[1:])) * g["values"].dtype.itemsize
               for _, g in group["activations"].groups())
    weights = sum(int(np.prod(g["values"].shape[1:])) * g["values"].dtype.itemsize
                  for _, g in group["weights"].groups())
    assert (p.activation_bytes, p.weight_bytes) == (acts, weights)
    assert p.captured_epochs == len(group["epochs/epoch"][:]) - 1  # the spare slot is unused here


def test_forward_flops_of_an_mlp_are_two_per_multiply_add(tiny_root):
    pipelines, _ = tiny_root
    config = load_pipeline("quickstart", pipelines).runs()[0]
    widths = [64, *config.model.widths, 10]  # digits in, 10 classes out
    assert estimate_run(config).forward_flops == sum(2 * a * b for a, b in zip(widths, widths[1:]))


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_pipelines_plan_without_data(name, capsys):
    pipeline = load_pipeline(name, REPO / "pipelines.yaml")
    runs = pipeline.runs()
    assert len(runs) == 15  # corruption 0.0-0.8 x seeds 0-2
    assert sorted({r.corruption.rate for r in runs}) == [0.0, 0.2, 0.4, 0.6, 0.8]
    assert capture_main([name, "--pipelines", str(REPO / "pipelines.yaml"), "--list-layers"]) == 0
    out = capsys.readouterr().out
    assert "(penultimate)" in out and "MiB" in out and "GPU hours" in out


# ------------------------------------------------------------------ the published table
# PUBLISHED.md's training setups, typed here as literals (not read from the code under
# test): dataset, model, optimizer, lr, batch, stop threshold, Adam betas / SGD momentum.
SETUPS = {
    "mnist-mlp": ("mnist", "mlp", "sgd", 1e-3, 32, 0.999),
    "cifar10-mlp": ("cifar10", "mlp", "sgd", 1e-3, 32, 1.0),
    "mnist-cnn": ("mnist", "cnn", "adam", 2e-4, 128, 0.999),
    "fashion-cnn": ("fashion_mnist", "cnn", "adam", 2e-4, 128, 0.991),
    "cifar10-cnn": ("cifar10", "cnn", "adam", 2e-4, 32, 1.0),
    "cifar100-alexnet": ("cifar100", "alexnet", "adam", 1e-4, 128, 0.991),
    "tinyimagenet-alexnet": ("tinyimagenet", "alexnet", "adam", 1e-4, 500, 0.999),
    "cifar10-resnet18": ("cifar10", "resnet18", "sgd", 1e-3, 32, 1.0),
}
# The authors' probe points with their stored widths (whole, or projected to 2048 where a
# map is wider than 4096 units: ResNet-18's stem and layer1/layer2, Tiny ImageNet's input).
PUBLISHED_WIDTHS = {
    "mnist-mlp": {"input": 784, "relu1": 128, "relu2": 512, "relu3": 2048, "relu4": 2048},
    "cifar10-mlp": {"input": 3072, "relu1": 128, "relu2": 512, "relu3": 2048, "relu4": 2048},
    "mnist-cnn": {"input": 784, "flatten": 576, "relu7": 250, "relu8": 250, "relu9": 250},
    "fashion-cnn": {"input": 784, "flatten": 576, "relu7": 250, "relu8": 250, "relu9": 250},
    "cifar10-cnn": {"input": 3072, "flatten": 1024, "relu7": 250, "relu8": 250, "relu9": 250},
    "cifar100-alexnet": {"input": 3072, "flatten": 256, "relu6": 4096, "relu7": 4096},
    "tinyimagenet-alexnet": {"input": 2048, "flatten": 256, "relu6": 4096, "relu7": 4096},
    "cifar10-resnet18": {"maxpool": 2048, "layer1.0.relu1": 2048, "layer1.0": 2048,
                         "layer1.1.relu1": 2048, "layer1": 2048, "layer2": 2048,
                         "layer3": 4096, "layer4": 2048, "avgpool": 512},
}
PENULTIMATE = {"mlp": "relu4", "cnn": "relu9", "alexnet": "relu7", "resnet18": "avgpool"}


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_pipelines_resolve_to_the_published_setups(name):
    dataset, model, optimizer, lr, batch, stop = SETUPS[name]
    runs = load_pipeline(name, REPO / "pipelines.yaml").runs()
    assert sorted((r.corruption.rate, r.seed) for r in runs) == [
        (p, s) for p in (0.0, 0.2, 0.4, 0.6, 0.8) for s in (0, 1, 2)]
    for run in runs:
        assert run.data.name == dataset and run.model.name == model
        assert (run.corruption.mode, run.corruption.seed) == ("resample", 42)
        t = run.train
        assert (t.optimizer, t.lr, t.batch_size, t.stop_train_acc) == (optimizer, lr, batch, stop)
        assert (t.loss, t.max_epochs, t.weight_decay) == ("cross_entropy", 500, 0.0)
        if optimizer == "sgd":
            assert t.momentum == 0.9
        else:
            assert tuple(t.betas) == (0.9, 0.999)
        assert run.schedule[:12] == [0, 1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20] and run.schedule[12:14] == [25, 30]
    config = runs[0]
    if model == "mlp":
        assert tuple(config.model.widths) == (128, 512, 2048, 2048)
    if model in ("alexnet", "resnet18"):  # the 32-pixel stems, except Tiny ImageNet's AlexNet
        assert config.model.cifar_stem == (dataset != "tinyimagenet")
    layers = estimate_run(config).layers
    assert {layer.name: layer.units for layer in layers} == PUBLISHED_WIDTHS[name]
    assert [layer.name for layer in layers if layer.penultimate] == [PENULTIMATE[model]]


# As few images as the formats allow: these captures run the full-size models.
WRITERS = {"mnist": lambda root: write_mnist(root, "MNIST", n_train=20, n_test=10),
           "fashion_mnist": lambda root: write_mnist(root, "FashionMNIST", n_train=20, n_test=10),
           "cifar10": lambda root: write_cifar10(root, per_batch=2, n_test=6),
           "cifar100": lambda root: write_cifar100(root, n_train=20, n_test=10),
           "tinyimagenet": lambda root: write_tiny(root, per_class=2)}


@pytest.mark.slow
@pytest.mark.parametrize("name", PUBLISHED)
def test_published_pipelines_capture_tiny_files(tmp_path, name):
    """Each published pipeline, as written (model, capture points, reductions), captures
    the initialization and one trained epoch of one run from tiny files in
    torchvision's formats."""
    raw = yaml_load((REPO / "pipelines.yaml").read_text())[name]
    data_root = tmp_path / "data"
    WRITERS[raw["data"]["name"]](data_root)
    raw["data"]["root"] = str(data_root)
    raw["sweep"] = {"corruption": [0.4], "seed": [1]}
    raw["train"].update({"max_epochs": 1, "stop_train_acc": None})
    raw["capture"]["schedule"] = {"epochs": [0, 1]}
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(yaml.safe_dump({name: raw}))
    assert capture_main([name, "--pipelines", str(pipelines), "--root", str(tmp_path / "runs"),
                         "--device", "cpu", "--quiet"]) == 0
    run = stores.open_run(str(tmp_path / "runs" / name / "corruption=0.4,seed=1.zarr"))
    assert list(run["epoch"].values) == [0, 1]
    # what estimate_run() promises is checked against the same literals above
    assert set(run["activations"].children) == set(PUBLISHED_WIDTHS[name])
    for point, units in PUBLISHED_WIDTHS[name].items():
        values = stores.activations(run, point)
        assert values.sizes["unit"] == units and bool(values.notnull().all())


def test_list_and_index_pick_runs_for_array_jobs(tiny_root, capsys):
    """`--list` numbers the runs; `--index I` captures the I-th (complete stores are kept)."""
    pipelines, root = tiny_root
    common = ["quickstart", "--pipelines", str(pipelines), "--root", str(root), "--quiet"]
    assert capture_main([*common, "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["0\tcorruption=0.0,seed=0", "1\tcorruption=0.6,seed=0"]
    assert capture_main([*common, "--index", "1"]) == 0
    assert capsys.readouterr().out.startswith(str(root / "quickstart" / "corruption=0.6,seed=0.zarr"))
    assert capture_main([*common, "--index", "2"]) == 2
    assert "--index: expected 0 to 1 (quickstart has 2 runs), got 2" in capsys.readouterr().err
