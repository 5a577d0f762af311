"""Models from anywhere: a factory's nn.Module or torchvision's with local weights, its
head and penultimate point found; token reductions against direct torch computations."""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import stores
from analyze.crosscheck import rebuild
from capture.models import build_model
from capture.points import capture_layers, find_head, find_penultimate, resolve_points, sample_batch
from capture.reduce import Reducer, ReductionError, parse
from capture.run import capture_run
from stores import ConfigError, slabs
from stores.config import ModelConfig, load_pipelines, parse_pipeline, run_config_from_dict

from .factory_models import FunctionalNet, token_net
from .tolerance import relu_mlp_atol, sum_atol

TINY = "tests.factory_models:tiny_net"
CPU = torch.device("cpu")


def pipeline(model: dict, **capture) -> dict:
    """A digits pipeline (two epochs, every one captured) around the `model` block."""
    return {"data": {"name": "digits"}, "model": model,
            "train": {"max_epochs": 2, "batch_size": 64, "stop_train_acc": None},
            "capture": {"points": ["input"], "schedule": {"epochs": [0, 1, 2]}, "dtype": "float32",
                        **capture}}


def test_a_factory_model_gets_its_head_and_penultimate_found():
    config = parse_pipeline("p", pipeline({"factory": TINY, "kwargs": {"hidden": 8}})).runs()[0]
    torch.manual_seed(0)
    model = build_model(config.model, (64,), 10)
    assert config.model.name == "mlp" and type(model).__name__ == "TinyNet"  # name: not read
    assert (model.body[1].out_features, model.out.out_features) == (8, 10)
    head = find_head(model)
    assert head == "out"
    # body (flatten, fc, relu) is the last module whose output is the head's input
    assert find_penultimate(model, sample_batch((64,)), head) == "body"
    assert find_penultimate(model, sample_batch((64,)), head, "body.2") == "body.2"  # as named
    assert find_head(model, "body.1") == "body.1"
    with pytest.raises(ValueError, match="head: expected a module path of TinyNet"):
        find_head(model, "nope")
    with pytest.raises(ValueError, match="penultimate: expected a capture point"):
        find_penultimate(model, sample_batch((64,)), head, "logits")
    with pytest.raises(ValueError, match="penultimate: no module's output is the input"):
        find_penultimate(FunctionalNet(), sample_batch((4,)), "head")
    with pytest.raises(ValueError, match="head: .* has no nn.Linear"):
        find_head(nn.Sequential(nn.ReLU()))


@pytest.mark.parametrize("name, in_shape, extra", [
    ("mlp", (64,), {"widths": (8, 6)}), ("modular_mlp", (22,), {"widths": (8,), "batchnorm": True}),
    ("cnn", (1, 28, 28), {})])
def test_the_search_finds_what_the_built_in_models_name(name, in_shape, extra):
    model = build_model(ModelConfig(name=name, **extra), in_shape, 10)
    plain = nn.Sequential(OrderedDict(copy.deepcopy(model).named_children()))  # no attributes
    assert not hasattr(plain, "penultimate") and not hasattr(plain, "head_name")
    head = find_head(plain)
    assert head == find_head(model) == model.head_name
    assert find_penultimate(plain, sample_batch(in_shape), head) == model.penultimate
    assert find_penultimate(model, sample_batch(in_shape), head) == model.penultimate


