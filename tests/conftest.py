"""Shared fixtures: a tiny digits pipeline derived from quickstart, captured once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from capture.run import capture_run
from stores import load_pipeline

REPO = Path(__file__).resolve().parents[1]


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
    return pipelines, root


@pytest.fixture(scope="session")
def tiny_store(tiny_root) -> str:
    pipelines, root = tiny_root
    return str(root / "quickstart" / "corruption=0.6,seed=0.zarr")
