"""Check a store chunk by chunk, and repair it by un-committing damaged epochs.

`validate` checks the schema version, that every node the schema names is there with
its dims and a shape that agrees with the epoch axis and the probe set, and reads every
chunk of every array, so that each chunk's crc32c checksum is verified. A chunk that
fails, or one that a committed epoch (or the probe set, or a valid training-state copy)
needs and that is missing, is a problem, reported by array and chunk index. Damage in
an uncommitted slot is only noted: the capture rewrites those slots anyway.

`repair` un-commits exactly the epochs that have a problem (their data are no longer
shown), marks damaged training-state copies invalid, and removes damaged analysis
results (`python -m analyze` recomputes them). A resumed capture then replays training
from the latest intact state before the first un-committed epoch (from initialization
if there is none), recomputing the epochs it passes and writing only the un-committed
ones: on CPU they come out bit for bit as they were. Damage outside the epochs (the
probe set, the layout) cannot be repaired this way; the store must be captured again.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field

import numpy as np
import zarr

from . import location, schema
from .lock import StoreLock
from .reader import _open_group
from .writer import StoreError, consolidate

EPOCH_GROUPS = (schema.EPOCHS, schema.ACTIVATIONS, schema.WEIGHTS, schema.METRICS)


@dataclass(frozen=True)
class Problem:
    array: str  # path of the array (or group) in the store
    index: tuple[int, ...] | None  # chunk index; None for the whole array
    what: str

    @property
    def top(self) -> str:
        return self.array.split("/")[0]

    @property
    def slot(self) -> int | None:
        """The epoch slot of a chunk of a captured (epoch-indexed) array."""
        if self.top in EPOCH_GROUPS and self.index:
            return self.index[0]
        return None

    def __str__(self) -> str:
        where = f" chunk {self.index}" if self.index is not None else ""
        return f"{self.array}{where}: {self.what}"


@dataclass
class Report:
    path: str
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    n_arrays: int = 0
    n_chunks: int = 0
    committed: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


# ------------------------------------------------------------------ validate
def validate(path: str) -> Report:
    """Every problem of the store at `path` (StoreError if it is not a readable store)."""
    _open_group(path)  # missing store, foreign store, newer schema: StoreError
    report = Report(path)
    if not _metadata_readable(path, report):
        return report  # the tree cannot be walked
    # Each node's own metadata, not a consolidated copy of it (which may be stale).
    root = zarr.open_group(path, mode="r", use_consolidated=False, zarr_format=3)
    _check_layout(root, report)
    try:
        report.committed = _committed(root)
    except KeyError:  # no commit flags (reported above): every chunk counts as needed
        report.committed = np.ones(len(root.attrs.get("schedule", [])) + 1, dtype=bool)
    valid_copies = _valid_state_copies(root)
    for name, array in _walk(root):
        report.n_arrays += 1
        _check_chunks(path, name, array, report, valid_copies)
    partial = [p for p in location.glob(path, "**/*.partial") if location.is_file(p)]
    if partial:
        report.notes.append(f"{len(partial)} leftover temporary file(s) of interrupted writes "
                            "(harmless; a resumed capture removes them)")
    return report


def _metadata_readable(base: str, report: Report) -> bool:
    base = location.normalize(base)
    for meta in location.glob(base, "**/zarr.json"):
        try:
            with location.open_file(meta, "rb") as f:
                json.loads(f.read())
        except (ValueError, OSError) as err:
            node = location.parent(meta)[len(base):].strip("/") or "/"
            report.problems.append(Problem(node, None, f"unreadable metadata ({err})"))
    return report.ok


def _walk(group: zarr.Group, prefix: str = ""):
    for name, array in sorted(group.arrays(), key=lambda t: t[0]):
        yield f"{prefix}{name}", array
    for name, sub in sorted(group.groups(), key=lambda t: t[0]):
        yield from _walk(sub, f"{prefix}{name}/")


def _committed(root: zarr.Group) -> np.ndarray:
    """Committed flags; a slot whose flag cannot be read counts as committed (suspect)."""
    array = root[f"{schema.EPOCHS}/committed"]
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
                  valid_copies: set[str]) -> None:
    top = name.split("/")[0]
    for index in itertools.product(*(range(n) for n in array.cdata_shape)):
        report.n_chunks += 1
        key = array.metadata.encode_chunk_key(index)
        file = location.join(base, name, key)
        committed_slot = top in EPOCH_GROUPS and (
            index[0] >= len(report.committed) or bool(report.committed[index[0]]))
        if not location.is_file(file):
            if (top == schema.SAMPLES and _checksummed(array)) or committed_slot or (
                    top == schema.STATE and name.split("/")[1] in valid_copies):
                report.problems.append(Problem(name, index, _missing_what(top, index, report)))
            elif top == schema.SAMPLES:  # written before every chunk was stored: all fill
                report.notes.append(f"{name} chunk {index}: absent (reads as the fill value; "
                                    "an older store)")
            continue
        try:
            array.blocks[index]
        except Exception as err:  # noqa: BLE001  (crc32c mismatch, truncation, bad codec)
            what = _damage(err)
            if top in EPOCH_GROUPS and not committed_slot:
                report.notes.append(f"{name} chunk {index}: {what} in an uncommitted slot "
                                    "(the capture rewrites it)")
            elif top == schema.STATE and name.split("/")[1] not in valid_copies:
                report.notes.append(f"{name} chunk {index}: {what} in an invalid training-state "
                                    "copy (never used; the capture rewrites it)")
            else:
                report.problems.append(Problem(name, index, what))


def _checksummed(array: zarr.Array) -> bool:
    return any(getattr(c, "to_dict", lambda: {})().get("name") == "crc32c"
               for c in array.metadata.codecs)


def _missing_what(top: str, index: tuple, report: Report) -> str:
    if top in EPOCH_GROUPS:
        return f"missing (slot {index[0]} is committed)"
    return "missing"


def _damage(err: Exception) -> str:
    text = str(err)
    if "checksum" in text.lower():
        return "damaged (checksum mismatch)"
    return f"damaged ({type(err).__name__}: {text.splitlines()[0] if text else ''})"


def _check_layout(root: zarr.Group, report: Report) -> None:
    """Groups, arrays, dims and shapes the schema asks for."""
    add = lambda name, what: report.problems.append(Problem(name, None, what))  # noqa: E731
    missing = [g for g in (schema.SAMPLES, *EPOCH_GROUPS) if g not in root]
    for g in missing:
        add(g, "missing group")
    if missing:
        return
    n_slots = len(root.attrs.get("schedule", [])) + 1
    n_samples = root[f"{schema.SAMPLES}/split"].shape[0] if "split" in root[schema.SAMPLES] else None
    expected: dict[str, tuple[tuple, tuple]] = {}
    for name in schema.SAMPLE_FIELDS:
        expected[f"{schema.SAMPLES}/{name}"] = (("sample",), (n_samples,))
    for name in ("epoch", "committed"):
        expected[f"{schema.EPOCHS}/{name}"] = (("epoch",), (n_slots,))
    for name in schema.METRIC_NAMES:
        expected[f"{schema.METRICS}/{name}"] = (("epoch",), (n_slots,))
    for layer in root[schema.ACTIVATIONS].attrs.get("order", []):
        node = f"{schema.ACTIVATIONS}/{layer}/{schema.VALUES}"
        units = root[node].shape[-1] if node in root else None
        expected[node] = (("epoch", "sample", "unit"), (n_slots, n_samples, units))
    for param, group in root[schema.WEIGHTS].groups():
        shape = tuple(group.attrs.get("shape", ()))
        expected[f"{schema.WEIGHTS}/{param}/{schema.VALUES}"] = (
            ("epoch", *schema.weight_dims(len(shape))), (n_slots, *shape))
    for name, (dims, shape) in expected.items():
        if name not in root:
            add(name, "missing array")
            continue
        array = root[name]
        have_dims = tuple(array.metadata.dimension_names or ())
        if have_dims != dims:
            add(name, f"dims: expected {dims}, got {have_dims}")
        if array.shape != shape:
            add(name, f"shape: expected {shape}, got {array.shape}")


def damaged(path: str, limit: int = 1) -> list[Problem]:
    """The first `limit` problems of a store (for an error message)."""
    return validate(path).problems[:limit]


# ------------------------------------------------------------------ repair
@dataclass
class Repair:
    uncommitted: list[tuple[int, int]] = field(default_factory=list)  # (slot, epoch)
    invalidated: list[str] = field(default_factory=list)  # state copies
    removed: list[str] = field(default_factory=list)  # analysis groups
    unrepairable: list[Problem] = field(default_factory=list)


def repair(path: str) -> tuple[Report, Repair]:
    """Un-commit the epochs that `validate` finds a problem in (holding the write lock)."""
    with StoreLock(path, purpose="repair"):
        report = validate(path)
        result = Repair()
        if report.ok:
            return report, result
        root = zarr.open_group(path, mode="r+", use_consolidated=False)
        _uncommit(root, report, result)
        for copy in sorted({p.array.split("/")[1] for p in report.problems if p.top == schema.STATE}):
            root[f"{schema.STATE}/{copy}"].attrs.put({"valid": False})
            result.invalidated.append(f"{schema.STATE}/{copy}")
        for name in sorted({"/".join(p.array.split("/")[:2]) for p in report.problems
                            if p.top == schema.ANALYSIS}):
            location.remove(location.join(path, name))
            result.removed.append(name)
        result.unrepairable = [p for p in report.problems
                               if p.slot is None and p.top not in (schema.STATE, schema.ANALYSIS)]
        if result.uncommitted:
            root.attrs["status"] = schema.STATUS_RUNNING  # so that capture resumes it
        elif result.removed and root.attrs.get("status") == schema.STATUS_COMPLETE:
            consolidate(path)
        return report, result


def _uncommit(root: zarr.Group, report: Report, result: Repair) -> None:
    slots = sorted({p.slot for p in report.problems if p.slot is not None})
    if not slots:
        return
    committed = root[f"{schema.EPOCHS}/committed"].with_config({"write_empty_chunks": True})
    epochs = root[f"{schema.EPOCHS}/epoch"]
    schedule = list(root.attrs.get("schedule", []))
    for slot in slots:
        committed[slot] = False  # a whole new chunk: also replaces a damaged flag
        try:
            epoch = int(epochs[slot])
        except Exception:  # noqa: BLE001  (its chunk is among the damaged ones)
            epoch = schedule[slot] if slot < len(schedule) else -1
        result.uncommitted.append((slot, epoch))
