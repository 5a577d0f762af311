"""P1's cross-run control: a clean model probed with another run's corrupted labels.

A clean run (its observed training labels are the true ones) is paired with every run
of the same pipeline that holds the same samples and differs from it in the corruption
rate only; MASC is then fitted on the clean run's activations with that run's observed
labels (`analysis/cross`). With the papers' fixed corruption mask, the pair sees exactly
the labels the corrupted model memorized.
"""

from __future__ import annotations

import copy
import logging

import numpy as np

import stores
from stores import slabs

from .samples import Samples

log = logging.getLogger(__name__)

SAME_SAMPLES = ("split", "index", "label_true")


def _without_rate(config: dict) -> dict:
    """A stored run config less what may differ within a pair: the corruption rate, the
    swept parameters' record of it, and the analysis settings."""
    out = copy.deepcopy(config)
    out.get("corruption", {}).pop("rate", None)
    for key in ("params", "analysis"):
        out.pop(key, None)
    return out


def cross_sources(paths: list[str]) -> dict[str, tuple[tuple[float, str, str], ...]]:
    """The label sources of P1's cross-run control.

    Parameters
    ----------
    paths : list of str
        The pipeline's run stores.

    Returns
    -------
    dict
        Clean store (no flipped training label) -> ((corruption rate, run name, store),
        ...) of each corrupted run with the same config but its corruption rate and the
        same samples, sorted by rate; clean stores without one are left out.
    """
    info = {}
    for path in paths:
        attrs, table = stores.run_attrs(path), slabs.sample_table(path)
        info[path] = (attrs, table, bool(Samples.of(table).flipped.any()))
    out = {}
    for path, (attrs, table, flipped) in info.items():
        if flipped or "config" not in attrs:  # a store without a run config pairs with none
            continue
        mine = _without_rate(attrs.get("config", {}))
        sources = []
        for other, (their_attrs, theirs, their_flipped) in info.items():
            if other == path or not their_flipped or "config" not in their_attrs or \
                    _without_rate(their_attrs["config"]) != mine:
                continue
            if not all(np.array_equal(table[k], theirs[k]) for k in SAME_SAMPLES):
                log.warning("%s: %s differs in its samples; not used for the cross-run control", path, other)
                continue
            rate = float(their_attrs.get("config", {}).get("corruption", {}).get("rate", np.nan))
            sources.append((rate, str(their_attrs.get("run_name", other)), other))
        if sources:
            out[path] = tuple(sorted(sources))
    return out
