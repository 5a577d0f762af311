"""Check a store chunk by chunk: `python -m stores validate` (`stores.repair` mends
what it finds).

`validate` checks the schema version, that every node the schema names is there with
its dims and a shape that agrees with the epoch axis and the probe set, that every
array's own metadata (and its consolidated copy) has the dtype, chunks, codecs and fill
value the schema lays out, and reads every chunk of every array, so that each chunk's
crc32c checksum is verified. A chunk that fails, or one that a committed epoch (or the
probe set, or a valid training-state copy) needs and that is missing, is a problem,
reported by array and chunk index. Damage in an uncommitted slot is only noted: the
capture rewrites those slots anyway. The commit flags are checked against the data: an
epoch whose every chunk is there and valid but that is not committed, in a store marked
complete or before a later committed epoch, has lost its flag; a store marked complete
with an uncommitted epoch inside its trained range (an interrupted repair) is a problem.
So is an analysis group that is empty or partial (an interrupted analysis write).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os

import numpy as np
import zarr
from zarr.core.metadata.v3 import ArrayV3Metadata

from . import location, schema
from .chunkcheck import chunk_damage, slot_epochs
from .chunkio import storage_grid
from .groups import open_group, open_plain, walk_arrays
from .metadata import Layout, expected_metadata, layout_of, metadata_differences
from .coordinates import coordinate_arrays
from .coordinates import problems as coordinate_problems
from .expected import check_layout, expected_nodes
from .problems import (ANALYSIS, COMMITTED, EPOCH_GROUPS, HOLE, LOST, METADATA, Problem, Report,
                       chunk_label)


# ------------------------------------------------------------------ validate
def validate(path: str, flags_lost: bool = False) -> Report:
    """Every problem of a store.

    Parameters
    ----------
    path : str
        The store to check, chunk by chunk.
    flags_lost : bool, default False
        The commit flags are known to be lost (repair rebuilt their array).

    Returns
    -------
    Report

    Raises
    ------
    StoreError
        When `path` is not a readable store (missing, foreign, a newer schema).
    """
    open_group(path, checked=False)  # missing store, foreign store, newer schema: StoreError
    report = Report(path)
    if not _metadata_readable(path, report):
        report.notes.append("the rest of the store is checked once its metadata can be read "
                            "(repair writes it again, or removes derived results)")
        return report  # the tree cannot be walked
    # Each node's own metadata, not a consolidated copy of it (which may be stale).
    root = open_plain(path)
    check_layout(root, report)
    docs = documents(path)
    layout = layout_of(docs)
    if layout is not None:
        _check_metadata(root, docs, layout, report)
    flags_lost = flags_lost or COMMITTED not in root
    n_slots = len(root.attrs.get("schedule", [])) + 1
    # Lost flags: nothing is known committed (the data decide, below).
    report.committed = np.zeros(n_slots, dtype=bool) if flags_lost else _committed(root)
    valid_copies = _valid_state_copies(root)
    strict_metrics = "config" in root.attrs  # a pipeline's store: see `_check_chunks`
    copies = coordinate_arrays(root)  # checked against what they copy, below
    for name, array in walk_arrays(root):
        report.n_arrays += 1
        if name not in copies:
            _check_chunks(path, name, array, report, valid_copies, strict_metrics)
    if schema.EPOCHS in root and schema.METRICS in root:
        _check_commits(root, report, flags_lost)
    for name, what, kind in coordinate_problems(root):  # what a plain reader is shown
        report.add(name, None, what, kind)
    _check_analysis(root, report)
    partial = location.partial_files(path)
    if partial:
        report.notes.append(f"{len(partial)} leftover temporary file(s) of interrupted writes "
                            "(harmless; `python -m stores repair` and a resumed capture remove them)")
    return report


def _spelled_as_found(path: str) -> str:
    """The store's location as `location.glob` spells what it finds (absolute if local)."""
    path = location.normalize(path)
    return path if location.is_url(path) else os.path.abspath(path)


def _zarr_jsons(path: str):
    """(node, its parsed zarr.json or the error reading it) for every node of the store
    ('' is the root)."""
    base = _spelled_as_found(path)
    for meta in location.glob(base, "**/zarr.json"):
        node = location.parent(meta)[len(base):].strip("/")
        try:
            with location.open_file(meta, "rb") as f:
                doc = json.loads(f.read())
        except (ValueError, OSError) as err:
            doc = err
        yield node, doc


def _metadata_readable(path: str, report: Report) -> bool:
    for node, doc in _zarr_jsons(path):
        err = doc if isinstance(doc, Exception) else _unreadable(doc)
        if err is not None:
            what = f"unreadable metadata ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
            report.add(node or "/", None, what, METADATA)
    return report.ok


def _unreadable(doc) -> Exception | None:
    """Why a parsed zarr.json is not Zarr v3 metadata zarr can read (None: it is)."""
    try:
        if not isinstance(doc, dict) or doc.get("zarr_format") != 3:
            raise ValueError("not Zarr v3 metadata")
        if doc.get("node_type") == "array":
            ArrayV3Metadata.from_dict(dict(doc))
        elif doc.get("node_type") != "group":
            raise ValueError(f"node_type {doc.get('node_type')!r}")
    except (ValueError, TypeError, KeyError) as err:
        return err
    return None


