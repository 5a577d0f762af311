"""Analysis results in a store: write `analysis/<name>` groups atomically, read back the
whole ones, tidy what a killed write left, and keep the consolidated metadata current.

`python -m analyze` writes each `analysis/<name>` group aside, as a Zarr group of its
own beside the store (`RUN.zarr.analysis-<name>.creating`: outside the store, so that
neither a reader nor a consolidation of the store ever lists it), then swaps it into
place. A reader sees the old group or the new one, never a part of either:

* on a local file system the swap is one `renameat2(RENAME_EXCHANGE)` (Linux), and the
  old group, now aside, is removed; where the kernel or file system cannot exchange,
  the old group is renamed aside (`.replaced`) and the new one renamed in: for an
  instant the group is absent (never partial), and a kill there leaves the old group
  aside, which `recover_analysis` puts back;
* on an object store (s3://, memory://) nothing renames a tree in one step: the old
  group's `zarr.json` goes first (the group is absent), then its arrays, then the new
  arrays, then the new group's `zarr.json` last. A kill in between leaves no group or
  one whose arrays are incomplete, which `stored_analysis` reads as absent (so analysis
  recomputes it).

The store's consolidated metadata (present once a capture finished) would describe the
old group: it is dropped before the first swap and written again after the last.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import posixpath
from typing import Mapping

import xarray as xr
import zarr

from . import cf, location, schema
from .errors import StoreError
from .groups import consolidate, open_plain
from .reader import run_attrs

log = logging.getLogger(__name__)

STAGING, REPLACED = "creating", "replaced"


def analysis_aside(path: str, name: str, what: str = STAGING) -> str:
    """Where the group `analysis/<name>` of a store is written aside.

    Parameters
    ----------
    path : str
        The store the group belongs to.
    name : str
        The analysis group's short name (`dynamics`).
    what : {"creating", "replaced"}, default "creating"
        The new group being written, or the old one moved aside.

    Returns
    -------
    str
        `RUN.zarr.analysis-<name>.<what>`, beside the store.
    """
    return f"{str(path).rstrip('/')}.{schema.ANALYSIS}-{name}.{what}"


def asides(path: str) -> list[str]:
    """Everything a killed analysis left beside the store (`analysis_aside`), sorted.

    Parameters
    ----------
    path : str
        The store whose folder to look in (the leftovers are its siblings, not
        inside it).

    Returns
    -------
    list of str
        Their paths ([] if the store's folder is absent).
    """
    parent, prefix = location.parent(path), f"{location.name(path)}.{schema.ANALYSIS}-"
    try:
        entries = [location.name(e) for e in location.listdir(parent)]
    except FileNotFoundError:
        return []
    return [location.join(parent, e) for e in sorted(entries) if e.startswith(prefix)]


def with_cf_attrs(ds: xr.Dataset, group: str) -> xr.Dataset:
    """`ds` with the CF-style attributes (`stores.cf`) on every variable and coordinate
    that lacks them (a shallow copy; `ds` is not changed).

    Parameters
    ----------
    ds : xarray.Dataset
        An analysis result.
    group : str
        Its group's path in the store (`analysis/dynamics`).

    Returns
    -------
    xarray.Dataset
    """
    out = ds.copy()
    for name, variable in out.variables.items():
        variable.attrs = {**cf.array_attrs(f"{group}/{name}"), **variable.attrs}
    return out


def write_analysis(path: str, datasets: Mapping[str, xr.Dataset]) -> None:
    """Replace `analysis/<name>` groups of one store, one by one, each atomically (see
    the module's docstring); nothing else in the store is touched.

    The caller holds the store's analysis lock (`stores.lock`). A store that is still
    being written is not consolidated here (its capture does that when it finishes).

    Parameters
    ----------
    path : str
        The store to write into.
    datasets : mapping of str to xarray.Dataset
        Short group name (`schema.ANALYSIS_NODES`, ...) -> its new content.

    Raises
    ------
    StoreError
        When the file system refuses a write (full, read-only): in one line, with the
        captured data and the earlier results intact.
    """
    if not datasets:
        return
    name = next(iter(datasets))
    try:
        for name, ds in datasets.items():
            staging = analysis_aside(path, name)
            location.remove(staging)
            # Every chunk checksummed, as the captured data are (`python -m stores validate`).
            encoding = {v: {"compressors": schema.compressors(schema.COMPRESSED)} for v in ds.variables}
            ds = with_cf_attrs(ds, f"{schema.ANALYSIS}/{name}")
            ds.to_zarr(staging, mode="w-", zarr_format=3, consolidated=False, encoding=encoding)
        _drop_consolidated(path)
        root = open_plain(path, mode="r+")
        if schema.ANALYSIS not in root:
            root.create_group(schema.ANALYSIS)
        for name in datasets:
            _swap_in(analysis_aside(path, name), f"{str(path).rstrip('/')}/{schema.ANALYSIS}/{name}",
                     analysis_aside(path, name, REPLACED))
        # Read after the swaps: a capture that finishes meanwhile consolidates after them,
        # or has finished before this reads its status.
        if run_attrs(path).get("status") == schema.STATUS_COMPLETE:
            consolidate(path)
    except OSError as err:  # a full disk, a read-only folder: one line, nothing committed touched
        for aside in datasets:
            location.remove(analysis_aside(path, aside))
        raise StoreError(f"{path}: cannot write analysis/{name} "
                         f"({location.os_reason(err)}); the captured data and the "
                         "earlier analysis results are intact: free space or make the folder "
                         "writable, then run the analysis again") from err


def stored_analysis(path: str) -> dict[str, xr.Dataset]:
    """Every whole `analysis/<name>` group of a store, loaded into memory.

    A group that is not whole (`schema.ANALYSIS_LAYOUT`; or unreadable) is left out
    with a warning: it is what an interrupted write left, and is recomputed, never
    trusted.

    Parameters
    ----------
    path : str
        The store whose results to read.

    Returns
    -------
    dict of str to xarray.Dataset
        Short group name -> its content ({} if there is none).
    """
    group = open_plain(path)
    if schema.ANALYSIS not in group:
        return {}
    out = {}
    for name in sorted(name for name, _ in group[schema.ANALYSIS].groups()):
        try:
            with xr.open_zarr(path, group=f"{schema.ANALYSIS}/{name}", consolidated=False,
                              zarr_format=3) as ds:
                ds = ds.load()
            problem = _incomplete(name, ds)
        except (KeyError, ValueError, OSError, TypeError) as err:
            problem = f"unreadable ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        if problem:
            log.warning("%s: analysis/%s is incomplete (%s), as an interrupted analysis leaves "
                        "it; it is recomputed", path, name, problem)
            continue
        out[name] = ds
    return out


def _incomplete(name: str, ds: xr.Dataset) -> str:
    """Why a loaded analysis group is not whole ("" if it is)."""
    if not ds.data_vars:
        return "no arrays"
    for var, dims in schema.ANALYSIS_LAYOUT.get(name, {}).items():
        if var not in ds.data_vars:
            return f"no {var!r}"
        if ds[var].dims != dims:
            return f"{var!r} has dims {ds[var].dims}, expected {dims}"
    if "epoch" in ds.dims and ("epoch" not in ds.coords or ds.indexes["epoch"].has_duplicates):
        return "no epoch coordinate" if "epoch" not in ds.coords else "repeated epochs"
    return ""


def recover_analysis(path: str) -> list[str]:
    """Tidy what a killed analysis left beside the store: a group written aside but not
    swapped in is removed (it is recomputed); an old group moved aside whose replacement
    never arrived is put back.

    Parameters
    ----------
    path : str
        The store whose leftovers to tidy.

    Returns
    -------
    list of str
        What it did, one phrase each.
    """
    done = []
    prefix = f"{location.name(path)}.{schema.ANALYSIS}-"
    for aside in asides(path):
        entry = location.name(aside)
        name, _, what = entry[len(prefix):].rpartition(".")
        target = location.join(path, schema.ANALYSIS, name)
        if what == REPLACED and not location.is_store(target):
            location.remove(target)
            location.move(aside, target)
            done.append(f"put back analysis/{name}")
        elif what in (STAGING, REPLACED):
            location.remove(aside)
            done.append(f"removed {entry}")
    return done


def consolidate_if_stale(path: str) -> bool:
    """Consolidate the store's metadata again when its consolidated copy is missing or
    describes `analysis/` otherwise than the groups now there.

    Parameters
    ----------
    path : str
        The store to consolidate if need be (one whose capture has finished: a
        running one is read without consolidated metadata).

    Returns
    -------
    bool
        Whether it consolidated.
    """
    meta = zarr.open_group(path, mode="r", zarr_format=3).metadata.consolidated_metadata
    plain = open_plain(path)
    described = lambda node: {k: v for k, v in node.to_dict().items()  # noqa: E731
                              if k != "consolidated_metadata"}
    now = {}
    if schema.ANALYSIS in plain:
        now = {f"{schema.ANALYSIS}/{key}": described(node.metadata)
               for key, node in plain[schema.ANALYSIS].members(max_depth=None)}
    seen = {} if meta is None else {key: described(node) for key, node in meta.flattened_metadata.items()
                                     if key.startswith(f"{schema.ANALYSIS}/")}
    if meta is not None and now == seen:
        return False
    consolidate(path)
    return True


def _drop_consolidated(path: str) -> None:
    """Rewrite the root metadata without its consolidated copy of the tree (one atomic
    file write), so that no reader trusts it while analysis groups are swapped."""
    if zarr.open_group(path, mode="r", zarr_format=3).metadata.consolidated_metadata is None:
        return
    root = open_plain(path, mode="r+")
    root.attrs["status"] = root.attrs.get("status", schema.STATUS_RUNNING)  # rewrites zarr.json


def _swap_in(staging: str, target: str, replaced: str) -> None:
    if not location.is_local(staging):
        return _swap_in_remote(staging, target)
    staging, target, replaced = (location.normalize(p) for p in (staging, target, replaced))
    if not os.path.exists(target):
        _rename(staging, target)
        return
    if _exchange(staging, target):
        location.remove(staging)  # the old group, now aside
        return
    location.remove(replaced)
    _rename(target, replaced)
    _rename(staging, target)
    location.remove(replaced)


def _rename(source: str, target: str) -> None:
    os.rename(source, target)  # (one name, so that a test can kill the swap here)


def _exchange(a: str, b: str) -> bool:
    """Swap two paths in one step (Linux `renameat2(RENAME_EXCHANGE)`); False where the
    C library, kernel or file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), a)


def _swap_in_remote(staging: str, target: str) -> None:
    """The best an object store allows: the group is absent while it is replaced, and its
    `zarr.json` arrives last (see the module's docstring)."""
    fs, src = location.filesystem(staging)
    dst = location.filesystem(target)[1]
    if fs.exists(dst):
        if fs.exists(posixpath.join(dst, "zarr.json")):
            fs.rm(posixpath.join(dst, "zarr.json"))
        fs.rm(dst, recursive=True)
    top = posixpath.join(src, "zarr.json")
    files = sorted(fs.find(src), key=lambda f: f.rstrip("/") == top.rstrip("/"))
    for file in files:
        fs.mv(file, dst + file[len(src):])
    if fs.exists(src):
        fs.rm(src, recursive=True)
