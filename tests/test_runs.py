"""Many runs as one xarray object: a `run` MultiIndex over the swept parameters, nodes
aligned on epoch, analysis results as one Dataset and one tidy table."""

from __future__ import annotations

from pathlib import Path
import dask.array
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

import stores
from analyze.pipeline import analyse
from capture.run import capture_run
from stores import load_pipeline
from tests.conftest import tiny_pipeline_yaml


def test_open_runs_selects_by_swept_parameter(tiny_root):
    _, root = tiny_root
    runs = stores.open_runs(root / "quickstart")
    assert list(runs.xindexes["run"].index.names) == ["corruption", "seed"]
    one = runs.runs.sel(corruption=0.6, seed=0)
    assert one.sizes["run"] == 1  # the run dimension and its levels stay
    single = stores.open_run(str(root / "quickstart" / "corruption=0.6,seed=0.zarr"))
    for layer in stores.layers(single):
        got = one[f"activations/{layer}/values"].isel(run=0)
        assert isinstance(runs[f"activations/{layer}/values"].data, dask.array.Array)  # lazy
        np.testing.assert_array_equal(got.values, stores.activations(single, layer).values)
    np.testing.assert_array_equal(one["metrics/test_acc"].isel(run=0).values,
                                  single["metrics/test_acc"].values)
    assert runs.runs.sel(corruption=[0.0, 0.6]).sizes["run"] == 2
    with pytest.raises(KeyError, match="no run with"):
        runs.runs.sel(corruption=0.3)
    # Observed labels differ between runs, true labels do not.
    assert runs["activations/relu1"]["label_observed"].dims == ("run", "sample")
    assert runs["activations/relu1"]["label_true"].dims == ("sample",)
    clean = runs.runs.sel(corruption=0.0)["activations/relu1"]
    assert not clean["corrupted"].any()


@pytest.mark.slow
def test_runs_with_different_epochs_line_up(tmp_path):
    """Runs that stop at different epochs share one epoch axis; what a run lacks is NaN."""
    pipelines = tiny_pipeline_yaml(tmp_path / "pipelines.yaml")
    raw = yaml.safe_load(pipelines.read_text())
    raw["quickstart"]["sweep"] = {"corruption": [0.6], "seed": [0], "train.max_epochs": [2, 4]}
    raw["quickstart"]["train"]["stop_train_acc"] = None
    pipelines.write_text(yaml.safe_dump(raw))
    for config in load_pipeline("quickstart", pipelines).runs():
        capture_run(config, str(tmp_path / "runs"), progress=False)
    runs = stores.open_runs(tmp_path / "runs" / "quickstart")
    assert list(runs["epoch"].values) == [0, 1, 2, 4]
    acc = runs["metrics/test_acc"].sel({"train.max_epochs": 2})
    assert np.isnan(acc.sel(epoch=4)).all() and not np.isnan(acc.sel(epoch=2)).any()
    values = runs.runs.sel({"train.max_epochs": 2})["activations/relu1/values"]
    assert np.isnan(values.sel(epoch=4).values.astype(float)).all()
    assert runs["epochs/committed"].dtype == bool


def test_analysis_results_match_each_store(tiny_root):
    """The pipeline-wide Dataset and table hold exactly what each store's own
    `analysis/dynamics` holds (read with plain xarray); the CSV is that table."""
    pipelines, root = tiny_root
    analyse(load_pipeline("quickstart", pipelines), str(root), client=None, progress=False)
    results = stores.analysis_results(root / "quickstart")
    assert results["accuracy"].dims == ("run", "probe", "layer", "epoch", "score")
    assert results["masc_k"].dtype.kind == "i"
    table = stores.analysis_table(root / "quickstart")
    for corruption in (0.0, 0.6):
        store = root / "quickstart" / f"corruption={corruption},seed=0.zarr"
        own = xr.open_datatree(store, engine="zarr")["analysis/dynamics"]["accuracy"]
        got = results["accuracy"].sel(corruption=corruption, seed=0)  # plain xarray: levels drop
        np.testing.assert_array_equal(got.sel(epoch=own.epoch).values, own.values)
        rows = table[(table.corruption == corruption) & (table.probe == "velpic")
                     & (table.score == "test") & (table.layer == "relu1")
                     & table["class"].isna()].sort_values("epoch")  # not per class
        np.testing.assert_array_equal(rows.accuracy.values,
                                      own.sel(probe="velpic", score="test", layer="relu1").values)
        assert set(rows.run) == {f"corruption={corruption},seed=0"}
    csv = pd.read_csv(root / "quickstart" / "analysis.csv")
    pd.testing.assert_frame_equal(csv, table, check_dtype=False)


def test_open_runs_needs_stores(tmp_path):
    with pytest.raises(stores.StoreError, match="no run stores"):
        stores.open_runs(tmp_path)


@pytest.mark.slow
def test_report_averages_over_seeds(tmp_path):
    """The report's table is the mean ± std over seeds of each run's final-epoch values,
    read independently from each store; every figure it references exists."""
    pipelines = tiny_pipeline_yaml(tmp_path / "pipelines.yaml", max_epochs=1)
    raw = yaml.safe_load(pipelines.read_text())
    # Three levels (the levels figure needs more than two groups) x two seeds, the
    # smallest grid that has both; two layers and the two probes the report's table
    # and heatmaps are about keep the analysis small.
    raw["quickstart"]["sweep"] = {"corruption": [0.0, 0.3, 0.6], "seed": [0, 1]}
    raw["quickstart"]["capture"]["points"] = ["relu1", "relu2"]
    raw["quickstart"]["capture"]["schedule"] = {"epochs": [0, 1]}
    raw["quickstart"]["analysis"]["probes"] = ["masc", "velpic"]
    pipelines.write_text(yaml.safe_dump(raw))
    pipeline = load_pipeline("quickstart", pipelines)
    root = tmp_path / "runs"
    for config in pipeline.runs():
        capture_run(config, str(root), progress=False)
    report = Path(analyse(pipeline, str(root), client=None, progress=False))
    text = report.read_text()
    finals = [100 * float(stores.metrics(str(root / "quickstart" / f"corruption=0.3,seed={s}.zarr"))
                          ["test_acc"].isel(epoch=-1)) for s in (0, 1)]
    row = next(line for line in text.splitlines() if line.startswith("| corruption = 0.3 (2 seeds)"))
    model_cell = row.split("|")[3].strip()
    assert model_cell == f"{np.mean(finals):.1f} ± {np.std(finals):.1f}"
    for figure in ("levels.png", "dynamics.png", "heatmap_velpic.png", "heatmap_masc.png"):
        assert f"(figures/{figure})" in text
        assert (report.parent / "figures" / figure).stat().st_size > 10_000
