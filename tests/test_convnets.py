"""Image models build, run and capture on CPU; reductions keep what they promise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import stores
from analyze.probes import MASC
from capture.background import BackgroundWriter
from capture.epoch import EpochCapture
from capture.models import build_model
from capture.points import capture_layers, output_shapes, resolve_points
from capture.reduce import Reducer, ReductionError, parse
from stores import RunWriter
from tests.tolerance import sum_atol
from stores.config import ModelConfig, ScheduleConfig

CASES = [
    ("mlp", (1, 28, 28), {"widths": (128, 512, 64)}),
    ("cnn", (1, 28, 28), {}),
    ("cnn", (3, 32, 32), {}),
    ("alexnet", (3, 32, 32), {"cifar_stem": True}),
    ("alexnet", (3, 64, 64), {"cifar_stem": False}),
    ("resnet18", (3, 32, 32), {"cifar_stem": True}),
    ("resnet18", (3, 64, 64), {"cifar_stem": False}),
]


@pytest.mark.parametrize("name, in_shape, extra", CASES)
def test_every_model_builds_runs_and_captures(tmp_path, name, in_shape, extra):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, **extra), in_shape, 10).eval()
    x = torch.randn(6, *in_shape)  # seeded above
    assert model(x).shape == (6, 10)
    head = getattr(model, model.head_name)
    assert isinstance(head, torch.nn.Linear)
    shapes = output_shapes(model, in_shape)
    assert math.prod(shapes[model.penultimate]) == head.in_features  # what the edit needs
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)][:1]
    points = resolve_points(model, ("input", *convs), model.penultimate)
    reductions = {convs[0]: "pool:2"} if convs else {}
    layers, reducers = capture_layers(model, points, in_shape, reductions, 0, torch.device("cpu"),
                                      model.penultimate)
    store = RunWriter.create(
        str(tmp_path / "s.zarr"), attrs={}, schedule=[0], layers=layers,
        samples={"split": np.array(["train"] * 6), "index": np.arange(6), "label_true": np.zeros(6, int),
                 "label_observed": np.zeros(6, int), "corrupted": np.zeros(6, bool)},
        params={k: tuple(v.shape) for k, v in model.state_dict().items()}, activation_dtype="float32")
    writer = BackgroundWriter(4)
    logits = EpochCapture(model, points, store, writer, x, units={l.name: l.units for l in layers},
                          dtype="float32", batch_size=4, reducers=reducers)(0)
    writer.close()
    store.commit(0, 0)
    run = stores.open_run(str(tmp_path / "s.zarr"))
    # The reference runs the capture's own batches (rows 0-3, then 4-5) in the same
    # inference mode, on the same float32 model: literally the same code on the same
    # inputs, so the logits and the (float32-stored) penultimate features are exact.
    # (Against one batch of 6 they would only agree within the float32 rounding of
    # two kernels through up to 20 layers, whose worst-case bound says little.)
    feats = []
    hook = getattr(model, model.penultimate).register_forward_hook(lambda m, i, o: feats.append(o))
    with torch.inference_mode():
        want = torch.cat([model(x[start : start + 4]) for start in range(0, len(x), 4)])
    hook.remove()
    np.testing.assert_array_equal(logits.numpy(), want.numpy())
    got = stores.activations(run, model.penultimate).isel(epoch=0).values
    np.testing.assert_array_equal(got, torch.cat(feats).flatten(1).numpy())
    # exact: the float32 input stored as float32, no arithmetic
    np.testing.assert_array_equal(stores.activations(run, "input").isel(epoch=0).values, x.flatten(1).numpy())
    assert stores.activations(run, "input").attrs["original_shape"] == list(in_shape)
    if convs:
        node = run[f"activations/{convs[0]}"]
        assert node.attrs["reduction"] == "pool:2" and len(node.attrs["original_shape"]) == 3
        assert node["values"].sizes["unit"] == node.attrs["original_shape"][0] * 4


def test_reductions_against_direct_formulas():
    out = torch.randn(5, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    cpu = torch.device("cpu")
    # Two float32 means of n terms (a pooling kernel and torch.mean) differ by at most
    # 2·γ_(n+1)·mean|x| (n additions and the division): n = 36 for avgpool, 4 for pool:3.
    atol = lambda n, x: sum_atol(np.float32, n + 1, float(x.abs().mean(dim=(2, 3)).max()))  # noqa: E731
    np.testing.assert_allclose(Reducer(parse("avgpool"), (4, 6, 6), cpu)(out), out.mean(dim=(2, 3)),
                               rtol=0, atol=atol(36, out))
    pooled = Reducer(parse("pool:3"), (4, 6, 6), cpu)(out).reshape(5, 4, 3, 3)
    corner = out[:, :, :2, :2]
    np.testing.assert_allclose(pooled[:, :, 0, 0], corner.mean(dim=(2, 3)), rtol=0, atol=atol(4, corner))
    a, b = parse("project:16", "conv1", seed=3), parse("project:16", "conv1", seed=3)
    assert a.seed == b.seed != parse("project:16", "conv2", seed=3).seed
    for bad in ("pool", "project:0", "max", "pool:x"):
        with pytest.raises(ReductionError, match="expected flatten, avgpool, pool:K, project:D or tokens:mean"):
            parse(bad, "conv1")
    with pytest.raises(ReductionError, match=r"expected a \(C, H, W\) map"):
        Reducer(parse("avgpool"), (10,), cpu)
    for spec in ("flatten", "avgpool", "pool:3", "project:16"):  # the width estimate_run() uses
        reducer = Reducer(parse(spec, "conv1"), (4, 6, 6), cpu)
        assert (reducer.matrix is None) and reducer(out).shape == (5, reducer.units)


def test_random_projection_keeps_cosines_within_the_jl_distortion():
    rng = np.random.default_rng(0)
    n, d, dim = 60, 4096, 1024
    x = torch.as_tensor(np.maximum(rng.normal(size=(n, d)), 0) + rng.normal(size=(n, d)) * 0.3,
                        dtype=torch.float32)
    y = Reducer(parse("project:%d" % dim, "layer", seed=1), (d,), torch.device("cpu"))(x).double().numpy()
    x = x.double().numpy()

    def cosines(a):
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        return (a @ a.T)[np.triu_indices(len(a), 1)]

    eps = math.sqrt(8 * math.log(n) / dim)  # Johnson-Lindenstrauss: norms within 1 ± eps
    bound = 3 * eps / (1 - eps) ** 2  # |cos' - cos| for unit vectors, by polarization
    assert np.abs(cosines(y) - cosines(x)).max() <= bound
    assert np.abs(np.linalg.norm(y, axis=1) / np.linalg.norm(x, axis=1) - 1).max() <= eps


def test_masc_on_projected_features_agrees_with_flatten():
    digits = load_digits()
    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 2048)) / 8
    feats = torch.as_tensor(np.maximum(digits.data / 16 @ w, 0), dtype=torch.float32)  # "conv map"
    proj = Reducer(parse("project:512", "c", seed=0), (2048,), torch.device("cpu"))(feats).numpy()
    flat = feats.numpy()
    train = np.arange(len(flat)) % 5 != 0
    y = digits.target
    p_flat = MASC().fit(flat[train], y[train]).predict(flat[~train])
    p_proj = MASC().fit(proj[train], y[train]).predict(proj[~train])
    assert np.mean(p_flat == p_proj) >= 0.95


def test_ketha2026_schedule_rule():
    assert ScheduleConfig(rule="ketha2026").resolve(35) == [0, 1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 25, 30, 35]


def test_penultimate_cannot_be_reduced():
    model = build_model(ModelConfig(name="cnn"), (1, 28, 28), 10)
    with pytest.raises(ValueError, match="must stay flatten"):
        capture_layers(model, ["relu9"], (1, 28, 28), {"relu9": "project:8"}, 0,
                       torch.device("cpu"), "relu9")


def test_capture_from_tiny_cifar_files_into_a_store(tmp_path):
    """Tiny CIFAR-10 pickles -> torchvision's reader -> the CNN -> a store with reductions."""
    from capture.run import capture_run
    from stores.config import parse_pipeline

    from .test_vision import write_cifar10

    write_cifar10(tmp_path / "data", per_batch=6, n_test=10)
    pipeline = parse_pipeline("tiny-cifar", {
        "sweep": {"corruption": [0.4], "seed": [0]},
        "data": {"name": "cifar10", "root": str(tmp_path / "data")},
        "model": {"name": "cnn"},
        "train": {"max_epochs": 2, "batch_size": 8, "lr": 0.01, "stop_train_acc": None},
        "capture": {"points": ["input", "relu2", "relu4"], "dtype": "float16",
                    "reductions": {"relu2": "project:64", "relu4": "avgpool"},
                    "schedule": {"rule": "ketha2026"}},
    })
    path = capture_run(pipeline.runs()[0], str(tmp_path / "runs"), progress=False)
    run = stores.open_run(path)
    assert list(run["epochs"].epoch.values) == [0, 1, 2]
    assert run["activations/relu2/values"].sizes["unit"] == 64
    assert run["activations/relu2"].attrs["projection_seed"] >= 0
    assert run["activations/relu4/values"].sizes["unit"] == 32  # avgpool keeps the channels
    assert run["activations/relu4"].attrs["original_shape"] == [32, 16, 16]
    assert run["activations/relu9"].attrs["penultimate"]
    assert stores.activations(run, "input").sizes["sample"] == 40


