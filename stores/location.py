"""Where stores live: a local path or any fsspec URL (`memory://`, `file://`, `s3://`).

Everything that names a root, a store or a report file goes through here, so a URL can
stand wherever a path can: every function takes a `location`, a local path or a URL. Local paths (and `file://` URLs, which become local paths)
keep using the file system directly, so zarr opens them with its `LocalStore`.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from typing import IO

import fsspec
from fsspec.core import url_to_fs


def is_url(location: str | Path) -> bool:
    """Whether `location` is a URL (`scheme://...`) rather than a local path."""
    return "://" in str(location)


def normalize(location: str | Path) -> str:
    """`file:///x/y` -> `/x/y`; other URLs and local paths as given (no trailing `/`)."""
    text = str(location)
    if text.startswith("file://"):
        text = url_to_fs(text)[1]
    return text.rstrip("/") or "/"


def is_local(location: str | Path) -> bool:
    """Whether `location` is on the local file system (a path or a `file://` URL)."""
    return not is_url(normalize(location))


def join(base: str | Path, *parts: str) -> str:
    """`base/part/...`, with `/` for URLs and the OS separator for local paths."""
    base = normalize(base)
    if is_url(base):
        return posixpath.join(base, *parts)
    return str(Path(base, *parts))


def filesystem(location: str | Path) -> tuple[fsspec.AbstractFileSystem, str]:
    """(fsspec file system, path within it)."""
    return url_to_fs(normalize(location))


def _url(fs: fsspec.AbstractFileSystem, path: str, like: str) -> str:
    """A path that `fs.find` returned, spelled like the location it came from."""
    if not is_url(like):
        return path
    return f"{like.split('://', 1)[0]}://{path.lstrip('/')}"


def exists(location: str | Path) -> bool:
    """Whether a file or a folder is at `location`."""
    fs, path = filesystem(location)
    return fs.exists(path)


def is_dir(location: str | Path) -> bool:
    """Whether a folder is at `location`."""
    fs, path = filesystem(location)
    return fs.isdir(path)


def is_file(location: str | Path) -> bool:
    """Whether a file is at `location`."""
    fs, path = filesystem(location)
    return fs.isfile(path)


def listdir(location: str | Path) -> list[str]:
    """The entries of the folder `location`, spelled as its file system spells them."""
    fs, path = filesystem(location)
    return fs.ls(path, detail=False)


def makedirs(location: str | Path) -> None:
    """Create the folder `location` and its parents (nothing if it exists)."""
    fs, path = filesystem(location)
    fs.makedirs(path, exist_ok=True)


def remove(location: str | Path) -> None:
    """Remove a store (a directory tree) or a file, if it is there."""
    fs, path = filesystem(location)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def move(source: str | Path, target: str | Path) -> None:
    """Rename a store or file (one `rename` on a local file system)."""
    source, target = normalize(source), normalize(target)
    if not is_url(source) and not is_url(target):
        os.rename(source, target)
        return
    fs, path = filesystem(source)
    fs.mv(path, filesystem(target)[1], recursive=True)


def glob(location: str | Path, pattern: str) -> list[str]:
    """Files under `location` matching `pattern` (e.g. `**/*.partial`), spelled like it."""
    location = normalize(location)
    fs, path = filesystem(location)
    return sorted(_url(fs, p, location) for p in fs.glob(posixpath.join(path, pattern)))


def open_file(location: str | Path, mode: str = "rb") -> IO:
    """A file object for reading or writing (parents are created for writing)."""
    if "w" in mode:
        makedirs(parent(location))
    fs, path = filesystem(location)
    return fs.open(path, mode)


def parent(location: str | Path) -> str:
    """The folder that holds `location`."""
    location = normalize(location)
    if is_url(location):
        return posixpath.dirname(location)
    return str(Path(location).parent)


def name(location: str | Path) -> str:
    """The last part of `location` (`corruption=0.6,seed=0.zarr`)."""
    return posixpath.basename(normalize(location))


def os_reason(err: OSError) -> str:
    """What an OSError says, as it goes inside one error line: "no space left on device"."""
    return (err.strerror or str(err)).lower()


def check_writable(location: str | Path) -> None:
    """Raise OSError (EROFS, EACCES, ...) unless a file can be created in the folder
    `location` (and removed again): a read-only store is found before any work is done
    for it, not at its first write. Only local folders are tried; a URL's first write says."""
    location = normalize(location)
    if is_url(location):
        return
    probe = os.path.join(location, f".latentgen-write-test-{os.getpid()}")
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    os.remove(probe)


def is_store(location: str | Path) -> bool:
    """A Zarr v3 group lives here (its `zarr.json` exists)."""
    return is_file(join(location, "zarr.json"))


def find_stores(root: str | Path) -> list[str]:
    """Every `*.zarr` group under `root` (not inside another store), sorted."""
    root = normalize(root)
    fs, path = filesystem(root)
    found = sorted(p for p in fs.find(path, withdirs=True)
                   if p.endswith(".zarr") and fs.isfile(posixpath.join(p, "zarr.json")))
    outer = [p for p in found if not any(p.startswith(q + "/") for q in found)]
    return [_url(fs, p, root) for p in outer]


def size_bytes(location: str | Path) -> int:
    """Bytes under `location` (0 if nothing is there)."""
    fs, path = filesystem(location)
    return int(fs.du(path, total=True)) if fs.exists(path) else 0


# The temporaries of latentgen's and zarr's atomic writes: `<name>.<uuid4 hex>.partial`.
_PARTIAL = re.compile(r"\.[0-9a-f]{32}\.partial$")


def partial_files(location: str | Path) -> list[str]:
    """The temporaries that interrupted writes left under the store `location`
    (half-written shards, chunks and copies: nothing committed names them)."""
    return [f for f in glob(location, "**/*.partial") if _PARTIAL.search(name(f)) and is_file(f)]


def remove_partial_files(location: str | Path) -> int:
    """Delete `partial_files(location)` and return how many there were. Only the store's
    writer may call this: it holds the write lock, so no write of its own is under way."""
    found = partial_files(location)
    for file in found:
        remove(file)
    return len(found)
