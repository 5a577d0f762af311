"""What `python -m stores validate` finds: problems of a store, each of a kind that says
what `python -m stores repair` does about it, gathered in a report."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import schema

EPOCH_GROUPS = schema.CAPTURED
COMMITTED = f"{schema.EPOCHS}/committed"

# Problem kinds: what repair does about them.
DAMAGE = "damage"  # a chunk: un-commit its epoch (or invalidate, remove, refuse)
LAYOUT = "layout"  # a node missing or misshapen: rebuilt from the schema when it knows it
METADATA = "metadata"  # unreadable or wrong zarr.json: written again from the schema
LOST = "lost"  # a complete epoch whose commit flag is lost: committed again
HOLE = "hole"  # an uncommitted epoch in a store marked complete: marked running
ANALYSIS = "analysis"  # an empty or partial analysis group: removed


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a store.

    Attributes
    ----------
    array : str
        The path of the array (or group) in the store.
    index : tuple of int or None
        The chunk's index; None for the whole array.
    what : str
        What is wrong, in words.
    kind : str, default DAMAGE
        DAMAGE, LAYOUT, METADATA, LOST, HOLE or ANALYSIS: what repair does about it.
    where : str or None, default None
        Which part of the chunk, in words, for the inner chunks of a shard ("epoch 10
        (slot 4), samples 4096-8191"; `index` is then the shard's).
    top : str
        The group directly under the root.
    slot : int or None
        The epoch slot of a damaged chunk of a captured (epoch-indexed) array.
    """

    array: str
    index: tuple[int, ...] | None
    what: str
    kind: str = DAMAGE
    where: str | None = None

    @property
    def top(self) -> str:
        return self.array.split("/")[0]

    @property
    def slot(self) -> int | None:
        """The epoch slot of a damaged chunk of a captured (epoch-indexed) array."""
        if self.kind == DAMAGE and self.top in EPOCH_GROUPS and self.index:
            return self.index[0]
        return None

    def __str__(self) -> str:
        return f"{self.array}{chunk_label(self.index, self.where)}: {self.what}"


def chunk_label(index, where: str | None = None) -> str:
    """" chunk (i, j)", " epoch 10 (slot 4), samples 0-4095" (an inner chunk of a shard)
    or "" (a whole array): what follows an array's name in a message."""
    if where:
        return f" {where}"
    return f" chunk {index}" if index is not None else ""


@dataclass
class Report:
    """What `validate` found.

    Attributes
    ----------
    path : str
        The store.
    problems : list of Problem
        What is wrong (a store without problems is `ok`).
    notes : list of str
        What is harmless but worth saying (damage in an uncommitted slot, leftovers).
    n_arrays, n_chunks : int
        How many arrays and chunks were checked.
    committed : numpy.ndarray or None
        The commit flags as read (all False when they are known lost).
    incomplete : set of int
        The slots with a chunk missing or damaged.
    written : set of int
        The slots with any chunk of activations or weights (an epoch a recorder skipped
        has none).
    epochs : numpy.ndarray or None
        Each slot's epoch number, read when a damaged shard is to be named.
    ok : bool
        No problem.
    """

    path: str
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    n_arrays: int = 0
    n_chunks: int = 0
    committed: np.ndarray | None = None
    incomplete: set[int] = field(default_factory=set)  # slots with a chunk missing or damaged
    written: set[int] = field(default_factory=set)  # slots with a chunk of activations or weights
    epochs: np.ndarray | None = None  # slot -> epoch number, read at first need

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, array: str, index, what: str, kind: str = DAMAGE, where: str | None = None) -> None:
        self.problems.append(Problem(array, index, what, kind, where))