# ------------------------------------------------------------------ the published architectures
# Literals from PUBLISHED.md (the authors' MASC/cnn_create.py), not read from the code.
def _shapes_on_meta(name: str, in_shape: tuple[int, int, int], n_classes: int, **extra):
    """The model and every module's output shape, built on the meta device: no weights
    are allocated or initialised (AlexNet's 4096x4096 layer would be 64 MiB)."""
    with torch.device("meta"):
        model = build_model(ModelConfig(name=name, **extra), in_shape, n_classes)
        return model, output_shapes(model, in_shape)


def _convs(model):
    return [(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding)
            for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


@pytest.mark.parametrize("in_shape, flat", [((1, 28, 28), 576), ((3, 32, 32), 1024)])
def test_cnn_is_six_convs_three_pools_three_fc250_and_a_bias_free_head(in_shape, flat):
    model, shapes = _shapes_on_meta("cnn", in_shape, 10)
    c = in_shape[0]
    assert _convs(model) == [(a, b, (3, 3), (1, 1), (1, 1)) for a, b in
                             [(c, 16), (16, 16), (16, 32), (32, 32), (32, 64), (64, 64)]]
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 3 and all(p.kernel_size == 2 for p in pools)
    assert shapes["flatten"] == (flat,)
    linears = [(m.in_features, m.out_features, m.bias is not None)
               for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears == [(flat, 250, True), (250, 250, True), (250, 250, True), (250, 10, False)]
    assert [shapes[p] for p in ("relu7", "relu8", "relu9")] == [(250,)] * 3
    assert model.penultimate == "relu9" and model.head_name == "head"


@pytest.mark.parametrize("in_shape, cifar_stem, convs", [
    ((3, 32, 32), True, [(3, 64, (3, 3), (2, 2), (1, 1)), (64, 192, (3, 3), (1, 1), (1, 1))]),
    ((3, 64, 64), False, [(3, 64, (11, 11), (4, 4), (2, 2)), (64, 192, (5, 5), (1, 1), (2, 2))]),
])
def test_alexnet_variants_flatten_256_then_fc_4096_4096(in_shape, cifar_stem, convs):
    n_classes = 100 if cifar_stem else 200
    model, shapes = _shapes_on_meta("alexnet", in_shape, n_classes, cifar_stem=cifar_stem)
    rest = [(192, 384, (3, 3), (1, 1), (1, 1)), (384, 256, (3, 3), (1, 1), (1, 1)),
            (256, 256, (3, 3), (1, 1), (1, 1))]
    assert _convs(model) == convs + rest
    pools = [(m.kernel_size, m.stride) for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert pools == [(3, 2)] * 3
    assert shapes["pool3"] == (256, 1, 1) and shapes["flatten"] == (256,)
    linears = [(m.in_features, m.out_features, m.bias is not None)
               for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears == [(256, 4096, True), (4096, 4096, True), (4096, n_classes, True)]
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())
    assert (shapes["relu6"], shapes["relu7"]) == ((4096,), (4096,)) and model.penultimate == "relu7"


def test_resnet18_keeps_the_maxpool_after_its_3x3_stride1_stem():
    model, shapes = _shapes_on_meta("resnet18", (3, 32, 32), 10, cifar_stem=True)
    stem = model.conv1
    assert (stem.kernel_size, stem.stride, stem.padding, stem.bias) == ((3, 3), (1, 1), (1, 1), None)
    pool = model.maxpool
    assert isinstance(pool, torch.nn.MaxPool2d) and (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)
    assert shapes["maxpool"] == (64, 16, 16)
    # the authors' probe points: stem, the three ReLUs inside layer1, the stages, the pooled vector
    assert [shapes[p] for p in ("layer1.0.relu1", "layer1.0", "layer1.1.relu1", "layer1")] == [(64, 16, 16)] * 4
    assert [shapes[p] for p in ("layer2", "layer3", "layer4", "avgpool")] == [
        (128, 8, 8), (256, 4, 4), (512, 2, 2), (512, 1, 1)]
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [2, 2, 2, 2]
    assert (model.fc.in_features, model.fc.out_features, model.fc.bias is not None) == (512, 10, True)


def test_resnet_block_relus_fire_once_each():
    """Each ReLU of a block is its own module, so a hook on `layer1.0.relu1` sees exactly
    the first ReLU of block 0 (torchvision's block calls one ReLU twice)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="resnet18"), (3, 16, 16), 10).eval()
    calls = []
    for name in ("layer1.0.relu1", "layer1.0.relu2"):
        model.get_submodule(name).register_forward_hook(lambda m, i, o, n=name: calls.append(n))
    with torch.no_grad():
        model(torch.randn(2, 3, 16, 16))
    assert calls == ["layer1.0.relu1", "layer1.0.relu2"]
