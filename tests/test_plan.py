"""The run plan (`--list-layers`) sizes what a capture really stores, and every
published pipeline parses and plans without its data on disk."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
import zarr

import stores
from capture.__main__ import main as capture_main
from capture.plan import plan
from stores import load_pipeline
from tests.conftest import REPO
from tests.test_vision import write_cifar10, write_cifar100, write_mnist, write_tiny

PUBLISHED = ["mnist-mlp", "cifar10-mlp", "mnist-cnn", "fashion-cnn", "cifar10-cnn",
             "cifar10-resnet18", "cifar100-alexnet", "tinyimagenet-alexnet"]


def test_plan_bytes_match_a_real_store(tiny_root, tiny_store):
    pipelines, _ = tiny_root
    config = load_pipeline("quickstart", pipelines).run({"corruption": 0.6, "seed": 0})
    p = plan(config)
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
    assert plan(config).forward_flops == sum(2 * a * b for a, b in zip(widths, widths[1:]))


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_pipelines_plan_without_data(name, capsys):
    pipeline = load_pipeline(name, REPO / "pipelines.yaml")
    runs = pipeline.runs()
    assert len(runs) == 15  # corruption 0.0-0.8 x seeds 0-2
    assert sorted({r.corruption.rate for r in runs}) == [0.0, 0.2, 0.4, 0.6, 0.8]
    assert capture_main([name, "--pipelines", str(REPO / "pipelines.yaml"), "--list-layers"]) == 0
    out = capsys.readouterr().out
    assert "(penultimate)" in out and "MiB" in out and "GPU hours" in out


WRITERS = {"mnist": lambda root: write_mnist(root, "MNIST"),
           "fashion_mnist": lambda root: write_mnist(root, "FashionMNIST"),
           "cifar10": write_cifar10, "cifar100": write_cifar100, "tinyimagenet": write_tiny}


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_pipelines_capture_tiny_files(tmp_path, name):
    """Each published pipeline, as written (model, capture points, reductions), captures
    two epochs of one run from tiny files in torchvision's formats."""
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())[name]
    data_root = tmp_path / "data"
    WRITERS[raw["data"]["name"]](data_root)
    raw["data"]["root"] = str(data_root)
    raw["sweep"] = {"corruption": [0.4], "seed": [1]}
    raw["train"].update({"max_epochs": 2, "stop_train_acc": None})
    raw["capture"]["schedule"] = {"epochs": [0, 1, 2]}
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(yaml.safe_dump({name: raw}))
    assert capture_main([name, "--pipelines", str(pipelines), "--root", str(tmp_path / "runs"),
                         "--device", "cpu", "--quiet"]) == 0
    run = stores.open_run(str(tmp_path / "runs" / name / "corruption=0.4,seed=1.zarr"))
    assert list(run["epoch"].values) == [0, 1, 2]
    config = load_pipeline(name, pipelines).runs()[0]
    widths = {layer.name: layer.units for layer in plan(config).layers}
    for point, units in widths.items():
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
