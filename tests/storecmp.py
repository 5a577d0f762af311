"""Compare two run stores file by file: the test of "the same store as an uninterrupted run".

Every chunk file must exist in both and hold the same bytes (so every array is equal
bit for bit, NaN payloads and fill values included), and every zarr.json must hold the
same metadata, except the root attributes that record when and how the capture ran.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

# `created`: the time the store was laid out; `resumes`: when a capture went on after a kill.
TIME_DEPENDENT_ATTRS = ("created", "resumes")


def _metadata(path: Path, root: bool, skip_analysis: bool) -> dict:
    meta = json.loads(path.read_text())
    if root:
        for key in TIME_DEPENDENT_ATTRS:
            meta.get("attributes", {}).pop(key, None)
        nodes = (meta.get("consolidated_metadata") or {}).get("metadata", {})
        for name in [n for n in nodes if skip_analysis and n.startswith("analysis")]:
            del nodes[name]
    return meta


def differences(a: str | Path, b: str | Path, skip_analysis: bool = False) -> list[str]:
    """What differs between stores `a` and `b` (empty: identical), optionally leaving
    out what `analyze` wrote."""
    a, b = Path(a), Path(b)
    keep = lambda rel: not (skip_analysis and rel.parts[0] == "analysis")  # noqa: E731
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file() and keep(p.relative_to(a))}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file() and keep(p.relative_to(b))}
    out = [f"only in {a}: {p}" for p in sorted(files_a - files_b)]
    out += [f"only in {b}: {p}" for p in sorted(files_b - files_a)]
    for rel in sorted(files_a & files_b):
        if rel.name == "zarr.json":
            is_root = rel == Path("zarr.json")
            if _metadata(a / rel, is_root, skip_analysis) != _metadata(b / rel, is_root, skip_analysis):
                out.append(f"metadata differs: {rel}")
        elif (a / rel).read_bytes() != (b / rel).read_bytes():
            out.append(f"bytes differ: {rel}")
    return out


def digest(path: str | Path) -> str:
    """A hash of every file under `path` (names and bytes): did anything change?"""
    h = hashlib.sha256()
    root = Path(path)
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def inner_chunks(raw: bytes, n_inner: int) -> list[bytes]:
    """Each inner chunk of a shard file as stored (its checksum included), found by the
    shard's index: what zarr reads, wherever in the file the writer put it."""
    from stores import shards

    return [raw[o : o + n] for o, n in shards.decode_index(raw, n_inner).tolist()]
