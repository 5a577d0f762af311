"""The report's control and breakdown sections (issue 15) on a small synthetic `results`
Dataset in `stores.analysis_results`' format: each number against an explicit
computation, each figure written, each section absent when its data is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import stores
from analyze import published
from analyze import report_controls as rc
from analyze import report_training as rt
from analyze.report import best_layer, summary_rows, write_report

LAYERS = ("input", "relu1", "relu2")
PROBES = ("masc", "masc_true", "velpic")
SCORES = ("train_observed", "train_true", "test", "flipped_observed", "flipped_true", "unflipped")
VARIANTS = ("unedited", "edit_zero_bias", "edit_keep_bias")
EPOCHS = (0, 1, 2, 5)
K = 3


def make_results(runs: list[dict], seed: int = 0, stop: dict[int, int] | None = None,
                 flipped: int = 40, ns=(0.5, 0.99, 2.0), cross: bool = True) -> xr.Dataset:
    """`runs`: the swept parameters of each run (corruption, seed); `stop`: run position
    -> its last epoch (later epochs NaN, as a run that stopped early reads)."""
    rng = np.random.default_rng(seed)
    index = pd.MultiIndex.from_frame(pd.DataFrame(runs))
    r, e = len(runs), len(EPOCHS)
    u = lambda *shape: rng.uniform(0.05, 1.0, size=(*shape, r))  # noqa: E731
    data = {
        "accuracy": (("probe", "layer", "epoch", "score", "run"), u(len(PROBES), len(LAYERS), e, len(SCORES))),
        "class_accuracy": (("probe", "layer", "epoch", "class", "run"), u(len(PROBES), len(LAYERS), e, K)),
        "edit_accuracy": (("variant", "epoch", "score", "run"), u(len(VARIANTS), e, len(SCORES))),
        "edit_class_accuracy": (("variant", "epoch", "class", "run"), u(len(VARIANTS), e, K)),
        "model_test_acc": (("epoch", "run"), u(e)),
    }
    coords = {"probe": list(PROBES), "layer": list(LAYERS), "epoch": list(EPOCHS), "score": list(SCORES),
              "variant": list(VARIANTS), "class": np.arange(K),
              "score_samples": ("score", np.array([100, 100, 30, flipped, flipped, 100 - flipped])),
              "class_samples": ("class", np.array([10, 12, 8]))}
    if ns:
        data["masc_n_accuracy"] = (("n", "subspaces", "layer", "epoch", "score", "run"),
                                   u(len(ns), 2, len(LAYERS), e, len(SCORES)))
        coords |= {"n": list(ns), "subspaces": ["observed", "true"]}
    ds = xr.Dataset(data, coords=coords)
    names = [",".join(f"{k}={v}" for k, v in row.items()) for row in runs]
    if cross:  # the clean runs (corruption 0) took their labels from the 0.6 run of their seed
        clean = np.array([row["corruption"] == 0.0 for row in runs])
        acc = u(1, len(LAYERS), e, len(SCORES))
        acc[..., ~clean] = np.nan
        ds["cross_accuracy"] = (("labels_from", "layer", "epoch", "score", "run"), acc)
        ds = ds.assign_coords(labels_from=[0.6], labels_from_run=(
            ("labels_from", "run"), [[f"corruption=0.6,seed={row['seed']}" if c else "" for row, c in zip(runs, clean)]]))
    for run, last in (stop or {}).items():
        later = ds.epoch > last
        for name in ("accuracy", "class_accuracy", "edit_accuracy", "edit_class_accuracy", "model_test_acc",
                     "masc_n_accuracy", "cross_accuracy"):
            if name in ds:
                ds[name][{"run": run}] = ds[name][{"run": run}].where(~later)
    ds = ds.assign_coords(xr.Coordinates.from_pandas_multiindex(index, "run"))
    return ds.assign_coords(run_name=("run", names)).assign_attrs(masc_components=0.99, edit_layer="relu2")


SEEDS = [{"corruption": 0.6, "seed": 0}, {"corruption": 0.6, "seed": 1}]
LEVELS = [{"corruption": 0.0, "seed": 0}, {"corruption": 0.6, "seed": 0}]


def final_values(results, values: xr.DataArray, last: list[int]) -> np.ndarray:
    """values (..., epoch, run) at each run's own last epoch, run last (explicitly)."""
    return np.stack([values.isel(run=i).sel(epoch=e).values for i, e in enumerate(last)], axis=-1)


