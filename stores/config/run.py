"""One run's config (`RunConfig`): the blocks together, its name, identity and hash, and
the checks that span blocks (a schedule within max_epochs, the init keys that only make
sense together, early stopping's needs)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .. import location, schema
from ..errors import ConfigError
from . import validators as valid
from .analysis import AnalysisConfig
from .blocks import CorruptionConfig, DataConfig, InitConfig, ModelConfig, TrainConfig
from .capture import CaptureConfig
from .validators import MAX_SCHEDULED_EPOCHS, check_file_name, checked, expand_epochs

# Sweep names that stand for a deeper key; any other name is a dotted path.
SWEEP_ALIASES = {
    "corruption": "corruption.rate",
    "xi": "corruption.rate",  # the modular-arithmetic paper's name for it
    "alpha": "data.alpha",
    "p": "data.p",
    "weight_decay": "train.weight_decay",
    "dropout": "model.dropout",
    "init_epoch": "init.epoch",  # edit-then-train at several epochs of one source run
}


@dataclass(frozen=True)
class RunConfig:
    """One run: one model trained once.

    A pipeline's sweep makes them (`Pipeline.runs`); a store records one
    (`to_dict`, read back by `run_config_from_dict`).

    Attributes
    ----------
    pipeline : str
        The pipeline's name.
    params : tuple of (str, value)
        The swept values that name the run.
    seed : int
        The run's seed (and the corruption's, unless corruption.seed is set).
    data, corruption, model, train, capture, analysis, init
        The blocks (DataConfig, CorruptionConfig, ModelConfig, TrainConfig,
        CaptureConfig, AnalysisConfig, InitConfig).
    """

    pipeline: str
    params: tuple[tuple[str, Any], ...] = ()
    seed: int = field(default=0, metadata=checked(valid.number(0, integer=True)))
    data: DataConfig = DataConfig()
    corruption: CorruptionConfig = CorruptionConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    capture: CaptureConfig = CaptureConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    init: InitConfig = InitConfig()

    @property
    def name(self) -> str:
        """`corruption=0.6,seed=0`: deterministic from the swept parameters."""
        return ",".join(f"{k}={v}" for k, v in self.params) or "default"

    @property
    def schedule(self) -> list[int]:
        """The captured epochs. A run whose epochs continue its source's (init.epochs:
        continue) starts at init.epoch E, always captured: the schedule's epochs >= E."""
        epochs = self.capture.schedule.resolve(self.train.max_epochs)
        first = first_epoch(self)
        if first == 0:
            return epochs
        return [first] + [e for e in epochs if e > first]

    def to_dict(self) -> dict:
        """Every key, as a store records it (`params` a mapping)."""
        out = dataclasses.asdict(self)
        out["params"] = dict(self.params)
        return out

    def identity(self) -> dict:
        """What a store's data depends on: everything but the analysis settings, as the
        values that differ from the defaults, so that a key added later with a default
        leaves the identity (and the hash) of existing runs as it was."""
        default = RunConfig(pipeline=self.pipeline).to_dict()
        out = _sparse(self.to_dict(), default)
        out.pop("analysis", None)
        out.update(pipeline=self.pipeline, params=dict(self.params))
        return out

    def hash(self) -> str:
        """The hash of `identity()`, which a store carries."""
        return schema.config_hash(self.identity())

    def store_path(self, root: str) -> str:
        """ROOT/PIPELINE/RUN.zarr (the names checked as plain file names)."""
        check_file_name(self.pipeline, "pipeline name")
        check_file_name(self.name, "run name")
        return location.join(root, self.pipeline, f"{self.name}.zarr")


def _sparse(values: dict, defaults: dict) -> dict:
    """The entries of `values` that differ from `defaults`, recursively."""
    out = {}
    for key, value in values.items():
        default = defaults.get(key)
        if isinstance(value, dict) and isinstance(default, dict) and value and default:
            nested = _sparse(value, default)
            if nested:
                out[key] = nested
        elif value != default:
            out[key] = value
    return out


def init_source(config: RunConfig) -> str:
    """The source store of `config.init`, as PIPELINE/RUN or a .zarr path (relative to
    the runs root): a bare pipeline name gets this run's name without its `init.*`
    parameters."""
    source = config.init.source
    if source.endswith(".zarr") or "/" in source:
        return source
    kept = [(k, v) for k, v in config.params if not SWEEP_ALIASES.get(k, k).startswith("init.")]
    return f"{source}/{','.join(f'{k}={v}' for k, v in kept) or 'default'}"


