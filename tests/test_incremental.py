"""Analysis during capture: `analyze` on stores that are still being written sees their
committed epochs only, never fails on a half-written epoch or a run not yet started, and
running it again later computes only the new (epoch, layer) tasks. The merged results
equal those of one analysis of the finished stores."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import stores
from analyze import grid
from analyze.pipeline import analyse
from analyze.report import run_notes
from capture.run import capture_run
from stores import RunWriter, load_pipeline

from .conftest import fresh_tiny_root, tiny_pipeline_yaml
from .test_resume import crash_at

pytestmark = pytest.mark.slow  # builds its own stores end to end: not in `make test-fast`


def _results(path: str) -> dict[str, xr.Dataset]:
    out = {}
    for name in ("dynamics", "edit"):
        with xr.open_zarr(path, group=f"analysis/{name}", consolidated=False) as ds:
            out[name] = ds.load()
    return out


def _assert_same(a: dict[str, xr.Dataset], b: dict[str, xr.Dataset]) -> None:
    for name in ("dynamics", "edit"):
        x, y = a[name], b[name]
        assert set(x.data_vars) == set(y.data_vars) and x.attrs == y.attrs
        for coord in x.coords:
            assert [str(v) for v in x[coord].values] == [str(v) for v in y[coord].values], coord
        for var in x.data_vars:
            np.testing.assert_array_equal(x[var].values, y[var].values, err_msg=f"{name}/{var}")


@pytest.fixture
def counted(monkeypatch) -> list[int]:
    """The number of tasks each analysis ran."""
    runs: list[int] = []
    original = grid.run_eager

    def run_eager(tasks, settings, progress=False):
        runs.append(len(tasks))
        return original(tasks, settings, progress)

    monkeypatch.setattr(grid, "run_eager", run_eager)
    return runs


def test_analysis_during_capture_is_incremental_and_equals_a_full_one(tiny_root, tmp_path, monkeypatch,
                                                                     counted):
    pipelines, _ = tiny_root
    pipeline = load_pipeline("quickstart", pipelines)
    clean, corrupted = pipeline.runs()  # corruption 0.0 and 0.6; slots: epochs 0, 1, 2, 4
    live, done = tmp_path / "live", fresh_tiny_root(tiny_root, tmp_path / "done")
    analyse(pipeline, str(done), client=None, progress=False)  # the finished stores, at once
    full = {c.name: _results(c.store_path(str(done))) for c in (clean, corrupted)}
    counted.clear()

    # The 0.6 run dies with slot 3 written but not committed; the 0.0 run has not started.
    with monkeypatch.context() as patch:
        crash_at(patch, RunWriter, "commit", 4)
        with pytest.raises(Exception):
            capture_run(corrupted, str(live), progress=False)
    path = corrupted.store_path(str(live))
    assert stores.run_attrs(path)["status"] == "running"
    report = Path(analyse(pipeline, str(live), client=None, progress=False)).read_text()
    assert counted == [3 * 3]  # three layers x the three committed epochs
    assert "Not in this report yet: corruption=0.0,seed=0 (no store yet)." in report
    assert "(running: 3 of 4 scheduled epochs committed) | 2 |" in report
    partial = _results(path)
    assert list(partial["dynamics"].epoch.values) == [0, 1, 2]
    assert stores.run_attrs(path)["status"] == "running"  # analysis did not consolidate it

    analyse(pipeline, str(live), client=None, progress=False)
    assert counted == [9]  # nothing new: no task ran

    capture_run(corrupted, str(live), progress=False)  # resumes and finishes
    capture_run(clean, str(live), progress=False)
    analyse(pipeline, str(live), client=None, progress=False)
    assert counted[-1] == 3 * 1 + 3 * 4  # the 0.6 run's new epoch, the 0.0 run's four
    for config in (clean, corrupted):
        _assert_same(_results(config.store_path(str(live))), full[config.name])
    assert list(stores.open_run(path)["analysis/dynamics"].epoch.values) == [0, 1, 2, 4]


def test_a_store_without_a_committed_epoch_is_skipped(tmp_path, monkeypatch, counted):
    pipelines = tiny_pipeline_yaml(tmp_path / "p.yaml", max_epochs=2)
    pipeline = load_pipeline("quickstart", pipelines)
    clean, corrupted = pipeline.runs()
    capture_run(clean, str(tmp_path), progress=False)
    with monkeypatch.context() as patch:
        crash_at(patch, RunWriter, "write_activations", 2)  # inside epoch 0
        with pytest.raises(Exception):
            capture_run(corrupted, str(tmp_path), progress=False)
    report = Path(analyse(pipeline, str(tmp_path), client=None, progress=False)).read_text()
    assert counted == [3 * 3]  # the clean run only
    assert "Not in this report yet: corruption=0.6,seed=0 (no committed epoch yet)." in report
    assert "analysis" not in stores.open_run(corrupted.store_path(str(tmp_path))).children


def test_a_capture_committing_during_the_analysis_is_reported_as_running(tiny_root, tmp_path, monkeypatch,
                                                                         counted):
    """Issue 14, case 4: a capture that commits an epoch while `analyze` computes made the
    report step fail (`KeyError: not all values found in index 'layer'`: the report took
    each run's final epoch from the model's metrics, which had an epoch the probes had
    not). The report uses the last analysed epoch and says the run is still running; runs
    at different committed epochs and a finished one sit side by side."""
    pipelines, _ = tiny_root
    pipeline = load_pipeline("quickstart", pipelines)
    clean, corrupted = pipeline.runs()  # slots: epochs 0, 1, 2, 4
    root = fresh_tiny_root(tiny_root, tmp_path / "runs")  # the 0.0 run is finished
    path = corrupted.store_path(str(root))
    shutil.rmtree(path)
    with monkeypatch.context() as patch:
        crash_at(patch, RunWriter, "commit", 3)  # epochs 0 and 1 committed
        with pytest.raises(Exception):
            capture_run(corrupted, str(root), progress=False)
    planned = grid.run_eager

    def capture_meanwhile(tasks, settings, progress=False):
        results = planned(tasks, settings, progress)
        with monkeypatch.context() as patch:  # the capture goes on and commits epoch 2
            crash_at(patch, RunWriter, "commit", 2)
            with pytest.raises(Exception):
                capture_run(corrupted, str(root), progress=False)
        return results

    monkeypatch.setattr(grid, "run_eager", capture_meanwhile)
    report = Path(analyse(pipeline, str(root), client=None, progress=False)).read_text()
    assert counted == [3 * 4 + 3 * 2]
    assert "| corruption = 0.0 (1 seed) | 4 |" in report
    assert ("| corruption = 0.6 (1 seed) (running: 3 of 4 scheduled epochs committed, 2 analysed) | 1 |"
            in report)
    assert "Some runs are still being captured" in report
    table = pd.read_csv(root / "quickstart" / "analysis.csv")
    assert sorted(table.query("run == @corrupted.name").epoch.unique()) == [0, 1]

    monkeypatch.setattr(grid, "run_eager", planned)
    report = Path(analyse(pipeline, str(root), client=None, progress=False)).read_text()
    assert counted == [18, 3]  # the epoch committed meanwhile, now
    assert "| corruption = 0.6 (1 seed) (running: 3 of 4 scheduled epochs committed) | 2 |" in report
    results = stores.analysis_results([path])  # epochs 0, 1, 2
    capture_run(corrupted, str(root), progress=False)  # finishes
    assert run_notes([path], results) == {corrupted.name: "3 of 4 committed epochs analysed"}
    report = Path(analyse(pipeline, str(root), client=None, progress=False)).read_text()
    assert "| corruption = 0.6 (1 seed) | 4 |" in report and "running" not in report
