"""Find run stores under a folder (a path or an fsspec URL) and summarise them."""

from __future__ import annotations

from pathlib import Path

from . import location
from .errors import StoreError
from .reader import run_attrs
from .slabs import committed_slots


def list_runs(root: str | Path) -> list[str]:
    """The run stores under a folder.

    Parameters
    ----------
    root : str or Path
        A folder, or an fsspec URL.

    Returns
    -------
    list of str
        Every `*.zarr` run store under `root` (recursively), sorted.

    Raises
    ------
    StoreError
        When `root` is not a folder.
    """
    if not location.is_dir(root):
        raise StoreError(f"no directory {root}")
    return location.find_stores(root)


def summary(path: str | Path) -> dict:
    """One line's worth of facts about a store (`python -m stores ls`).

    Parameters
    ----------
    path : str or Path
        The store to describe.

    Returns
    -------
    dict
        `path`, `pipeline`, `run`, `status`, `committed` (how many epochs),
        `last_epoch` and `size_mib`.
    """
    attrs = run_attrs(str(path))
    slots, epochs = committed_slots(str(path))
    return {
        "path": str(path),
        "pipeline": attrs.get("pipeline", "?"),
        "run": attrs.get("run_name", "?"),
        "status": attrs.get("status", "?"),
        "committed": len(slots),
        "last_epoch": int(epochs[-1]) if len(epochs) else None,
        "size_mib": round(location.size_bytes(path) / 2**20, 1),
    }