# ------------------------------------------------------------------------- final table
def test_final_table_takes_the_best_layer_by_the_mean_over_seeds(tmp_path):
    results = make_results(SEEDS, stop={1: 2})
    last = [5, 2]
    row = summary_rows(results)[0]
    for probe in ("masc", "masc_true", "velpic"):
        at_end = 100 * final_values(results, results["accuracy"].sel(probe=probe, score="test"), last)  # (layer, run)
        layer = LAYERS[int(np.argmax(at_end.mean(axis=1)))]
        assert best_layer(results, probe) == layer
        assert row[probe][2] == layer
        assert row[probe][0] == pytest.approx(at_end[LAYERS.index(layer)].mean())
        assert row[probe][1] == pytest.approx(at_end[LAYERS.index(layer)].std())
    text = Path(write_report("quickstart", str(tmp_path), [], results, "analysis.csv")).read_text()
    assert ("| runs | final epoch | model | MASC, observed-label subspaces | MASC, true-label subspaces | "
            "VeLPIC | edited (bias 0) | edited (bias kept) |") in text
    m = row["masc_true"]
    assert f"{m[0]:.1f} ± {m[1]:.1f} ({m[2]})" in text


# ------------------------------------------------------------------------- per class
def test_class_table_rows_equal_the_values():
    results = make_results(SEEDS)
    rows = rc.class_rows(results)
    assert len(rows) == 1
    (name_m, model), (name_p, masc) = rows[0]["lines"]
    expect_model = 100 * results["edit_class_accuracy"].sel(variant="unedited", epoch=5).mean("run")
    np.testing.assert_allclose(model.values, expect_model.values)
    layer = best_layer(results, "masc")
    assert name_p == f"MASC ({layer})"
    expect_masc = 100 * results["class_accuracy"].sel(probe="masc", layer=layer, epoch=5).mean("run")
    np.testing.assert_allclose(masc.values, expect_masc.values)
    text = rc.class_section(results)
    assert "| corruption = 0.6 (2 seeds) | test samples | 10 | 12 | 8 |" in text
    assert "|  | model | " + " | ".join(f"{v:.1f}" for v in expect_model.values) + " |" in text
    assert f"|  | MASC ({layer}) | " + " | ".join(f"{v:.1f}" for v in expect_masc.values) + " |" in text


def test_class_table_summarizes_many_classes():
    results = make_results(SEEDS)
    many = results.drop_vars(["class_accuracy", "edit_class_accuracy", "class_samples", "class"])
    rng = np.random.default_rng(1)
    values = rng.uniform(size=(len(VARIANTS), len(EPOCHS), 30, 2))
    many["edit_class_accuracy"] = (("variant", "epoch", "class", "run"), values)
    many = many.assign_coords({"class": np.arange(30)})
    text = rc.class_section(many)
    v = 100 * many["edit_class_accuracy"].sel(variant="unedited", epoch=5).mean("run").values
    assert f"| model | {v.min():.1f} | {np.median(v):.1f} | {v.max():.1f} |" in text
    assert "30 classes" in text


# ------------------------------------------------------------------------- flipped
def test_flipped_section_table_and_figure(tmp_path):
    results = make_results(LEVELS)
    results = results.assign_coords(score_samples=(("score", "run"), np.array(
        [[100, 100], [100, 100], [30, 30], [0, 40], [0, 40], [100, 60]])))
    assert [label for label, _ in rc.flipped_groups(results)] == ["corruption = 0.6"]
    path = tmp_path / "flipped.png"
    text = rc.flipped_section(results, str(path))
    assert path.stat().st_size > 10_000
    assert "corruption = 0.0" not in text and "40 of 100 training rows flipped" in text
    run = results.isel(run=[1])
    layer = best_layer(run, "masc")
    masc = 100 * run["accuracy"].sel(probe="masc", layer=layer, epoch=5)
    assert (f"|  | MASC ({layer}) | " + " | ".join(f"{float(masc.sel(score=s)[0]):.1f}" for s in rc.FLIPPED_SCORES)
            + " |") in text
    edited = 100 * run["edit_accuracy"].sel(variant="edit_zero_bias", epoch=5)
    assert ("|  | edited (bias 0) | " + " | ".join(f"{float(edited.sel(score=s)[0]):.1f}" for s in rc.FLIPPED_SCORES)
            + " |") in text


