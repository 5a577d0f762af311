"""Start a run from a stored one: edit-then-train (P2) and relabel-and-retrain (P1).

The source store holds the weights at every committed epoch and, once `analyze` has run,
the VeLPIC edit of its last layer (`analysis/edit/weight`) and MASC's relabelling of the
training set (`analysis/relabel`). Capture only reads stores, so both are taken from
there rather than computed here.
"""

from __future__ import annotations

import numpy as np

import stores
from stores import RunConfig, StoreError, location, slabs
from stores.config import init_source
from stores.schema import EDIT, RELABEL


def source_path(config: RunConfig, root: str) -> str:
    """The source store of `config.init`, resolved against the runs root.

    Parameters
    ----------
    config : stores.RunConfig
        A run with `init.source` set (a store path, or PIPELINE/RUN under `root`).
    root : str
        The runs root.

    Returns
    -------
    str
        The source store's path.
    """
    source = init_source(config)
    return location.normalize(source) if source.endswith(".zarr") else location.join(root, f"{source}.zarr")


def _existing_source(config: RunConfig, root: str) -> str:
    path = source_path(config, root)
    if not location.is_store(path):
        raise StoreError(f"init.source: no run store at {path} (capture the source run first: "
                         f"`python -m capture {init_source(config).split('/')[0]}`)")
    return path


def source_epoch(config: RunConfig, root: str) -> tuple[int, int]:
    """The source's checkpoint that `init.epoch` names ("final": the last committed epoch).

    Parameters
    ----------
    config : stores.RunConfig
        The warm-started run.
    root : str
        The runs root the source is looked up under.

    Returns
    -------
    tuple of (int, int)
        (slot, epoch) of that checkpoint in the source store.

    Raises
    ------
    stores.StoreError
        When the source is missing or has not committed that epoch.
    """
    path = _existing_source(config, root)
    slots, epochs = slabs.committed_slots(path)
    epochs = [int(e) for e in epochs]
    if not epochs:
        raise StoreError(f"init.epoch: {path} has no committed epoch yet")
    wanted = epochs[-1] if config.init.epoch == "final" else config.init.epoch
    if wanted not in epochs:
        raise StoreError(f"init.epoch: expected one of the committed epochs of {path} "
                         f"({', '.join(map(str, epochs))}), got {config.init.epoch}")
    return int(slots[epochs.index(wanted)]), wanted