def _committed(root: zarr.Group) -> np.ndarray:
    """Committed flags; a slot whose flag cannot be read counts as committed (suspect)."""
    array = root[COMMITTED]
    out = np.zeros(array.shape[0], dtype=bool)
    for slot in range(array.shape[0]):
        try:
            out[slot] = bool(array[slot])
        except Exception:  # noqa: BLE001  (reported with its chunk below)
            out[slot] = True
    return out


def _valid_state_copies(root: zarr.Group) -> set[str]:
    if schema.STATE not in root:
        return set()
    return {name for name, g in root[schema.STATE].groups() if g.attrs.get("valid")}


def _check_chunks(base: str, name: str, array: zarr.Array, report: Report,
                  valid_copies: set[str], strict_metrics: bool) -> None:
    top = name.split("/")[0]
    epoch_data = top in EPOCH_GROUPS and name != COMMITTED  # what a complete epoch holds
    # What "missing" means. Activations, weights, epoch numbers: all are written at every
    # epoch before its commit, so a chunk absent from a committed slot is damage. Metrics:
    # the writer gives one a chunk at every slot committed after it was laid out (NaN if
    # not reported), but one first reported later was laid out then, with no chunk before:
    # it claims the slots from its first chunk on. In a pipeline's store (`strict_metrics`:
    # with a run config) all were laid out with the store and claim every slot. (A deleted
    # first chunk of a recorder's metric looks like a later first report: it goes unseen.)
    claimed = top != schema.METRICS or strict_metrics
    for index in itertools.product(*(range(n) for n in storage_grid(array))):  # files
        report.n_chunks += 1
        file = location.join(base, name, array.metadata.encode_chunk_key(index))
        present = location.is_file(file)
        claimed = claimed or present
        if present and top in (schema.ACTIVATIONS, schema.WEIGHTS):
            report.written.add(index[0])
        committed_slot = top in EPOCH_GROUPS and claimed and (
            index[0] >= len(report.committed) or bool(report.committed[index[0]]))
        if not present:
            if epoch_data and claimed:
                report.incomplete.add(index[0])
            if (top == schema.SAMPLES and _checksummed(array)) or committed_slot or (
                    top == schema.STATE and name.split("/")[1] in valid_copies):
                report.add(name, index, _missing_what(top, index))
            elif top == schema.SAMPLES:  # written before every chunk was stored: all fill
                report.notes.append(f"{name} chunk {index}: absent (reads as the fill value; "
                                    "an older store)")
            continue
        # Every chunk decoded (its crc32c checked); a shard's inner chunks one by one.
        for where, what in chunk_damage(array, file, index, lambda slot: _epoch(base, report, slot)):
            _damaged_chunk(name, index, what, report, valid_copies, epoch_data,
                           bool(committed_slot), where)


def _epoch(base: str, report: Report, slot: int) -> int:
    if report.epochs is None:
        report.epochs = slot_epochs(base, len(report.committed))
    return int(report.epochs[slot]) if slot < len(report.epochs) else -1


def _damaged_chunk(name: str, index: tuple, what: str, report: Report, valid_copies: set[str],
                   epoch_data: bool, committed_slot: bool, where: str | None = None) -> None:
    """Report a chunk that does not decode: a problem, or a note where nothing reads it."""
    top = name.split("/")[0]
    if epoch_data:
        report.incomplete.add(index[0])
    if top in EPOCH_GROUPS and not committed_slot:
        report.notes.append(f"{name}{chunk_label(index, where)}: {what} in an uncommitted slot "
                            "(the capture rewrites it)")
    elif top == schema.STATE and name.split("/")[1] not in valid_copies:
        report.notes.append(f"{name}{chunk_label(index, where)}: {what} in an invalid "
                            "training-state copy (never used; the capture rewrites it)")
    else:
        report.add(name, index, what, where=where)


def _checksummed(array: zarr.Array) -> bool:
    return any(getattr(c, "to_dict", dict)().get("name") == "crc32c"
               for c in array.metadata.codecs)


def _missing_what(top: str, index: tuple) -> str:
    if top in EPOCH_GROUPS:
        return f"missing (slot {index[0]} is committed)"
    return "missing"


def documents(path: str) -> dict[str, dict | None]:
    """Every node's own metadata document.

    Parameters
    ----------
    path : str
        The store whose metadata to read.

    Returns
    -------
    dict of str to dict or None
        Node ('' is the root) -> its parsed zarr.json; None where it is unreadable.
    """
    return {node: doc if isinstance(doc, dict) else None for node, doc in _zarr_jsons(path)}