def test_flipped_section_absent_without_flipped_rows(tmp_path):
    results = make_results(SEEDS, flipped=0)
    assert rc.flipped_groups(results) == []
    assert rc.flipped_section(results, str(tmp_path / "f.png")) == ""
    assert not (tmp_path / "f.png").exists()
    old = make_results(SEEDS).sel(score=["train_observed", "train_true", "test"])  # scores before issue 15
    assert rc.flipped_section(old, str(tmp_path / "f.png")) == ""


# ------------------------------------------------------------------------- n ablation
def test_n_ablation_best_layer_per_n(tmp_path):
    results = make_results(SEEDS, stop={0: 2})
    rows = rc.n_rows(results)
    at_end = 100 * final_values(results, results["masc_n_accuracy"].sel(score="test"), [2, 5])  # (n, sub, layer, run)
    for i, n in enumerate((0.5, 0.99, 2.0)):
        for j, sub in enumerate(("observed", "true")):
            mean = at_end[i, j].mean(axis=1)
            k = int(np.argmax(mean))
            assert rows[0]["cells"][sub, n] == pytest.approx((mean[k], at_end[i, j, k].std(), LAYERS[k], 2))
    path = tmp_path / "masc_n.png"
    text = rc.n_section(results, str(path))
    assert path.stat().st_size > 10_000
    assert "| runs | subspaces | n = 2 comp. | n = 0.5 | n = 0.99 |" in text
    mean, std, layer, _ = rows[0]["cells"]["true", 2.0]
    assert f"{mean:.1f} ± {std:.1f} ({layer}) |" in text
    assert rc.n_section(make_results(SEEDS, ns=()), str(tmp_path / "none.png")) == ""
    assert rc.n_section(make_results(SEEDS, ns=(0.99,)), str(tmp_path / "one.png")) == ""  # one n: nothing to vary


def test_n_ablation_with_an_n_only_some_runs_have(tmp_path):
    results = make_results(SEEDS)
    values = results["masc_n_accuracy"].values.copy()  # (n, subspaces, layer, epoch, score, run)
    values[2, ..., 1] = np.nan  # a later analysis added n = 2 to run 0 only
    values[0] = np.nan
    results["masc_n_accuracy"] = (results["masc_n_accuracy"].dims, values)
    rows = rc.n_rows(results)
    assert rows[0]["cells"]["observed", 0.5] is None
    one = 100 * results["masc_n_accuracy"].isel(n=2, run=0).sel(subspaces="observed", score="test", epoch=5)
    assert rows[0]["cells"]["observed", 2.0][0] == pytest.approx(float(one.max()))
    text = rc.n_section(results, str(tmp_path / "n.png"))
    line = next(line for line in text.splitlines() if "| observed labels |" in line)
    cells = [c.strip() for c in line.split("|")[3:-1]]  # n = 2 comp., 0.5, 0.99
    mean, _, layer, seeds = rows[0]["cells"]["observed", 2.0]
    assert seeds == 1 and cells[0] == f"{mean:.1f} ({layer}; 1 of 2 seeds)"
    assert cells[1] == "—"


# ------------------------------------------------------------------------- cross-run
def test_cross_table_beside_the_corrupted_runs_own_masc(monkeypatch):
    results = make_results(LEVELS)
    rows = summary_rows(results)
    found = rc.cross_rows(results, rows)
    assert len(found) == 1 and found[0]["label"] == "corruption = 0.0 (1 seed)"
    at_end = 100 * results["cross_accuracy"].sel(score="test", epoch=5, labels_from=0.6).isel(run=0)
    layer = LAYERS[int(np.argmax(at_end.values))]
    assert found[0]["layer"] == layer
    own = rows[1]["masc"]
    text = rc.cross_section("quickstart", results, rows)
    assert (f"| corruption = 0.0 (1 seed) | corruption 0.6 | "
            f"{float(at_end.sel(layer=layer)):.1f} ({layer}) | {own[0]:.1f} ({own[2]}) | {rows[1]['model'][0]:.1f} |") in text
    assert "P1" not in text
    # the same table under a published setup's name: P1's numbers for it are not found,
    # so no P1 column (the published section says so) until one is typed in
    assert rc.cross_section("mnist-mlp", results, rows) == text
    monkeypatch.setitem(published.P1_CROSS, "MLP-MNIST", {0.6: 90.0})
    with_p1 = rc.cross_section("mnist-mlp", results, rows)
    assert with_p1.rstrip().endswith(" | 90.0 |") and "| P1 |" in with_p1 and "simranketha/MASC_DNN" in with_p1
    assert rc.cross_section("quickstart", make_results(LEVELS, cross=False), rows) == ""


