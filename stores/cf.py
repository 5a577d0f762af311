"""CF-style attributes of every array of a run store (schema version 2): a `long_name`,
and `units` where the values have one (`"1"`: a dimensionless number, as CF writes it)
or a `description` where a unit would say nothing (labels, flags, names), so that a
plain xarray reader sees what each array holds.

`array_attrs` names them from the array's path in the store; the writer, the layout,
the training state and the analysis results all take theirs from here.
"""

from __future__ import annotations

from . import schema

DIMENSIONLESS = "1"

_EPOCH_COPY = ("training epoch", "the epoch held in this slot (0 = initialization, before "
               "any step); -1: a slot not committed, whose data are not an epoch's (yet)")

_SAMPLE_FIELDS = {
    "split": ("probe-set split", "train, test or val (the holdout of a relabel-and-retrain run)"),
    "index": ("row in the source dataset", None),
    "label_true": ("true label", "the class index in the source dataset"),
    "label_observed": ("observed label", "the label the model was trained on (its corrupted "
                       "label where corrupted; the true label outside the train split)"),
    "corrupted": ("label corrupted", "whether the label corruption selected this example (a "
                  "resampled label may equal the true one)"),
}

_METRICS = {
    "train_loss": "training loss on the probe set's train split (observed labels)",
    "train_acc_observed": "training accuracy against the observed labels",
    "train_acc_true": "training accuracy against the true labels",
    "test_loss": "test loss (true labels)",
    "test_acc": "test accuracy",
    "val_acc": "accuracy on the val split (NaN without one)",
}

# analysis/<group>/<name>: long name, and units (None: `description` instead).
_ANALYSIS = {
    "accuracy": ("accuracy", DIMENSIONLESS),
    "class_accuracy": ("test accuracy per true class", DIMENSIONLESS),
    "layer_accuracy": ("accuracy per layer and part", DIMENSIONLESS),
    "masc_k": ("MASC subspace dimension per class", DIMENSIONLESS),
    "weight": ("edited head weight", DIMENSIONLESS),
    "label": ("label assigned by the relabelling", None),
    "holdout": ("held out of the retraining", None),
    "ipr": ("inverse participation ratio of the neuron's Fourier spectrum", DIMENSIONLESS),
    "mean_ipr": ("mean inverse participation ratio over neurons", DIMENSIONLESS),
    "ipr_histogram": ("neurons per IPR bin", DIMENSIONLESS),
    "bin_edges": ("IPR bin edges", DIMENSIONLESS),
    "bn_gain": ("BatchNorm effective gain gamma / sqrt(var + eps)", DIMENSIONLESS),
    "bn_gamma": ("BatchNorm scale gamma", DIMENSIONLESS),
    "neuron_order": ("neurons in pruning order", None),
    "score_samples": ("rows each accuracy averages over", DIMENSIONLESS),
    "class_samples": ("rows each class accuracy averages over", DIMENSIONLESS),
    "fraction": ("fraction of neurons pruned", DIMENSIONLESS),
    # coordinates
    "epoch": ("training epoch", None),
    "probe": ("probe", None),
    "layer": ("capture point", None),
    "score": ("what is scored (split, labels)", None),
    "class": ("class", None),
    "variant": ("model variant", None),
    "n": ("MASC energy fraction or component count", None),
    "subspaces": ("labels the subspaces were fitted with", None),
    "labels_from": ("corruption of the run whose observed labels were used", None),
    "part": ("part of the probe set", None),
    "order": ("pruning order", None),
    "group": ("group of examples", None),
    "pruned": ("neurons pruned", DIMENSIONLESS),
    "rank": ("rank in the pruning order", None),
    "neuron": ("hidden neuron", None),
    "bin": ("IPR bin", None),
    "edge": ("IPR bin edge", None),
}


def _attrs(long_name: str, units: str | None, description: str | None = None) -> dict:
    out = {"long_name": long_name}
    if units is not None:
        out["units"] = units
    if description is not None or units is None:
        out["description"] = description or long_name
    return out


def array_attrs(name: str) -> dict:
    """The CF-style attributes of the array at `name`.

    Parameters
    ----------
    name : str
        The array's path in the store (`activations/relu1/values`, `metrics/test_acc`,
        `state/0/model/fc1.weight`, `analysis/dynamics/accuracy`).

    Returns
    -------
    dict
        `long_name`, and `units` or `description` (or both).
    """
    parts = name.strip("/").split("/")
    top, leaf = parts[0], parts[-1]
    if top == schema.SAMPLES or (top == schema.ACTIVATIONS and len(parts) == 3
                                 and leaf in schema.SAMPLE_COORDS):
        return _attrs(*_SAMPLE_FIELDS.get(leaf, (leaf, None)))
    if top == schema.EPOCHS:
        if leaf == "committed":
            return _attrs("epoch committed", None, "the commit flag: this slot's activations, "
                          "weights and metrics are whole")
        return _attrs("scheduled epoch", None, "the epoch each slot is laid out for (0 = "
                      "initialization); the spare last slot: -1 until a stop epoch takes it")
    if top in schema.COORDINATE_GROUPS and len(parts) == 2 and leaf == schema.EPOCH_COORD:
        return _attrs(*_EPOCH_COPY)
    if top == schema.ACTIVATIONS and leaf == schema.SAMPLE_COORD:
        return _attrs("probe-set row", None, "0..n-1: the rows of samples/*")
    if top == schema.ACTIVATIONS:
        return _attrs(f"activations of {'/'.join(parts[1:-1])}", DIMENSIONLESS,
                      "the capture point's output on the probe set, after its reduction")
    if top == schema.WEIGHTS:
        return _attrs(f"parameter {'/'.join(parts[1:-1])}", DIMENSIONLESS,
                      "the parameter's (or buffer's) values at the end of each epoch")
    if top == schema.METRICS:
        return _attrs(_METRICS.get(leaf, f"metric {leaf}"), DIMENSIONLESS,
                      None if leaf in _METRICS else "a metric the training loop reported")
    if top == schema.STATE:
        return _attrs(f"training state {'/'.join(parts[1:])}", None,
                      "what a killed capture needs to resume (model, optimizer, random generators)")
    if top == schema.ANALYSIS:
        return _attrs(*_ANALYSIS.get(leaf, (leaf.replace("_", " "), None)))
    return _attrs(leaf.replace("_", " "), None)


def missing(attrs: dict) -> bool:
    """Whether `attrs` lack the CF-style attributes (a `long_name`, and `units` or a
    `description`).

    Parameters
    ----------
    attrs : dict
        An array's attributes.

    Returns
    -------
    bool
    """
    return not attrs.get("long_name") or not (attrs.get("units") or attrs.get("description"))