def first_epoch(config: RunConfig) -> int:
    """The epoch number of a run's first slot: init.epoch when its epochs continue the
    source's (an integer then, checked), else 0."""
    if config.init.source and config.init.epochs == "continue":
        return int(config.init.epoch)
    return 0


def check_run(config: RunConfig, where: str) -> None:
    """The checks that span blocks. An explicit epoch past `train.max_epochs` would be
    dropped without a word, and a schedule too long to lay out would hang or exhaust
    memory: refuse both, sized; then the init keys and early stopping.

    Raises
    ------
    ConfigError
        Naming `where` (the pipeline) and the key.
    """
    schedule, max_epochs = config.capture.schedule, config.train.max_epochs
    _check_model(config.model, where)
    _check_init(config, where)
    if schedule.rule is None:
        listed = expand_epochs(schedule.epochs)
        if listed[-1] > max_epochs:
            raise ConfigError(f"{where}.capture.schedule.epochs: epoch {listed[-1]} is beyond "
                              f"train.max_epochs = {max_epochs}: expected epochs up to {max_epochs} "
                              "(or raise train.max_epochs)")
    n = schedule.count(max_epochs)
    if n > MAX_SCHEDULED_EPOCHS:
        raise ConfigError(f"{where}.capture.schedule: {n:,} scheduled epochs up to train.max_epochs "
                          f"= {max_epochs:,}: expected at most {MAX_SCHEDULED_EPOCHS:,} per run "
                          "(a larger `every`, fewer listed epochs, or a lower train.max_epochs)")
    _check_patience(config, where)


# The keys of the built-in models, which a factory's model does not read.
BUILT_IN_KEYS = ("name", "widths", "batchnorm", "dropout", "cifar_stem")


def _check_model(model: ModelConfig, where: str) -> None:
    """A model is built in (`name` and its keys) or built by a factory (`kwargs`), not both."""
    if model.built_in:
        if model.kwargs is not None:
            raise ConfigError(f"{where}.model.kwargs: the arguments of model.factory: expected "
                              f"model.factory with them (or no kwargs), got {model.kwargs!r}")
        return
    default = ModelConfig()
    for key in BUILT_IN_KEYS:
        value = getattr(model, key)
        if value != getattr(default, key):
            raise ConfigError(f"{where}.model.{key}: a built-in model's key, which "
                              f"model.factory {model.factory} does not read: expected it left out "
                              f"(the factory's arguments go under model.kwargs), got {value!r}")


def _check_init(config: RunConfig, where: str) -> None:
    """The init keys that only make sense together."""
    init = config.init
    if not init.source:
        for key, default in (("labels", "observed"), ("epochs", "restart")):
            if getattr(init, key) != default:
                raise ConfigError(f"{where}.init.{key}: {getattr(init, key)} needs a source run: "
                                  f"expected init.source (PIPELINE/RUN, PIPELINE or a .zarr path), got null")
        return
    if init.epochs == "continue":
        if init.epoch == "final":
            raise ConfigError(f"{where}.init.epoch: expected an integer with init.epochs: continue "
                              "(the new run's epoch numbers start there), got final")
        if config.train.max_epochs <= init.epoch:
            raise ConfigError(f"{where}.train.max_epochs: expected more than init.epoch = {init.epoch} "
                              f"with init.epochs: continue (max_epochs is the last epoch, counted "
                              f"from the source's), got {config.train.max_epochs}")


def _check_patience(config: RunConfig, where: str) -> None:
    """Early stopping watches val_acc at every epoch: a "val" split, every epoch captured."""
    patience = config.train.patience
    if patience is None:
        return
    if not config.init.source or config.init.labels != "relabel":
        raise ConfigError(f"{where}.train.patience: early stopping needs the val split, which only "
                          "init.labels: relabel makes (from the source's analysis/relabel): expected "
                          f"init.labels: relabel or patience null, got patience {patience}")
    first = first_epoch(config)
    if config.schedule != list(range(first, config.train.max_epochs + 1)):
        raise ConfigError(f"{where}.train.patience: early stopping needs every epoch captured: "
                          "expected capture.schedule {epochs: [0], every: 1}, got "
                          f"{len(config.schedule)} captured epochs of {first} to {config.train.max_epochs}")
