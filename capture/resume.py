"""Resume a killed capture: training state to and from the store, and where to go on.

At every captured epoch the training thread takes a snapshot (copies, since training
goes on) of everything the next epoch depends on: the model's state dict, the
optimizer's state dict, the learning rate schedule (the optimizer's param groups; the
config has no separate scheduler), the global torch generator (dropout, init), the
data-order generator, the CUDA generators, and NumPy's and Python's global generators
for good measure. The background writer stores it (`stores.state`) before the epoch's
commit flag, so a committed epoch always has its state.

A resumed capture restores the state of the latest committed epoch whose copy is intact
and trains on from there. Committed epochs that training passes again (after
`stores repair` un-committed a damaged one, training restarts from the latest intact
state, or from initialization) are recomputed but never rewritten: only their state
copy is refreshed. On CPU the result is the store an uninterrupted run writes.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import numpy as np
import torch

from stores import StoreError, schema
from stores.coordinates import metric_arrays
from stores.groups import open_group
from stores.state import TrainingState, candidates, read_state

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ snapshot / restore
def _host(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", copy=True).numpy()


def _generator_names(generators) -> list[tuple[str, torch.Generator]]:
    """(name in the state, generator): `generator`, then `generator.1`, `generator.2`, ..."""
    if isinstance(generators, torch.Generator):
        generators = (generators,)
    return [("generator" if i == 0 else f"generator.{i}", g) for i, g in enumerate(generators)]


def snapshot(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
             generators, *, slot: int, epoch: int, final: bool) -> TrainingState:
    """Everything training after an epoch depends on, as host copies and JSON.

    Parameters
    ----------
    model : torch.nn.Module
        The model.
    optimizer : torch.optim.Optimizer or None
        Its optimizer (None: no optimizer state).
    generators : torch.Generator or sequence of torch.Generator
        The training's own generators (the data order), besides the global ones.
    slot, epoch : int
        The epoch slot and number the state belongs to.
    final : bool
        Whether training ends at this epoch.

    Returns
    -------
    stores.state.TrainingState
    """
    model_arrays = {name: _host(t) for name, t in model.state_dict().items()}
    opt = optimizer.state_dict() if optimizer is not None else {"state": {}, "param_groups": []}
    opt_arrays, scalars = {}, {}
    for index, entries in opt["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                opt_arrays[f"{index}.{key}"] = _host(value)
            else:  # None (an unused momentum buffer) or a plain number
                scalars.setdefault(str(index), {})[key] = value
    rng = {"torch": torch.get_rng_state().numpy(),
           **{name: g.get_state().numpy() for name, g in _generator_names(generators)}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"cuda.{i}"] = state.numpy()
    np_state = np.random.get_state(legacy=False)
    np_state["state"] = {"key": np_state["state"]["key"].tolist(), "pos": int(np_state["state"]["pos"])}
    py_version, py_internal, py_gauss = random.getstate()
    meta = {
        "param_groups": _jsonable(opt["param_groups"]),
        "optimizer_scalars": _jsonable(scalars),
        "scheduler": None,  # no learning-rate scheduler beyond the param groups' lr
        "numpy_random": np_state,  # JSON already (plain ints and strings)
        "python_random": [py_version, list(py_internal), py_gauss],  # likewise
    }
    return TrainingState(slot, epoch, final, {"model": model_arrays, "optimizer": opt_arrays,
                                              "rng": rng}, meta)


def restore(state: TrainingState, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
            generators) -> None:
    """Put a training state back into the model, the optimizer and every generator.

    Parameters
    ----------
    state : stores.state.TrainingState
        What `snapshot` took (read back by `resume_point`).
    model, optimizer, generators
        As `snapshot` takes them; changed in place.
    """
    as_tensor = lambda a: torch.from_numpy(np.array(a, copy=True))  # noqa: E731
    model.load_state_dict({k: as_tensor(v) for k, v in state.arrays["model"].items()}, strict=True)
    opt_state: dict[int, dict] = {}
    for name, value in state.arrays["optimizer"].items():
        index, key = name.split(".", 1)
        opt_state.setdefault(int(index), {})[key] = as_tensor(value)
    for index, entries in state.meta.get("optimizer_scalars", {}).items():
        opt_state.setdefault(int(index), {}).update(entries)
    if optimizer is not None:
        optimizer.load_state_dict({"state": opt_state, "param_groups": state.meta["param_groups"]})
    rng = state.arrays["rng"]
    torch.set_rng_state(as_tensor(rng["torch"]))
    for name, generator in _generator_names(generators):
        generator.set_state(as_tensor(rng[name]))
    cuda = sorted((k for k in rng if k.startswith("cuda.")), key=lambda k: int(k.split(".")[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([as_tensor(rng[k]) for k in cuda])
    np_state = state.meta["numpy_random"]
    np_state["state"]["key"] = np.asarray(np_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(np_state)
    version, internal, gauss = state.meta["python_random"]
    random.setstate((version, tuple(internal), gauss))


def _jsonable(obj):
    """Tuples to lists, NumPy scalars to Python ones (attributes are JSON)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


