"""Helpers shared by the benchmarks: quickstart-derived pipelines in a scratch folder."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def quickstart(**changes) -> dict:
    """The quickstart pipeline's raw YAML mapping, with `changes` merged per block
    (e.g. train={"max_epochs": 10}, sweep={...})."""
    raw = copy.deepcopy(yaml.safe_load((REPO / "pipelines.yaml").read_text())["quickstart"])
    for block, value in changes.items():
        if isinstance(value, dict) and isinstance(raw.get(block), dict) and block != "sweep":
            raw[block] = {**raw[block], **value}
        else:
            raw[block] = value
    return raw


def write_pipelines(path: Path, pipelines: dict[str, dict]) -> Path:
    """Write a pipelines file holding `pipelines` (name -> raw mapping)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(pipelines))
    return path


def summary_line(name: str, ratio: float, target: str, detail: str, note: str = "",
                 valid: bool = True) -> dict:
    """One benchmark line for run.py. `target` is ">=X", "<=X" or "info" (no verdict);
    a line that is not `valid` (e.g. wrong results) fails whatever its ratio. The note,
    which says what limits a line, is kept only where the line falls short."""
    if target == "info":
        passed = None
    else:
        bound = float(target[2:])
        passed = valid and (ratio >= bound if target.startswith(">=") else ratio <= bound)
    return {"name": name, "ratio": ratio, "target": target, "passed": passed,
            "note": note if passed is False else "", "detail": detail}
