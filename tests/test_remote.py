"""Remote stores: a memory:// root through capture, analysis, open_runs and validate;
a file:// root through the command lines with Dask worker processes."""

from __future__ import annotations

import subprocess
import sys
import uuid

import numpy as np

import stores
from analyze.pipeline import analyse
from capture.run import capture_run
from stores import load_pipeline, location
from stores.validate import validate
from tests.conftest import REPO, tiny_pipeline_yaml


def test_memory_root_end_to_end(tmp_path, tiny_root):
    """The same pipeline captured into memory:// and onto disk gives the same arrays."""
    pipelines, disk_root = tiny_root
    root = f"memory://{uuid.uuid4().hex}/runs"
    pipeline = load_pipeline("quickstart", pipelines)
    for config in pipeline.runs():
        path = capture_run(config, root, progress=False)
        assert path == f"{root}/quickstart/{config.name}.zarr"
        assert capture_run(config, root, progress=False) == path  # complete: left alone
    report = analyse(pipeline, root, client=None, progress=False)
    assert report == f"{root}/quickstart/report.md"
    for name in ("report.md", "analysis.csv", "figures/dynamics.png"):
        assert location.is_file(f"{root}/quickstart/{name}")
    assert stores.list_runs(root) == [f"{root}/quickstart/corruption=0.0,seed=0.zarr",
                                      f"{root}/quickstart/corruption=0.6,seed=0.zarr"]
    remote = stores.open_runs(f"{root}/quickstart").sel(corruption=0.6)
    local = stores.open_run(str(disk_root / "quickstart" / "corruption=0.6,seed=0.zarr"))
    np.testing.assert_array_equal(remote["activations/relu1/values"].isel(run=0).values,
                                  stores.activations(local, "relu1").values)
    table = stores.analysis_table(f"{root}/quickstart")
    assert set(table.probe) >= {"masc", "velpic", "edit_zero_bias"}
    report = validate(f"{root}/quickstart/corruption=0.6,seed=0.zarr")
    assert report.ok and report.n_chunks > 0


def test_file_url_root_through_the_command_lines(tmp_path):
    pipelines = tiny_pipeline_yaml(tmp_path / "pipelines.yaml", max_epochs=2)
    url = f"file://{tmp_path}/runs"
    common = ["quickstart", "--pipelines", str(pipelines), "--root", url, "--quiet"]
    for module, extra in (("capture", []), ("analyze", ["--workers", "2"])):
        done = subprocess.run([sys.executable, "-m", module, *common, *extra], cwd=REPO,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "runs" / "quickstart" / "report.md").is_file()
    assert location.find_stores(url) == [str(tmp_path / "runs" / "quickstart" / f"corruption={c},seed=0.zarr")
                                         for c in ("0.0", "0.6")]
    listing = subprocess.run([sys.executable, "-m", "stores", "ls", url], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
    assert "corruption=0.6,seed=0.zarr" in listing and "complete" in listing