# ------------------------------------------------------------------ where to go on
@dataclass
class Resume:
    """What a resumed capture starts from.

    Attributes
    ----------
    state : stores.state.TrainingState or None
        The state to restore (None: train from initialization).
    committed : numpy.ndarray
        bool (slot,): the committed flags.
    metrics : dict of str to numpy.ndarray
        Every metric the store holds -> (slot,) its value at each committed slot (for the
        stop rules and early stopping when training passes them again), NaN elsewhere.
    epochs : numpy.ndarray
        int (slot,): the epoch each slot holds (committed) or is laid out for (-1: the
        spare slot).
    n_committed : int
        How many slots are committed.
    """

    state: TrainingState | None
    committed: np.ndarray
    metrics: dict[str, np.ndarray]
    epochs: np.ndarray

    @property
    def n_committed(self) -> int:
        return int(self.committed.sum())


def fresh(schedule: list[int]) -> Resume:
    """Where a new store starts: from initialization, nothing committed.

    Parameters
    ----------
    schedule : list of int
        The store's scheduled epochs (its slots, plus the spare one).

    Returns
    -------
    Resume
    """
    epochs = np.array([*schedule, -1], dtype=np.int64)
    return Resume(None, np.zeros(len(epochs), dtype=bool), {}, epochs)


def resume_point(path: str) -> Resume:
    """Where a resumed capture goes on.

    Parameters
    ----------
    path : str
        An unfinished store.

    Returns
    -------
    Resume
        The state of the latest committed slot whose copy is intact (None: retrain from
        initialization), and what is committed.

    Raises
    ------
    StoreError
        When a committed chunk of the flags or the metrics is damaged.
    """
    root = open_group(path, checked=False)
    try:
        committed = root[f"{schema.EPOCHS}/committed"][:]
        epochs = root[f"{schema.EPOCHS}/epoch"][:]
        metrics = {}
        for name, array in metric_arrays(root[schema.METRICS]):
            values = metrics[name] = np.full(len(committed), np.nan)
            for slot in np.flatnonzero(committed):  # for the stop rules when training passes them
                values[slot] = array[slot]
    except ValueError as err:  # a damaged chunk of a committed epoch
        raise StoreError(f"{path}: a committed chunk is damaged ({str(err).splitlines()[0]}); "
                         f"run `python -m stores repair {path}`, then this again")
    first_open = int(np.argmin(committed)) if not committed.all() else len(committed)
    for cand in candidates(root):
        slot = int(cand["slot"])
        if slot < first_open and committed[slot]:
            try:
                return Resume(read_state(root, slot), committed, metrics, epochs)
            except StoreError as err:
                log.warning("%s: cannot use the training state of slot %d (%s); trying an "
                            "earlier one", path, slot, err)
    if committed.any():
        log.warning("%s: no intact training state for the committed epochs; retraining from "
                    "initialization (committed epochs are recomputed, not rewritten)", path)
    return Resume(None, committed, metrics, epochs)