# ------------------------------------------------------------------------- stores
class FakeStores:
    """Run stores as DataTrees in memory, served through the reader functions that the
    sections call (`run_attrs`, `node_attrs`, `open_run`, `location.is_store`)."""

    def __init__(self, monkeypatch, trees: dict[str, xr.DataTree]):
        self.trees = trees
        monkeypatch.setattr(stores, "open_run", lambda path: trees[path])
        monkeypatch.setattr(stores, "run_attrs", lambda path: dict(trees[path].attrs))
        monkeypatch.setattr(stores, "node_attrs", lambda path, node: dict(trees[path][node].attrs)
                            if node.split("/")[-1] in trees[path].get("analysis", xr.DataTree()).children else {})
        monkeypatch.setattr(rt.location, "is_store", lambda path: path in trees)


def run_tree(name: str, epochs, test_acc, attrs=None, nodes=None) -> xr.DataTree:
    root = xr.Dataset(coords={"epoch": np.asarray(epochs)}, attrs={"run_name": name, **(attrs or {})})
    return xr.DataTree.from_dict({"/": root, "/metrics": xr.Dataset({"test_acc": ("epoch", np.asarray(test_acc))}),
                                  **(nodes or {})})


def relabel_node(rng, n=50) -> xr.Dataset:
    split = np.where(np.arange(n) < 35, "train", "test")
    true = rng.integers(0, K, n)
    observed = np.where(rng.uniform(size=n) < 0.5, rng.integers(0, K, n), true)
    label = np.where(rng.uniform(size=n) < 0.8, true, rng.integers(0, K, n))
    acc = rng.uniform(size=(len(LAYERS), 2))
    return xr.Dataset({"label": ("sample", label), "holdout": ("sample", (np.arange(n) >= 35) & (np.arange(n) < 38)),
                       "layer_accuracy": (("layer", "part"), acc)},
                      coords={"layer": list(LAYERS), "part": ["holdout", "rest"], "split": ("sample", split),
                              "label_true": ("sample", true), "label_observed": ("sample", observed)},
                      attrs={"layer": "relu1", "epoch": 5, "seed": 0, "n_components": 0.99,
                             "model_rest_accuracy": 0.4})


def test_relabel_and_retrain_sections(monkeypatch):
    rng = np.random.default_rng(2)
    node = relabel_node(rng)
    source = run_tree("corruption=0.6,seed=0", [0, 5], [0.5, 0.4], nodes={"/analysis/relabel": node})
    retrained = run_tree("corruption=0.6,seed=0", [5, 6, 7, 8, 9], [0.4, 0.7, 0.8, 0.75, 0.72], attrs={
        "init": {"source": "/r/quickstart/corruption=0.6,seed=0.zarr", "epoch": 5, "edit": "none",
                 "labels": "relabel", "epochs": "continue"},
        "early_stopping": {"patience": 3, "best_epoch": 7, "stopped_epoch": 9}})
    FakeStores(monkeypatch, {"/r/quickstart/corruption=0.6,seed=0.zarr": source,
                             "/r/relabel/corruption=0.6,seed=0.zarr": retrained})
    row = rt.relabel_row("/r/quickstart/corruption=0.6,seed=0.zarr")
    train = node["split"].values == "train"
    assert row["layer"] == "relu1" and row["epoch"] == 5
    assert row["holdout"] == pytest.approx(100 * node["layer_accuracy"].values[1, 0])
    assert row["rest"] == pytest.approx(100 * node["layer_accuracy"].values[1, 1])
    assert row["model_rest"] == pytest.approx(40)
    assert row["relabelled_right"] == pytest.approx(100 * np.mean(node["label"].values[train] == node["label_true"].values[train]))
    text = rt.relabel_section(["/r/quickstart/corruption=0.6,seed=0.zarr", "/r/relabel/corruption=0.6,seed=0.zarr"])
    assert f"| corruption=0.6,seed=0 | 5 | relu1 | {row['holdout']:.1f} | {row['rest']:.1f} | 40.0 |" in text
    retrain = rt.retrain_section(["/r/relabel/corruption=0.6,seed=0.zarr"])
    assert (f"| corruption=0.6,seed=0 | quickstart/corruption=0.6,seed=0 | 7 | 80.0 | 72.0 (epoch 9) | "
            f"40.0 | {row['rest']:.1f} |") in retrain
    assert rt.retrain_section(["/r/quickstart/corruption=0.6,seed=0.zarr"]) == ""


