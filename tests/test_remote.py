"""Remote stores: a memory:// root through capture, analysis, open_runs and validate.
(A file:// root through the command lines is tests/test_analysis.py's end-to-end test.)"""

from __future__ import annotations

import uuid

import numpy as np
import pytest

import stores
from analyze.pipeline import analyse
from capture.run import capture_run
from stores import load_pipeline, location
from stores.validate import validate

pytestmark = pytest.mark.slow  # builds its own stores end to end: not in `make test-fast`


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
    remote = stores.open_runs(f"{root}/quickstart").runs.sel(corruption=0.6)
    local = stores.open_run(str(disk_root / "quickstart" / "corruption=0.6,seed=0.zarr"))
    np.testing.assert_array_equal(remote["activations/relu1/values"].isel(run=0).values,
                                  stores.activations(local, "relu1").values)
    table = stores.analysis_table(f"{root}/quickstart")
    assert set(table.probe) >= {"masc", "velpic", "edit_zero_bias"}
    report = validate(f"{root}/quickstart/corruption=0.6,seed=0.zarr")
    assert report.ok and report.n_chunks > 0
