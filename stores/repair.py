"""Repair a store from what it holds: `python -m stores repair`.

`repair`, in an order that any kill leaves a store that a later repair (or the resumed
capture) completes: writes unreadable or wrong array metadata again from the schema;
marks the store running, removes its analysis results (`python -m analyze` recomputes
them) and only then un-commits exactly the epochs that have a problem; commits again
the epochs whose flags were lost (only those whose every chunk exists and decodes);
marks damaged training-state copies invalid and removes broken analysis groups; writes
the coordinate copies again from the commit record and the probe set; and deletes the
temporaries (`*.partial`) that interrupted writes left, healthy store or not. A
resumed capture then replays training from the latest intact state before the first
un-committed epoch (from initialization if there is none), recomputing the epochs it
passes and writing only the un-committed ones: on CPU they come out bit for bit as they
were. Damage to the probe set cannot be repaired this way; the store must be captured
again.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from dataclasses import dataclass, field

import zarr

from . import coordinates, location, schema
from .groups import consolidate, open_plain
from .lock import ANALYSIS as ANALYSIS_LOCK
from .lock import StoreLock
from .metadata import expected_metadata, layout_of
from .problems import COMMITTED, DAMAGE, HOLE, LAYOUT, LOST, METADATA, Problem, Report
from .results import asides
from .state import invalidate
from .validate import documents, validate


@dataclass
class Repair:
    """What `repair` did.

    Attributes
    ----------
    uncommitted, recommitted : list of (int, int)
        The (slot, epoch) pairs un-committed (damaged) and committed again (lost flags).
    rebuilt : list of str
        The nodes whose metadata was written again.
    sources : dict of str to str
        Node -> what its metadata was rebuilt from.
    invalidated : list of str
        The training-state copies marked invalid.
    removed : list of str
        The analysis groups (or all of `analysis`) and state copies removed.
    rewritten : list of str
        The coordinate copies written again from what they copy.
    marked_running : bool
        Whether the store was marked running (so that a resumed capture completes it).
    temporaries : int
        How many leftover temporaries of interrupted writes (`*.partial`) were deleted.
    unrepairable : list of Problem
        What cannot be repaired from what the store holds.
    """

    uncommitted: list[tuple[int, int]] = field(default_factory=list)  # (slot, epoch)
    recommitted: list[tuple[int, int]] = field(default_factory=list)  # (slot, epoch)
    rebuilt: list[str] = field(default_factory=list)  # node metadata written again
    sources: dict[str, str] = field(default_factory=dict)  # node -> what it was rebuilt from
    invalidated: list[str] = field(default_factory=list)  # state copies
    removed: list[str] = field(default_factory=list)  # analysis groups
    rewritten: list[str] = field(default_factory=list)  # coordinate copies
    marked_running: bool = False
    temporaries: int = 0
    unrepairable: list[Problem] = field(default_factory=list)


def _step(name: str) -> None:
    """Called after each write of a repair: a test hook (tests raise here to kill the
    repair between two writes)."""


def repair(path: str) -> tuple[Report, Repair]:
    """Repair what `validate` finds, in a crash-safe order (see the module's docstring),
    holding the store's write lock and its analysis lock (no analysis swaps results in
    while they are being dropped).

    Parameters
    ----------
    path : str
        The store to repair.

    Returns
    -------
    report : Report
        What was wrong, before the repair.
    result : Repair
        What the repair did.
    """
    with StoreLock(path, purpose="repair"), StoreLock(path, purpose="repair", which=ANALYSIS_LOCK):
        result = Repair(temporaries=location.remove_partial_files(path))
        report = validate(path)
        if report.ok:
            return report, result
        found = report  # what was wrong (the caller's to show); `report`: what is left
        dropped = _drop_unreadable_derived(path, report, result)
        flags_lost = False
        if any(p.kind in (METADATA, LAYOUT) for p in report.problems):
            flags_lost = _rebuild_metadata(path, report, result)
        if result.rebuilt or dropped:  # now the rest of the tree can be checked
            report = validate(path, flags_lost=flags_lost)
        _mend(path, report, result)
        return found, result


def _mend(path: str, report: Report, result: Repair) -> None:
    """Un-commit the damaged epochs (the store marked running and its analysis results
    dropped first), commit the complete ones again, invalidate damaged state copies and
    remove broken analysis groups."""
    root = open_plain(path, mode="r+")
    was_complete = root.attrs.get("status") == schema.STATUS_COMPLETE
    slots = sorted({p.slot for p in report.problems if p.slot is not None})
    if slots or any(p.kind == HOLE for p in report.problems):
        # First mark it running: a kill from here on leaves a store that capture resumes
        # (and that a later repair finishes). Then drop the results of what goes.
        root.attrs["status"] = schema.STATUS_RUNNING
        result.marked_running = True
        _step("status")
        # An old group moved aside by a killed analysis would be put back by the next
        # one (`stores.results.recover_analysis`): it goes with the results.
        if schema.ANALYSIS in root or asides(path):
            _drop_analysis(path)
            result.removed.append(schema.ANALYSIS)
            _step("analysis")
        _uncommit(root, slots, result)
    _recommit(root, sorted(p.index[0] for p in report.problems if p.kind == LOST), result)
    for copy in sorted({p.array.split("/")[1] for p in report.problems if p.top == schema.STATE}):
        invalidate(root, copy)
        result.invalidated.append(f"{schema.STATE}/{copy}")
        _step("state")
    if schema.ANALYSIS not in result.removed:
        for name in sorted({"/".join(p.array.split("/")[:2]) for p in report.problems
                            if p.top == schema.ANALYSIS}):
            location.remove(location.join(path, name))
            result.removed.append(name)
            _step("analysis")
    # The coordinate copies follow the commit record as it now is (`stores.coordinates`).
    stale = [name for name, _, _ in coordinates.problems(root)]
    if coordinates.sync(root):
        result.rewritten += stale or ["coordinates"]
        _step("coordinates")
    result.unrepairable = [p for p in report.problems if p.slot is None and p.kind in
                           (DAMAGE, LAYOUT, METADATA) and p.top not in (schema.STATE, schema.ANALYSIS)]
    if was_complete and not result.marked_running:
        consolidate(path)  # the consolidated copy follows every change made


def _drop_analysis(path: str) -> None:
    if location.exists(location.join(path, schema.ANALYSIS)):
        location.remove(location.join(path, schema.ANALYSIS))
    for entry in asides(path):
        location.remove(entry)


def _uncommit(root: zarr.Group, slots: list[int], result: Repair) -> None:
    if not slots:
        return
    committed = root[COMMITTED].with_config({"write_empty_chunks": True})
    epochs = root[f"{schema.EPOCHS}/epoch"]
    schedule = list(root.attrs.get("schedule", []))
    for slot in slots:
        committed[slot] = False  # a whole new chunk: also replaces a damaged flag
        try:
            epoch = int(epochs[slot])
        except Exception:  # noqa: BLE001  (its chunk is among the damaged ones)
            epoch = schedule[slot] if slot < len(schedule) else -1
        result.uncommitted.append((slot, epoch))
        _step("uncommit")


def _recommit(root: zarr.Group, slots: list[int], result: Repair) -> None:
    """Commit again the complete epochs whose flags were lost (validate has read every
    chunk of them: all there, all valid, with an epoch number)."""
    if not slots or COMMITTED not in root:  # (not rebuilt: reported as unrepairable)
        return
    committed = root[COMMITTED].with_config({"write_empty_chunks": True})
    epochs = root[f"{schema.EPOCHS}/epoch"]
    for slot in slots:
        committed[slot] = True
        result.recommitted.append((slot, int(epochs[slot])))
        _step("recommit")


def _drop_unreadable_derived(path: str, report: Report, result: Repair) -> bool:
    """Remove the analysis results and training-state copies whose metadata cannot be
    read (recomputed by `analyze`; a resume uses the other copy or retrains)."""
    nodes = sorted({"/".join(p.array.split("/")[:2]) for p in report.problems
                    if p.kind == METADATA and p.top in (schema.ANALYSIS, schema.STATE)})
    for name in nodes:
        if any(name.startswith(f"{other}/") for other in nodes if other != name):
            continue  # inside one removed already
        location.remove(location.join(path, name))
        result.removed.append(name)
        _step("drop")
    return bool(nodes)


def _rebuild_metadata(path: str, report: Report, result: Repair) -> bool:
    """Write the zarr.json of every array whose metadata is unreadable, wrong or missing
    again from the schema (a group's from its consolidated copy). True if the commit
    flags' array was among them (its flags are then lost: the data decide)."""
    docs = documents(path)
    layout = layout_of(docs)
    consolidated = (((docs.get("") or {}).get("consolidated_metadata") or {}).get("metadata")) or {}
    for name in sorted({p.array for p in report.problems if p.kind in (METADATA, LAYOUT)
                        and p.top not in (schema.ANALYSIS, schema.STATE)}):
        doc, source = expected_metadata(layout, name) if layout else None, "the schema"
        if doc is None and docs.get(name, {}) is None:  # an unreadable group: its copy
            copy = dict(consolidated.get(name) or {})
            copy.pop("consolidated_metadata", None)  # a subgroup's copy carries an empty one
            doc, source = (copy, "its consolidated copy") if copy.get("node_type") == "group" \
                else (None, "")
        if doc is None:
            continue  # not a node the schema lays out: left for `unrepairable`
        _write_json(location.join(path, name, "zarr.json"), doc)
        result.rebuilt.append(name)
        result.sources[name] = source
        _step("metadata")
    if result.rebuilt and consolidated:
        # The consolidated copies follow (a store marked complete has them), unless another
        # node is still unreadable (it is reported).
        with contextlib.suppress(Exception):
            consolidate(path)
        _step("consolidate")
    return COMMITTED in result.rebuilt


def _write_json(target: str, doc: dict) -> None:
    """Replace a zarr.json whole (written aside, then renamed: a kill leaves the old or
    the new one)."""
    data = json.dumps(doc, indent=2).encode()
    if location.is_local(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        aside = f"{target}.{uuid.uuid4().hex}.partial"
        with open(aside, "wb") as f:
            f.write(data)
        os.replace(aside, target)
    else:
        with location.open_file(target, "wb") as f:
            f.write(data)
