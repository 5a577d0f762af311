"""Corrupted modular arithmetic: dataset, network, and diagnostics read from a store."""

from __future__ import annotations

from pathlib import Path
import numpy as np
import pytest
import torch
import yaml

import stores
from analyze import modular, neurons
from analyze.pipeline import analyse
from capture.data import load_dataset
from capture.models import ModularMLP, build_model, load_weights
from capture.run import capture_run
from stores import load_pipeline, slabs
from stores.config import DataConfig, ModelConfig, run_config_from_dict

from .conftest import REPO
from .tolerance import clear_argmax, dft_ipr_rtol, unit_roundoff
from .tolerance import gamma as gamma_n


@pytest.mark.parametrize("op, rule", [("add", lambda m, n, p: (m + n) % p),
                                      ("sub", lambda m, n, p: (m - n) % p),
                                      ("mul", lambda m, n, p: (m * n) % p)])
def test_modular_dataset(op, rule):
    p, alpha = 13, 0.37
    d = load_dataset(DataConfig(name="modular", p=p, alpha=alpha, operation=op))
    assert len(d.y_train) == int(np.floor(alpha * p * p)) and len(d.y_train) + len(d.y_test) == p * p
    assert sorted(np.r_[d.index_train, d.index_test]) == list(range(p * p))  # every pair once
    x = np.r_[d.x_train, d.x_test]
    m, n = x[:, :p].argmax(1), x[:, p:].argmax(1)
    assert (x.sum(1) == 2).all() and (m * p + n == np.r_[d.index_train, d.index_test]).all()
    np.testing.assert_array_equal(np.r_[d.y_train, d.y_test], rule(m, n, p))


def test_modular_network_layout_and_init():
    torch.manual_seed(0)
    model = ModularMLP(2 * 97, 500, 97, batchnorm=True, dropout=0.3)
    assert [name for name, _ in model.named_children()] == ["embed", "dropout", "square", "bn", "head"]
    assert model.embed.bias is None and model.head.bias is None and model.penultimate == "bn"
    std = model.embed.weight.std().item()
    assert std == pytest.approx((16 * 500) ** (-1 / 3), rel=0.02)  # variance (16N)^(-2/3)
    x = torch.randn(4, 194)  # seeded above
    model.eval()
    # The same embed(x) twice (same call, same input); Square is x*x and torch's pow(x, 2)
    # is x*x too, each one rounding of x²: within 2·u32 relative at the very most.
    np.testing.assert_allclose(model.square(model.embed(x)).detach(),
                               model.embed(x).detach() ** 2, rtol=2 * unit_roundoff(np.float32),
                               atol=0)
    with pytest.raises(ValueError, match="one width"):
        build_model(ModelConfig(name="modular_mlp", widths=(8, 8)), 10, 5)


@pytest.fixture(scope="module")
def modular_root(tmp_path_factory):
    """A tiny corrupted-modular pipeline (p = 11), captured in float32 for exact checks."""
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())["modular-coexist"]
    raw["sweep"]["p"] = [11]
    raw["model"]["widths"] = [48]
    raw["train"]["max_epochs"] = 60
    raw["capture"] = {"points": ["square"], "dtype": "float32", "schedule": {"epochs": ["0:60:20"]}}
    base = tmp_path_factory.mktemp("modular")
    pipelines = base / "p.yaml"
    pipelines.write_text(yaml.safe_dump({"modular-coexist": raw}))
    for config in load_pipeline("modular-coexist", pipelines).runs():
        capture_run(config, str(base / "runs"), progress=False)
    return pipelines, base / "runs"


def test_corruption_count_is_exact_in_the_store(modular_root):
    pipelines, root = modular_root
    config = load_pipeline("modular-coexist", pipelines).runs()[0]
    table = slabs.sample_table(config.store_path(str(root)))
    train = table["split"] == "train"
    assert train.sum() == int(np.floor(0.5 * 121))
    assert table["corrupted"].sum() == int(np.floor(0.35 * train.sum()))
    assert not table["corrupted"][~train].any()
    assert {"p", "xi", "alpha", "weight_decay"} <= set(stores.run_attrs(config.store_path(str(root)))["params"])