def relabelled(config: RunConfig, root: str, record: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """This run's probe set with the source's relabelled training labels (init.labels: relabel).

    `label_observed` = analysis/relabel/label, the test split divided by
    analysis/relabel/holdout into "val" (the holdout) and "test" (the rest), and the
    source's `corrupted` mask.

    Parameters
    ----------
    config : stores.RunConfig
        The relabel-and-retrain run.
    root : str
        The runs root its source is looked up under.
    record : dict of str to numpy.ndarray
        This run's sample table (split, index, label_true, label_observed, corrupted).

    Returns
    -------
    dict of str to numpy.ndarray
        A new sample table; `record` is not changed.

    Raises
    ------
    stores.StoreError
        When the source has no fitting analysis/relabel or other samples.
    """
    path = _existing_source(config, root)
    theirs = slabs.sample_table(path)
    _check_same_samples(path, theirs, record, ("index", "label_true", "split"))
    try:
        relabel = stores.open_run(path)[RELABEL]
    except KeyError:
        pipeline = stores.run_attrs(path).get("pipeline", "PIPELINE")
        raise StoreError(f"init.labels: {path} has no analysis/relabel yet; run "
                         f"`python -m analyze {pipeline}` first (with analysis.relabel_seed set)") from None
    label = np.asarray(relabel["label"].values, dtype=np.int64)
    holdout = np.asarray(relabel["holdout"].values, dtype=bool)
    test = record["split"] == "test"
    if label.shape != test.shape or holdout.shape != test.shape or (holdout & ~test).any():
        raise StoreError(f"init.labels: {path}'s analysis/relabel does not fit its samples "
                         f"(label {label.shape}, holdout {holdout.shape} for {test.size} samples; "
                         "the holdout must lie in the test split): run `python -m analyze` again")
    if not holdout.any() or not (test & ~holdout).any():
        raise StoreError(f"init.labels: {path}'s analysis/relabel holdout leaves the val or the "
                         f"test part empty ({int(holdout.sum())} of {int(test.sum())} test rows)")
    out = dict(record)
    out["label_observed"] = np.where(test, record["label_true"], label)  # = true off the training set
    out["split"] = np.where(holdout, "val", record["split"])
    out["corrupted"] = np.asarray(theirs["corrupted"], dtype=bool)
    return out


def _check_same_samples(path: str, theirs: dict, ours: dict, fields: tuple[str, ...]) -> None:
    differ = [k for k in fields if not np.array_equal(np.asarray(theirs[k]), np.asarray(ours[k]))]
    if differ:
        raise StoreError(f"init.source: {path} was trained on other samples or labels than this "
                         f"run (they differ in {', '.join(differ)}): expected the source's data and "
                         "corruption blocks")


def initial_state(config: RunConfig, root: str, samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The source's weights at `init.epoch`, with the edited head (bias 0) if asked.

    Parameters
    ----------
    config : stores.RunConfig
        The warm-started run (`init.epoch`, `init.edit`, `init.labels`).
    root : str
        Where its source store is found.
    samples : dict of str to numpy.ndarray
        This run's probe set (relabelled already, with init.labels: relabel), checked
        against the source's.

    Returns
    -------
    dict of str to numpy.ndarray
        Parameter name -> values, a new state dict.

    Raises
    ------
    stores.StoreError
        When the source lacks the epoch or its edit, or was trained on other samples.
    """
    path = _existing_source(config, root)
    slot, epoch = source_epoch(config, root)
    theirs = slabs.sample_table(path)
    if config.init.labels == "relabel":  # the training rows and their true labels are the source's
        ours_train = {**samples, "split": np.where(samples["split"] == "train", "train", "test")}
        _check_same_samples(path, theirs, ours_train, ("index", "label_true", "split"))
    else:
        _check_same_samples(path, theirs, samples, ("index", "label_observed", "split"))
    state = {name: slabs.weight_slab(path, name, slot) for name in stores.param_names(path)}
    if config.init.edit == "none":
        return state
    return _edited(path, state, epoch)


def init_attrs(config: RunConfig, root: str) -> dict:
    """The store's `init` attribute: where the run started, the epoch resolved.

    Parameters
    ----------
    config : stores.RunConfig
        The warm-started run.
    root : str
        The runs root.

    Returns
    -------
    dict
        source (a path), epoch, edit, labels, epochs.
    """
    init = config.init
    return {"source": source_path(config, root), "epoch": source_epoch(config, root)[1],
            "edit": init.edit, "labels": init.labels, "epochs": init.epochs}


def _edited(path: str, state: dict[str, np.ndarray], epoch: int) -> dict[str, np.ndarray]:
    run = stores.open_run(path)
    try:
        edit = run[EDIT]
    except KeyError:
        raise StoreError(f"init.edit: {path} has no analysis/edit yet; "
                         f"run `python -m analyze {run.attrs.get('pipeline', 'PIPELINE')}` first") from None
    if epoch not in set(int(e) for e in edit["weight"]["epoch"].values):
        raise StoreError(f"init.edit: {path}'s analysis/edit has no edit at epoch {epoch}; run "
                         f"`python -m analyze {run.attrs.get('pipeline', 'PIPELINE')}` again")
    head = edit.attrs.get("head", "head")
    weight = edit["weight"].sel(epoch=epoch).values
    new = dict(state)  # out of place: the source's arrays are not touched
    new[f"{head}.weight"] = weight.astype(np.float32)
    if f"{head}.bias" in new:
        new[f"{head}.bias"] = np.zeros_like(new[f"{head}.bias"])
    return new