def _check_metadata(root: zarr.Group, docs: dict, layout: Layout, report: Report) -> None:
    """Each array's own metadata, and its consolidated copy, against the schema's."""
    consolidated = (((docs.get("") or {}).get("consolidated_metadata") or {}).get("metadata")) or {}
    reported = {p.array for p in report.problems}  # dims and shape said already
    for name in expected_nodes(root):
        expected = expected_metadata(layout, name)
        if expected is None:
            continue
        skip = ("shape", "dimension_names") if name in reported else ()
        for label, doc in (("", docs.get(name)), ("consolidated metadata: ", consolidated.get(name))):
            if doc is None:
                continue
            diffs = [d for d in metadata_differences(expected, doc) if d.split(":")[0] not in skip]
            if diffs:
                report.add(name, None, f"{label}{'; '.join(diffs)} (the schema's; repair writes "
                           "it again)", METADATA)


def _slot_epochs(root: zarr.Group, n_slots: int) -> np.ndarray:
    """Each slot's epoch number, -1 where it cannot be read."""
    out = np.full(n_slots, -1, dtype=np.int64)
    if f"{schema.EPOCHS}/epoch" not in root:
        return out
    array = root[f"{schema.EPOCHS}/epoch"]
    for slot in range(min(n_slots, array.shape[0])):
        with contextlib.suppress(Exception):  # an unreadable one is reported with its chunk
            out[slot] = int(array[slot])
    return out


def _check_commits(root: zarr.Group, report: Report, flags_lost: bool) -> None:
    """Flags that the data contradict: complete epochs not committed where a capture
    would have committed them (LOST), and in a store marked complete, epochs inside the
    trained range that are neither committed nor complete (HOLE)."""
    committed = report.committed
    epochs = _slot_epochs(root, len(committed))
    complete_store = root.attrs.get("status") == schema.STATUS_COMPLETE
    final = max((int(epochs[s]) for s in np.flatnonzero(committed)), default=-1)
    intact = [s for s in range(len(committed)) if not committed[s] and s not in report.incomplete
              and epochs[s] >= 0]
    lost = [s for s in intact if flags_lost or complete_store or epochs[s] < final]
    for slot in lost:
        report.add(COMMITTED, (slot,), f"epoch {epochs[slot]} is not committed, though every "
                   "chunk of it is present and valid (a lost flag; repair commits it again)", LOST)
    frontier = sorted(set(intact) - set(lost))
    if frontier:
        report.notes.append(f"epoch slot(s) {', '.join(map(str, frontier))}: written but not "
                            "committed (an interrupted capture; resuming it rewrites them)")
    if complete_store:
        now = committed.copy()
        now[lost] = True
        schedule = list(root.attrs.get("schedule", []))
        for epoch in schema.lost_commits(now, schedule, epochs[now]):
            slot = schedule.index(epoch)
            if "config" not in root.attrs and slot not in report.written:
                continue  # a recorder skipped this scheduled epoch: nothing was lost
            report.add(COMMITTED, (slot,), f"epoch {epoch} is not committed in a store marked "
                       "complete (an interrupted repair, or data lost): repair marks it running "
                       "so that resuming the capture rewrites it", HOLE)


def _check_analysis(root: zarr.Group, report: Report) -> None:
    """Each analysis group holds what a whole write leaves: at least one data array, the
    variables its kind needs, and one size per dim name."""
    if schema.ANALYSIS not in root:
        return
    for name, group in sorted(root[schema.ANALYSIS].groups(), key=lambda t: t[0]):
        where = f"{schema.ANALYSIS}/{name}"
        arrays = dict(group.arrays())
        dims = {d for a in arrays.values() for d in (a.metadata.dimension_names or ())}
        data = set(arrays) - dims
        missing = [v for v in schema.ANALYSIS_VARIABLES.get(name, ()) if v not in arrays]
        sizes: dict[str, set[int]] = {}
        for array in arrays.values():
            for dim, n in zip(array.metadata.dimension_names or (), array.shape):
                sizes.setdefault(dim, set()).add(int(n))
        uneven = sorted(d for d, n in sizes.items() if len(n) > 1)
        # A label coordinate is never all fill (""): absent chunks are a write cut short.
        absent = [c for c in dims & set(arrays) if arrays[c].metadata.data_type.to_json(3) == "string"
                  and arrays[c].nchunks_initialized < arrays[c].nchunks]
        if not data:
            what = "empty"
        elif missing:
            what = f"partial (no {', '.join(missing)})"
        elif uneven:
            what = f"partial (dims {', '.join(uneven)} have more than one size)"
        elif absent:
            what = f"partial (coordinate {', '.join(sorted(absent))} not written)"
        else:
            continue
        report.add(where, None, f"{what}: an interrupted analysis write (repair removes it; "
                   "`python -m analyze` computes it again)", ANALYSIS)


def damaged(path: str, limit: int = 1) -> list[Problem]:
    """The first problems of a store, for an error message.

    Parameters
    ----------
    path : str
        The store that failed to read.
    limit : int, default 1
        How many.

    Returns
    -------
    list of Problem
        Damaged chunks first.
    """
    problems = validate(path).problems
    return sorted(problems, key=lambda p: p.index is None)[:limit]
