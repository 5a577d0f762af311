"""Neuron diagnostics of modular-arithmetic runs, read from their stores.

One task per run (paths travel, never arrays): Fourier IPR of every neuron at every
committed epoch from the stored weights; pruning curves at the final epoch from the
stored hidden representation and the head's weights; the run's phase and its two-stage
dynamics from the stored metrics; BatchNorm gains against IPR. The numerics live in
`neurons`; this module only reads stores and builds xarray objects.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

import stores
from stores import slabs
from stores.config import run_config_from_dict

from . import neurons

GROUPS = ("corrupted", "clean", "test")
BN_EPS = 1e-5  # torch.nn.BatchNorm1d's default, which ModularMLP uses
PRUNE_FRACTION = 0.6  # the published comparison: prune 60% of the neurons


def is_modular(path: str) -> bool:
    """Whether the run at `path` trained on the modular-arithmetic dataset."""
    config = stores.run_attrs(path).get("config") or {}  # a recorder's store has none
    return config.get("data", {}).get("name") == "modular"


def neuron_task(path: str) -> dict[str, xr.Dataset]:
    """The neuron diagnostics of one modular run, from its stored weights.

    Parameters
    ----------
    path : str
        The run store.

    Returns
    -------
    dict of str to xarray.Dataset
        {"neurons": IPR over epochs, "pruning": curves at the final epoch}, with the
        phase, two-stage and BatchNorm summaries in the attrs of "neurons".
    """
    config = run_config_from_dict(stores.run_attrs(path)["config"])
    p, xi = config.data.p, config.corruption.rate
    slots, epochs = slabs.committed_slots(path)
    head = stores.run_attrs(path).get("head", "head")
    w1, w2 = (slabs.weight_slabs(path, name, slots).astype(np.float64)
              for name in ("embed.weight", f"{head}.weight"))
    ipr = neurons.neuron_ipr(w1, w2)  # (epoch, neuron)
    counts, edges = zip(*(neurons.ipr_histogram(row) for row in ipr))
    ds = xr.Dataset(
        {"ipr": (("epoch", "neuron"), ipr), "mean_ipr": ("epoch", ipr.mean(axis=1)),
         "ipr_histogram": (("epoch", "bin"), np.stack(counts)),
         "bin_edges": ("edge", edges[0])},
        coords={"epoch": epochs},
    )
    ds.attrs.update(_summaries(path, epochs, p, xi))
    if "bn.weight" in stores.param_names(path):
        # Both readings of "BatchNorm amplifies": the effective gain γ/sqrt(var + ε) of
        # the normalised output, and the learned scale γ alone.
        gamma = slabs.weight_slab(path, "bn.weight", int(slots[-1]))
        ds["bn_gain"] = ("neuron", _bn_gain(path, int(slots[-1])))
        ds["bn_gamma"] = ("neuron", gamma)
        for name in ("bn_gain", "bn_gamma"):
            ds.attrs.update({f"{name}_{k}": _plain(v) for k, v in
                             neurons.gain_ratio(ds[name].values, ipr[-1]).items()})
    return {"neurons": ds, "pruning": _pruning(path, int(slots[-1]), int(epochs[-1]), w2[-1], ipr[-1])}


def _plain(v):
    """JSON-friendly attribute values (no NumPy scalars, None for NaN)."""
    if v is None:
        return None
    v = v.item() if hasattr(v, "item") else v
    return None if isinstance(v, float) and np.isnan(v) else v


def _summaries(path: str, epochs: np.ndarray, p: int, xi: float) -> dict:
    metrics = stores.metrics(stores.open_run(path))
    train = metrics["train_acc_observed"].values
    test = metrics["test_acc"].values
    stages = neurons.two_stage(epochs, train, xi, p)
    out = {"phase": neurons.phase(float(train[-1]), float(test[-1]), xi),
           "final_train_acc": float(train[-1]), "final_test_acc": float(test[-1]),
           "xi": xi, "p": p}
    out.update({f"two_stage_{k}": _plain(v) for k, v in stages.items()})
    return out


def _bn_gain(path: str, slot: int) -> np.ndarray:
    return neurons.bn_effective_gain(slabs.weight_slab(path, "bn.weight", slot),
                                     slabs.weight_slab(path, "bn.running_var", slot), BN_EPS)


def _pruning(path: str, slot: int, epoch: int, w2: np.ndarray, ipr: np.ndarray) -> xr.Dataset:
    """Accuracy per group after zeroing the first n neurons of each IPR order."""
    table = slabs.sample_table(path)
    train = table["split"] == "train"
    groups = {"corrupted": train & table["corrupted"], "clean": train & ~table["corrupted"],
              "test": ~train}
    hidden = slabs.slab(path, stores.penultimate_layer(path), slot).astype(np.float64)
    labels = table["label_observed"]  # = true labels on the test split
    orders = neurons.prune_orders(ipr)
    curves = np.stack([
        np.stack([c[g] for g in GROUPS])
        for c in (neurons.pruning_curve(hidden, w2, orders[o], labels, groups) for o in orders)
    ])
    n = len(ipr)
    return xr.Dataset(
        {"accuracy": (("order", "group", "pruned"), curves),
         "neuron_order": (("order", "rank"), np.stack(list(orders.values())))},
        coords={"order": np.array(list(orders), dtype=object), "group": np.array(GROUPS, dtype=object),
                "pruned": np.arange(n + 1), "fraction": ("pruned", np.arange(n + 1) / n)},
        attrs={"epoch": epoch, "description": "accuracy after zeroing the first `pruned` "
               "neurons in IPR order; corrupted/clean training examples against their "
               "observed labels, test against true labels"},
    )


def at_fraction(pruning: xr.Dataset, order: str, fraction: float = PRUNE_FRACTION) -> dict:
    """Accuracies per group after pruning `fraction` of the neurons in `order`.

    Parameters
    ----------
    pruning : xarray.Dataset
        `analysis/pruning` of a run.
    order : str
        "ascending" or "descending" (`neurons.prune_orders`).
    fraction : float, default PRUNE_FRACTION

    Returns
    -------
    dict of str to float
        group -> accuracy.
    """
    n = int(round(fraction * (pruning.sizes["pruned"] - 1)))
    row = pruning["accuracy"].sel(order=order, pruned=n)
    return {str(g): float(row.sel(group=g)) for g in row.group.values}
