"""Open a run store's root Zarr group, and consolidate its metadata.

Every module of `stores` that reads or writes Zarr nodes opens a store through here, so
that the version check, the checked reads of committed chunks (`chunkio.CheckedStore`)
and the one-line errors for a missing or damaged store are the same everywhere.
"""

from __future__ import annotations

import warnings

import zarr

from . import schema
from .chunkio import checked_group
from .errors import StoreError


def open_group(path: str, checked: bool = True) -> zarr.Group:
    """The root group of the run store at `path`, opened for reading.

    Parameters
    ----------
    path : str
        The store (a local path or an fsspec URL).
    checked : bool, default True
        Read through a `chunkio.CheckedStore`, so that a chunk missing from a committed
        epoch raises StoreError instead of reading as the fill value.

    Returns
    -------
    zarr.Group
        The root group (Zarr v3 only: a v2 store could name a pickle codec).

    Raises
    ------
    StoreError
        When there is no store at `path`, its metadata is unreadable, or its
        `schema_version` is not the one this version reads.
    """
    try:
        group = zarr.open_group(path, mode="r", zarr_format=3)
    except (FileNotFoundError, NotADirectoryError, zarr.errors.GroupNotFoundError):
        raise StoreError(f"no run store at {path}")
    except ValueError as err:  # a damaged zarr.json
        raise StoreError(f"{path}: unreadable store metadata ({err})")
    version = group.attrs.get("schema_version")
    if not schema.readable(version):
        raise StoreError(schema.version_message(path, version))
    return checked_group(group, path) if checked else group


def open_plain(path: str, mode: str = "r") -> zarr.Group:
    """The root group read from each node's own metadata, never a consolidated copy
    (which may be stale while a store is written or repaired); no version check.

    Parameters
    ----------
    path : str
        The store to open.
    mode : {"r", "r+"}, default "r"
        Read only, or read and write.

    Returns
    -------
    zarr.Group
        The root group.
    """
    return zarr.open_group(path, mode=mode, zarr_format=3, use_consolidated=False)


def require_node(group: zarr.Group, name: str, path: str):
    """`group[name]`, or StoreError naming the node and what to do when it is missing.

    Parameters
    ----------
    group : zarr.Group
        A store's root group.
    name : str
        The node's path in the store (`epochs/committed`).
    path : str
        The store, for the message.

    Returns
    -------
    zarr.Array or zarr.Group
        The node.
    """
    try:
        return group[name]
    except KeyError:
        raise StoreError(f"{path}: {name} is missing: run `python -m stores validate {path}` "
                         f"(`python -m stores repair {path}` rebuilds what it can)") from None


def consolidate(path: str) -> None:
    """Consolidate the store's metadata, so that one read opens the whole tree.

    Zarr warns that consolidated metadata is not yet in the v3 spec (silenced here);
    readers fall back to each node's own metadata when it is absent.

    Parameters
    ----------
    path : str
        The store to consolidate.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(path)


def walk_arrays(group: zarr.Group, prefix: str = ""):
    """(path, array) for every array under `group`, depth first and sorted by name, the
    paths relative to it (`activations/relu1/values`)."""
    for name, array in sorted(group.arrays(), key=lambda t: t[0]):
        yield f"{prefix}{name}", array
    for name, sub in sorted(group.groups(), key=lambda t: t[0]):
        yield from walk_arrays(sub, f"{prefix}{name}/")