def test_torchvision_resnet18_with_local_weights(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(1)
    saved = torchvision.models.resnet18(num_classes=10).state_dict()
    torch.save(saved, tmp_path / "resnet18.pt")
    raw = {"factory": "torchvision.models:resnet18", "kwargs": {"num_classes": 10},
           "weights": str(tmp_path / "resnet18.pt")}
    config = parse_pipeline("p", pipeline(raw)).runs()[0]
    torch.manual_seed(2)  # another initialization: only the file can give the saved weights
    model = build_model(config.model, (3, 32, 32), 10)
    state = model.state_dict()
    assert state.keys() == saved.keys()
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    assert find_head(model) == "fc"
    assert find_penultimate(model, sample_batch((3, 32, 32), 2), "fc") == "avgpool"


def test_model_config_errors(tmp_path):
    def error(model: dict) -> str:
        with pytest.raises(ConfigError) as info:
            build_model(parse_pipeline("p", pipeline(model)).runs()[0].model, (64,), 10)
        assert "\n" not in str(info.value)  # one readable line
        return str(info.value)

    assert "p.model.factory: expected 'package.module:function'" in error(
        {"factory": "torchvision.models.resnet18"})
    assert "p.model.widths: a built-in model's key" in error({"factory": TINY, "widths": [8]})
    assert "p.model.name: a built-in model's key" in error({"factory": TINY, "name": "cnn"})
    assert "p.model.kwargs: the arguments of model.factory" in error({"kwargs": {"hidden": 8}})
    assert "p.model.kwargs: expected a mapping" in error({"factory": TINY, "kwargs": [1]})
    assert "model.factory: cannot import tests.factory_models:nope" in error(
        {"factory": "tests.factory_models:nope"})
    assert "model.factory: cannot import no_such_package.x:f" in error({"factory": "no_such_package.x:f"})
    assert "returned a str: expected a torch.nn.Module" in error(
        {"factory": "tests.factory_models:not_a_model"})
    assert "model.kwargs: tests.factory_models:tiny_net refuses" in error(
        {"factory": TINY, "kwargs": {"depth": 3}})
    missing = tmp_path / "missing.pt"
    assert f"model.weights: cannot read {missing}" in error({"factory": TINY, "weights": str(missing)})
    (tmp_path / "text.pt").write_text("not a state dict")
    assert "model.weights: cannot read" in error({"factory": TINY, "weights": str(tmp_path / "text.pt")})
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    assert "model.weights: does not fit the model" in error(
        {"factory": TINY, "weights": str(tmp_path / "other.pt")})
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    assert "holds a list, not a state dict" in error({"factory": TINY, "weights": str(tmp_path / "list.pt")})


# Hashes of published runs as they were before the model block gained factory, kwargs,
# weights, head and penultimate: keys that default to null leave a run's identity alone.
PUBLISHED_HASHES = {
    ("quickstart", "corruption=0.0,seed=0"): "b5431d312ec16a37d5e13631342245f269f9b6b76869e5dcc9c115bfd543a5f6",
    ("quickstart", "corruption=0.6,seed=0"): "0aad4748a8cd45b421a4775e2193b45c36b3352f85a34911ff5fda3f89ee3351",
    ("modular-batchnorm", "p=97,xi=0.2,alpha=0.65,weight_decay=0.0,seed=0"):
        "d3f12b33d1d7a59b9f6bdcaaf9eb1aa3a5356b04c02893f5f017a0decefd0b07",
    ("cifar10-resnet18", "corruption=0.0,seed=0"): "4f8131b5e4f373ecfc9afad84ca1ffa0190cc7b916d940035772adbdf73509e9",
    ("cifar100-alexnet", "corruption=0.0,seed=0"): "213fc2a1c751d90e591e5f2f45e505870b0aeab2efab0afc1639b279cb5a2c57",
    ("mnist-cnn", "corruption=0.0,seed=0"): "60eee5318e58617b8d1209e51bbd377c95d21ff23a9af646ed0bce2508ed87db",
}
NEW_MODEL_KEYS = {"factory", "kwargs", "weights", "head", "penultimate"}


def test_existing_runs_keep_their_config_hash():
    runs = {(p.name, r.name): r for p in load_pipelines("pipelines.yaml").values() for r in p.runs()}
    for key, digest in PUBLISHED_HASHES.items():
        assert runs[key].hash() == digest, key
    for config in runs.values():
        assert not NEW_MODEL_KEYS & set(config.identity().get("model", {})), config.name
    factory = parse_pipeline("p", pipeline({"factory": TINY, "kwargs": {"hidden": 8}})).runs()[0]
    assert factory.identity()["model"] == {"factory": TINY, "kwargs": {"hidden": 8}}
    assert run_config_from_dict(factory.to_dict()).hash() == factory.hash()  # as a store reads it


@pytest.mark.slow
def test_a_pipeline_captures_a_factory_model_end_to_end(tmp_path):
    model = {"factory": TINY, "kwargs": {"hidden": 12}}
    config = parse_pipeline("anywhere", pipeline(model, points=["input", "body.1"])).runs()[0]
    capture_run(config, str(tmp_path), progress=False)
    path = config.store_path(str(tmp_path))
    run = stores.open_run(path)
    assert run.attrs["status"] == "complete" and run.attrs["head"] == "out"
    assert list(run["epochs"].epoch.values) == [0, 1, 2]
    assert stores.penultimate_layer(path) == "body"
    assert set(stores.layers(path)) == {"input", "body.1", "body"}
    hidden = stores.activations(run, "body").isel(epoch=-1).values
    assert hidden.shape == (len(run["samples"].sample), 12)
    # The stored penultimate point is relu(W x + b) of the stored input and weights (float64 here).
    x = slabs.slab(path, "input", 2).astype(np.float64)
    w, b = (slabs.weight_slab(path, f"body.1.{p}", 2).astype(np.float64) for p in ("weight", "bias"))
    np.testing.assert_allclose(hidden, np.maximum(x @ w.T + b, 0), rtol=0,
                               atol=relu_mlp_atol(x, [(w, b)]))
    # analysis rebuilds the model from the store's config (the factory again)
    state = {name: slabs.weight_slab(path, name, 2) for name in stores.param_names(path)}
    rebuilt = rebuild(path, state, (64,))
    assert type(rebuilt).__name__ == "TinyNet"
    assert torch.equal(rebuilt.out.bias, torch.as_tensor(state["out.bias"]))


def test_token_reductions_against_direct_computations():
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(5, 7, 3, generator=gen)  # (batch, tokens, units)
    want = {"mean": torch.stack([sum(out[b, t] for t in range(7)) / 7 for b in range(5)]),
            "first": torch.stack([out[b, 0] for b in range(5)]),
            "last": torch.stack([out[b, 6] for b in range(5)]),
            "max": torch.tensor([[max(float(out[b, t, u]) for t in range(7)) for u in range(3)]
                                 for b in range(5)])}
    for mode, expected in want.items():
        reducer = Reducer(parse(f"tokens:{mode}", "enc"), (7, 3), CPU, "enc")
        got = reducer(out)
        assert reducer.units == got.shape[1] == 3 and parse(f"tokens:{mode}").spec == f"tokens:{mode}"
        # the mean: two float32 orders of a sum of 7 terms (and a division); the others exact
        atol = sum_atol(np.float32, 8, out.abs().sum(1).max()) / 7 if mode == "mean" else 0.0
        torch.testing.assert_close(got, expected, rtol=0, atol=atol)
    rank = r"capture.reductions.enc: tokens:mean: expected an output \(batch, tokens, units\), got one"
    with pytest.raises(ReductionError, match=rank + r" sample of shape \(4, 5, 6\)"):
        Reducer(parse("tokens:mean", "enc"), (4, 5, 6), CPU, "enc")
    with pytest.raises(ReductionError, match="tokens:mean"):
        parse("tokens:median", "enc")
    with pytest.raises(ConfigError, match="capture.reductions: mix: expected .*tokens:mean"):
        parse_pipeline("p", pipeline({"factory": TINY}, reductions={"mix": "tokens:median"}))


def test_a_token_point_is_laid_out_and_reduced():
    torch.manual_seed(0)
    model = token_net(dim=6).eval()
    x = torch.randn(4, 5, 6)
    head = find_head(model)
    penultimate = find_penultimate(model, x, head)
    assert (head, penultimate) == ("head", "pool")
    points = resolve_points(model, ("mix",), penultimate)
    layers, reducers = capture_layers(model, points, (5, 6), {"mix": "tokens:last"}, 0, CPU, penultimate)
    assert [(l.name, l.units, tuple(l.original_shape), l.reduction) for l in layers] == [
        ("mix", 6, (5, 6), "tokens:last"), ("pool", 6, (6,), "flatten")]
    with torch.inference_mode():
        mixed = model.mix(x)
    np.testing.assert_array_equal(reducers["mix"](mixed).numpy(), mixed[:, -1].numpy())
    with pytest.raises(ReductionError, match="capture.reductions.pool: tokens:max: expected an output"):
        capture_layers(model, ["pool"], (5, 6), {"pool": "tokens:max"}, 0, CPU, "mix")
