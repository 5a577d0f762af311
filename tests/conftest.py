"""Shared fixtures: a tiny digits pipeline derived from quickstart, captured once."""

from __future__ import annotations

import multiprocessing.process
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from capture.run import capture_run
from stores import load_pipeline

REPO = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two pytest workers on two cores: one intra-op thread each keeps
    # them from oversubscribing the cores (OpenMP threads spin-waiting on a busy core make
    # small torch ops many times slower). Every comparison of this process's results
    # with another process's already holds across thread counts (or, where it is exact,
    # is between two runs of this process).
    torch.set_num_threads(1)
FAST_TIER = "not slow"  # `make test-fast`: pytest -m "not slow"


@pytest.fixture(scope="session", autouse=True)
def _fast_tier_starts_no_process(request):
    """The fast tier promises no subprocesses: there, a test that starts a Python process
    (a command line, a Dask worker) fails with a line saying to mark it slow."""
    if request.config.getoption("markexpr") != FAST_TIER:
        yield
        return
    popen = subprocess.Popen.__init__

    def refuse(what):
        raise RuntimeError(f"this test starts {what}: mark it @pytest.mark.slow "
                           "(`make test-fast` runs no subprocess)")

    def checked_popen(self, args, *rest, **kwargs):
        argv = [args] if isinstance(args, (str, bytes)) else list(args)
        if argv and (Path(str(argv[0])).name.startswith("python") or str(argv[0]) == sys.executable):
            refuse(f"a Python process ({' '.join(map(str, argv[:3]))} ...)")
        popen(self, args, *rest, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", checked_popen)
        patch.setattr(multiprocessing.process.BaseProcess, "start",
                      lambda self: refuse(f"a process ({type(self).__name__})"))
        yield


def tiny_pipeline_yaml(path: Path, **train) -> Path:
    """quickstart, shrunk: narrower MLP, a few epochs, every epoch captured."""
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())["quickstart"]
    raw["model"]["widths"] = [48, 32]
    raw["train"].update({"max_epochs": 4, **train})
    raw["capture"]["points"] = ["input", "relu1", "relu2"]
    raw["capture"]["schedule"] = {"epochs": [0, 1, 2], "every": 2}
    path.write_text(yaml.safe_dump({"quickstart": raw}))
    return path


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> tuple[Path, Path]:
    """(pipelines file, root) with both tiny quickstart runs captured."""
    base = tmp_path_factory.mktemp("tiny")
    pipelines = tiny_pipeline_yaml(base / "pipelines.yaml")
    root = base / "runs"
    for config in load_pipeline("quickstart", pipelines).runs():
        capture_run(config, str(root), progress=False)
    shutil.copytree(root, base / "pristine")  # before any test analyses `root` in place
    return pipelines, root


def fresh_tiny_root(tiny_root, dest: Path) -> Path:
    """A copy at `dest` of the tiny stores as capture left them (no analysis results,
    whatever other tests did to `tiny_root`): for tests that analyse from scratch."""
    shutil.copytree(tiny_root[1].parent / "pristine", dest)
    return dest


@pytest.fixture(scope="session")
def tiny_store(tiny_root) -> str:
    pipelines, root = tiny_root
    return str(root / "quickstart" / "corruption=0.6,seed=0.zarr")