def test_pruning_from_the_store_equals_pruning_the_model(modular_root):
    pipelines, root = modular_root
    path = load_pipeline("modular-coexist", pipelines).runs()[0].store_path(str(root))
    result = modular.neuron_task(path)
    curves = result["pruning"]
    slots, _ = slabs.committed_slots(path)
    state = {n: slabs.weight_slab(path, n, int(slots[-1])) for n in stores.param_names(path)}
    config = run_config_from_dict(stores.run_attrs(path)["config"])
    data = load_dataset(config.data)
    x = torch.as_tensor(np.r_[data.x_train, data.x_test])
    table = slabs.sample_table(path)
    train = table["split"] == "train"
    groups = {"corrupted": train & table["corrupted"], "clean": train & ~table["corrupted"], "test": ~train}
    # neuron_task prunes the stored hidden representation in float64 (the full product,
    # then one rank-1 subtraction per neuron); the model here is float32 torch. Both label
    # a row alike unless its top-two margin is within rounding of both (clear_argmax):
    # the accuracies may differ by those near-tie rows only.
    hidden = slabs.slab(path, stores.penultimate_layer(path), int(slots[-1])).astype(np.float64)
    full = np.abs(hidden) @ np.abs(state["head.weight"].astype(np.float64)).T
    n_units = hidden.shape[1]
    for order in ("ascending", "descending"):
        ranked = curves["neuron_order"].sel(order=order).values
        for n in (0, 5, 24, 40, 48):
            pruned = dict(state)
            pruned["head.weight"] = state["head.weight"].copy()
            pruned["head.weight"][:, ranked[:n]] = 0  # zero the neurons' outgoing weights
            model = load_weights(build_model(config.model, 22, 11), pruned).eval()
            with torch.no_grad():
                h = torch.nn.Sequential(*list(model.children())[:-1])(x)  # the head's input
                pred = model.head(h).argmax(1).numpy()
            w = pruned["head.weight"].astype(np.float64)
            mag = np.abs(hidden) @ np.abs(w).T
            err = (gamma_n(np.float32, n_units) * mag  # torch's float32 head product
                   + np.abs(h.numpy() - hidden) @ np.abs(w).T  # if its hidden differs
                   + gamma_n(np.float64, 2 * n_units + 1) * 2 * full  # neuron_task's
                   + gamma_n(np.float64, n_units) * mag)  # this float64 reference
            # A row with no weight left is exactly 0 in both (argmax: the first class).
            sure = clear_argmax(hidden @ w.T, err) | (mag.max(axis=1) == 0)
            for group, mask in groups.items():
                want = np.mean(pred[mask] == table["label_observed"][mask])
                got = float(curves["accuracy"].sel(order=order, group=group, pruned=n))
                slack = np.sum(mask & ~sure) / mask.sum()  # 0 unless a near tie
                assert got == pytest.approx(want, abs=1e-12 + slack), (order, n, group)


def test_neuron_task_matches_independent_ipr(modular_root):
    pipelines, root = modular_root
    path = load_pipeline("modular-coexist", pipelines).runs()[0].store_path(str(root))
    ds = modular.neuron_task(path)["neurons"]
    slots, epochs = slabs.committed_slots(path)
    w1 = slabs.weight_slab(path, "embed.weight", int(slots[-1])).astype(np.float64)
    w2 = slabs.weight_slab(path, "head.weight", int(slots[-1])).astype(np.float64)

    def ipr(row):  # the formula, written out
        f = np.abs(np.fft.rfft(row)) ** 2
        return (f ** 2).sum() / f.sum() ** 2

    want = [np.mean([ipr(w1[k, :11]), ipr(w1[k, 11:]), ipr(w2[:, k])]) for k in range(48)]
    # Both are float64 FFTs (batched there, row by row here): within the DFT bound.
    np.testing.assert_allclose(ds["ipr"].isel(epoch=-1), want, rtol=dft_ipr_rtol(np.float64, 11))
    assert list(ds.epoch.values) == list(epochs)
    metrics = stores.metrics(stores.open_run(path))
    assert ds.attrs["phase"] == neurons.phase(float(metrics.train_acc_observed[-1]),
                                              float(metrics.test_acc[-1]), 0.35)


def test_probes_and_report_run_unchanged_on_modular_stores(modular_root):
    pipelines, root = modular_root
    report = Path(analyse(load_pipeline("modular-coexist", pipelines), str(root), progress=False))
    text = report.read_text()
    assert "## Neurons (modular arithmetic)" in text and "figures/pruning.png" in text
    path = load_pipeline("modular-coexist", pipelines).runs()[0].store_path(str(root))
    run = stores.open_run(path)
    assert run["analysis/dynamics"]["accuracy"].sizes["layer"] == 1
    assert run["analysis/pruning"]["accuracy"].dims == ("order", "group", "pruned")
    assert run["analysis/neurons"]["ipr"].dims == ("epoch", "neuron")


def test_batchnorm_gains_from_the_store(tmp_path):
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())["modular-batchnorm"]
    raw["sweep"]["p"] = [11]
    raw["model"]["widths"] = [24]
    raw["train"].update({"max_epochs": 3, "batch_size": 16})
    raw["capture"]["schedule"] = {"epochs": [0, 3]}
    pipelines = tmp_path / "p.yaml"
    pipelines.write_text(yaml.safe_dump({"modular-batchnorm": raw}))
    config = load_pipeline("modular-batchnorm", pipelines).runs()[0]
    path = capture_run(config, str(tmp_path / "runs"), progress=False)
    assert stores.penultimate_layer(path) == "bn"
    ds = modular.neuron_task(path)["neurons"]
    gamma = slabs.weight_slab(path, "bn.weight", 1)
    var = slabs.weight_slab(path, "bn.running_var", 1)
    # The same formula on the same float32 slabs, in float64 there (upcast first) and in
    # float32 here: ε's cast, +, sqrt and / each round once here; γ_4 in float32.
    np.testing.assert_allclose(ds["bn_gain"], gamma / np.sqrt(var + 1e-5),
                               rtol=gamma_n(np.float32, 4))
    np.testing.assert_array_equal(ds["bn_gamma"], gamma)
    for name in ("bn_gain", "bn_gamma"):
        assert {f"{name}_ratio", f"{name}_spearman", f"{name}_n_high"} <= set(ds.attrs)