def test_edit_then_train_overlay(monkeypatch, tmp_path):
    source_edit = xr.Dataset({"accuracy": (("variant", "epoch", "score"), np.full((3, 4, 3), 0.5))},
                             coords={"variant": list(VARIANTS), "score": ["train_observed", "train_true", "test"]})
    source_edit["accuracy"].loc[{"variant": "edit_zero_bias", "score": "test"}] = [0.6, 0.7, 0.8, 0.65]
    source = run_tree("corruption=0.6,seed=0", [0, 1, 2, 3], [0.3, 0.5, 0.4, 0.35], nodes={"/analysis/edit": source_edit})
    init = {"source": "quickstart/corruption=0.6,seed=0", "edit": "velpic", "labels": "observed"}
    cont = run_tree("at=1", [1, 2, 3], [0.7, 0.9, 0.6], attrs={"init": {**init, "epoch": 1, "epochs": "continue"}})
    restart = run_tree("at=2", [0, 1], [0.8, 0.85], attrs={"init": {**init, "epoch": 2, "epochs": "restart"}})
    FakeStores(monkeypatch, {"/r/quickstart/corruption=0.6,seed=0.zarr": source,
                             "/r/edit/at=1.zarr": cont, "/r/edit/at=2.zarr": restart})
    paths = ["/r/edit/at=1.zarr", "/r/edit/at=2.zarr"]
    runs = rt.edit_train_runs(paths)
    assert list(runs) == ["/r/quickstart/corruption=0.6,seed=0.zarr"]
    by_name = {r["name"]: r for r in runs["/r/quickstart/corruption=0.6,seed=0.zarr"]}
    np.testing.assert_array_equal(by_name["at=1"]["epochs"], [1, 2, 3])
    np.testing.assert_array_equal(by_name["at=2"]["epochs"], [2, 3])  # restart: + init.epoch
    path = tmp_path / "edit_then_train.png"
    text = rt.edit_train_section(paths, str(path))
    assert path.stat().st_size > 10_000
    assert "| at=1 | quickstart/corruption=0.6,seed=0 | 1 | 70.0 | 70.0 | 60.0 (3) | 90.0 (2) | 35.0 (3) | 65.0 |" in text
    assert "| at=2 | quickstart/corruption=0.6,seed=0 | 2 | 80.0 | 80.0 | 85.0 (3) | 85.0 (3) | 35.0 (3) | 65.0 |" in text
    assert rt.edit_train_section(["/r/quickstart/corruption=0.6,seed=0.zarr"], str(tmp_path / "x.png")) == ""


# ------------------------------------------------------------------------- absent
def test_report_without_the_new_data_has_none_of_the_sections(tmp_path):
    results = make_results(SEEDS, ns=(), cross=False).drop_vars(["class_accuracy", "edit_class_accuracy"])
    results = results.sel(score=["train_observed", "train_true", "test"]).drop_sel(probe="masc_true")
    text = Path(write_report("quickstart", str(tmp_path), [], results, "analysis.csv")).read_text()
    for heading in ("## Per class", "## Flipped", "## MASC's n", "## A clean model", "## Relabel",
                    "## Retrained", "## Edit, then train", "true-label subspaces |"):
        assert heading not in text
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "dynamics.png", "heatmap_masc.png", "heatmap_velpic.png"]
    full = Path(write_report("quickstart", str(tmp_path / "full"), [], make_results(LEVELS), "analysis.csv")).read_text()
    for heading in ("## Per class", "## Flipped", "## MASC's n", "## A clean model"):
        assert heading in full
    assert {"flipped.png", "masc_n.png"} <= {p.name for p in (tmp_path / "full" / "figures").iterdir()}
