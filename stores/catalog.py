"""Find run stores under a directory and summarise them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .reader import committed_slots, run_attrs
from .writer import StoreError


def list_runs(root: str | Path) -> list[Path]:
    """Every `*.zarr` run store under `root` (recursively), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise StoreError(f"no directory {root}")
    return sorted(p for p in root.rglob("*.zarr") if (p / "zarr.json").is_file())


def summary(path: str | Path) -> dict:
    """One line's worth of facts about a store."""
    attrs = run_attrs(str(path))
    slots, epochs = committed_slots(str(path))
    return {
        "path": str(path),
        "pipeline": attrs.get("pipeline", "?"),
        "run": attrs.get("run_name", "?"),
        "status": attrs.get("status", "?"),
        "committed": len(slots),
        "last_epoch": int(epochs[-1]) if len(epochs) else None,
        "size_mib": _size_mib(Path(path)),
    }


def _size_mib(path: Path) -> float:
    return float(np.round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 1))
