"""The README's Python examples run as written, on a tiny quickstart captured where they
look for it (`runs/quickstart` under the working directory), so they never rot."""

from __future__ import annotations

import copy
import re

import pytest
import xarray as xr
import yaml

from analyze.pipeline import analyse
from capture.run import capture_run
from stores import load_pipeline

from .conftest import REPO, tiny_pipeline_yaml

pytestmark = pytest.mark.slow  # captures and analyses its own quickstart

BLOCKS = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
# Blocks that need what a test cannot have (an S3 bucket) are left out, by what they name.
LOCAL = [b for b in BLOCKS if "s3://" not in b]


@pytest.fixture(scope="module")
def quickstart_here(tmp_path_factory):
    """quickstart, shrunk (narrow MLP, ten epochs), with epochs 0 and 10 captured (the
    examples select epoch 10), analysed."""
    base = tmp_path_factory.mktemp("readme")
    pipelines = tiny_pipeline_yaml(base / "pipelines.yaml", max_epochs=10, stop_train_acc=None)
    raw = yaml.safe_load(pipelines.read_text())
    raw["quickstart"]["capture"]["schedule"] = {"epochs": [0, 10]}
    pipelines.write_text(yaml.safe_dump(raw))
    pipeline = load_pipeline("quickstart", pipelines)
    for config in pipeline.runs():
        capture_run(config, str(base / "runs"), progress=False)
    analyse(pipeline, str(base / "runs"), client=None, progress=False)
    # quickstart-edit (an edit at epoch 10, on to 12) and quickstart-relabel (3 epochs),
    # as pipelines.yaml defines them, on the shrunk source
    defined = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    for name, train, sweep in (("quickstart-edit", {"max_epochs": 12}, {"init_epoch": [10]}),
                               ("quickstart-relabel", {"max_epochs": 3}, {})):
        then = copy.deepcopy(defined[name])
        then["model"]["widths"] = raw["quickstart"]["model"]["widths"]
        then["capture"]["points"] = [raw["quickstart"]["capture"]["points"][-1]]
        then["train"].update(train)
        then["sweep"].update(sweep)
        path = base / f"{name}.yaml"
        path.write_text(yaml.safe_dump({name: then}, sort_keys=False))  # the sweep order names runs
        for config in load_pipeline(name, path).runs():
            capture_run(config, str(base / "runs"), progress=False)
    return base


def test_the_readme_has_python_examples():
    assert len(LOCAL) >= 3 and len(BLOCKS) > len(LOCAL)


@pytest.mark.parametrize("block", LOCAL, ids=lambda b: b.strip().splitlines()[-1][:40])
def test_readme_example_runs(block, quickstart_here, monkeypatch):
    monkeypatch.chdir(quickstart_here)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    for name in ("run", "runs", "tree"):
        if name in namespace:
            assert isinstance(namespace[name], xr.DataTree), name
    if "h" in namespace:
        assert {"epoch", "sample", "unit"} <= set(namespace["h"].dims)
