"""The report's sections on runs that train on from another run's store (issue 15):
P1's relabel and retrain (the relabelling, in the source store's analysis/relabel, and
the retrained run) and P2's edit, then train. Each reads the stores themselves (the
runs' `init` attrs name their source) and is "" when no store has its data.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

import stores
from stores import location
from stores.schema import EDIT, RELABEL

from .report_common import pct, save_figure

MODEL_STYLE = {"color": "black", "ls": "--"}
EDITED_STYLE = {"color": "black", "ls": ":"}


# ------------------------------------------------------------------------- relabel
def _node(tree: xr.DataTree, node: str) -> xr.Dataset | None:
    """One node of a store, read into memory (None if absent)."""
    try:
        return tree[node].to_dataset().load()
    except KeyError:
        return None


def run_label(path: str) -> str:
    """PIPELINE/RUN of a store, as the report names a source run."""
    attrs = stores.run_attrs(path)
    return f"{attrs.get('pipeline', location.name(location.parent(path)))}/{attrs.get('run_name', location.name(path))}"


def relabel_row(path: str) -> dict | None:
    """A store's analysis/relabel: the chosen layer, its MASC accuracy (%) on the 20%
    (holdout) and 80% (rest) parts, the model's on the 80% part, and how many training
    labels are right before and after relabelling (%); None when it has none."""
    if not stores.node_attrs(path, RELABEL):
        return None
    tree = stores.open_run(path)
    node = _node(tree, RELABEL)
    if node is None:
        return None
    attrs, acc = node.attrs, node["layer_accuracy"]
    layer = str(attrs["layer"])
    on = {part: 100 * float(_scored(acc, layer=layer, part=part)) for part in ("holdout", "rest")}
    train = np.asarray(node["split"].values).astype(str) == "train"
    truth = np.asarray(node["label_true"].values)[train]
    return {"name": str(tree.attrs.get("run_name", location.name(path))), "epoch": attrs.get("epoch"),
            "layer": layer, "holdout": on["holdout"], "rest": on["rest"],
            "model_rest": 100 * float(attrs["model_rest_accuracy"]),
            "observed_right": 100 * float(np.mean(np.asarray(node["label_observed"].values)[train] == truth)),
            "relabelled_right": 100 * float(np.mean(np.asarray(node["label"].values)[train] == truth))}


def relabel_section(paths: list[str]) -> str:
    found = [row for row in map(relabel_row, paths) if row is not None]
    if not found:
        return ""
    lines = ["| run | epoch | chosen layer | MASC, 20% part | MASC, 80% part | model, 80% part | "
             "training labels right: observed → relabelled |", "|---|---:|---|---:|---:|---:|---:|"]
    for r in found:
        lines.append(f"| {r['name']} | {r['epoch']} | {r['layer']} | {r['holdout']:.1f} | {r['rest']:.1f} | "
                     f"{r['model_rest']:.1f} | {r['observed_right']:.1f} → {r['relabelled_right']:.1f} |")
    table = "\n".join(lines)
    return f"""## Relabel and retrain

The latent-generalization paper's relabelling, at each run's final epoch: the test split
is cut 80/20 (seeded); the MASC layer with the best accuracy on the 20% part relabels
the whole training set with its predictions. That layer's accuracy on both parts beside
the model's on the 80% part, and the share of training labels that are the true ones
before and after relabelling (%). A run trained on the relabelled set (a pipeline
whose `init.labels` is `relabel`) is in that pipeline's report, on the 80% part.

{table}
"""


def source_path(path: str, source: str) -> str | None:
    """Where an `init.source` (a store path, or PIPELINE/RUN under the same root) is."""
    root = location.parent(location.parent(path))
    for candidate in (source, location.join(root, source), location.join(root, f"{source}.zarr")):
        try:
            if location.is_store(candidate):
                return location.normalize(candidate)
        except (OSError, ValueError):
            continue
    return None


def _init(path: str) -> tuple[dict, dict]:
    attrs = stores.run_attrs(path)
    init = attrs.get("init")
    return attrs, init if isinstance(init, dict) and init.get("source") else {}


def retrain_row(path: str) -> dict | None:
    """A run trained on a source's relabelled set: its test accuracy (%, the 80% part)
    at its best validation epoch and at its last, beside the source's model and MASC."""
    attrs, init = _init(path)
    if init.get("labels") != "relabel":
        return None
    test = stores.open_run(path)["metrics"]["test_acc"].load()  # one read, however often used
    epochs = [int(e) for e in test.epoch.values]
    best = (attrs.get("early_stopping") or {}).get("best_epoch")
    source = source_path(path, init["source"])
    src = relabel_row(source) if source else None
    return {"name": str(attrs.get("run_name", location.name(path))),
            "source": run_label(source) if source else f"{init['source']} (not found)",
            "best_epoch": best, "last_epoch": epochs[-1] if epochs else None,
            "at_best": 100 * float(test.sel(epoch=best)) if best in epochs else None,
            "at_last": 100 * float(test.values[-1]) if epochs else None,
            "source_model": src["model_rest"] if src else None, "source_masc": src["rest"] if src else None}


def retrain_section(paths: list[str]) -> str:
    found = [row for row in map(retrain_row, paths) if row is not None]
    if not found:
        return ""
    lines = ["| run | source | best epoch (validation) | retrained, best epoch | retrained, last epoch | "
             "source model | source MASC, chosen layer |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in found:
        lines.append(f"| {r['name']} | {r['source']} | {r['best_epoch']} | {pct(r['at_best'])} | "
                     f"{pct(r['at_last'])} (epoch {r['last_epoch']}) | {pct(r['source_model'])} | "
                     f"{pct(r['source_masc'])} |")
    table = "\n".join(lines)
    return f"""## Retrained on the relabelled set

The memorized model fine-tuned from its final weights on the training set relabelled by
its best MASC layer, with early stopping on the 20% part: its test accuracy on the 80%
part at the epoch of best validation accuracy and at the last epoch, beside the source
model's and the source's chosen MASC layer's on the same 80% part (%).

{table}
"""


# ------------------------------------------------------------------------- edit, then train
def _scored(accuracy: xr.DataArray, **labels) -> xr.DataArray:
    """accuracy.sel(...) by string labels, whatever string dtype the store's labels have."""
    for dim, label in labels.items():
        accuracy = accuracy.isel({dim: [str(v) for v in accuracy[dim].values].index(label)})
    return accuracy


def source_curves(source: str) -> dict:
    """A source run's model test accuracy (%) over its epochs and its edited model's
    (bias 0), None where it has no analysis/edit."""
    tree = stores.open_run(source)
    test = tree["metrics"]["test_acc"].load()
    edit = _node(tree, EDIT)
    edited = None
    if edit is not None and "accuracy" in edit:
        edited = 100 * _scored(edit["accuracy"], variant="edit_zero_bias", score="test").values
    return {"name": run_label(source), "epochs": np.asarray(test.epoch.values), "model": 100 * np.asarray(test.values), "edited": edited}


def edit_train_runs(paths: list[str], missing: list[str] | None = None) -> dict[str, list[dict]]:
    """Source store -> the runs started from one of its epochs (not the relabelled ones):
    each run's test accuracy (%) on the source's epoch numbers. A run whose source is
    not found goes into `missing` ("RUN (source SOURCE)") instead."""
    out: dict[str, list[dict]] = {}
    for path in paths:
        attrs, init = _init(path)
        if not init or init.get("labels") == "relabel":
            continue
        source = source_path(path, init["source"])
        if source is None:
            if missing is not None:
                missing.append(f"{attrs.get('run_name', location.name(path))} (source {init['source']})")
            continue
        test = stores.open_run(path)["metrics"]["test_acc"].load()
        offset = int(init.get("epoch", 0)) if init.get("epochs") == "restart" else 0
        out.setdefault(source, []).append({
            "name": str(attrs.get("run_name", location.name(path))), "init_epoch": int(init.get("epoch", 0)),
            "edit": init.get("edit", "velpic"), "epochs": np.asarray(test.epoch.values) + offset,
            "test": 100 * np.asarray(test.values)})
    return out


def edit_train_figure(runs: dict[str, list[dict]], curves: dict[str, dict], path: str) -> str:
    cols = min(3, len(runs))
    rows = -(-len(runs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.3 * rows + 0.5), squeeze=False, sharey=True)
    for ax, (source, started) in zip(axes.flat, runs.items()):
        src = curves[source]
        ax.plot(src["epochs"], src["model"], lw=1.5, label="source model", **MODEL_STYLE)
        if src["edited"] is not None:
            ax.plot(src["epochs"], src["edited"], lw=1.5, label="source, edited (bias 0)", **EDITED_STYLE)
        for i, run in enumerate(sorted(started, key=lambda r: (r["init_epoch"], r["name"]))):
            what = "edited" if run["edit"] != "none" else "trained on"
            line, = ax.plot(run["epochs"], run["test"], lw=1.3, color=f"C{i % 10}",
                            label=f"{what} at epoch {run['init_epoch']}")
            ax.plot(run["epochs"][:1], run["test"][:1], marker="o", ms=4, color=line.get_color())
        ax.set_title(src["name"], fontsize=9)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    for ax in axes.flat[len(runs):]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel("test accuracy (%)")
    fig.tight_layout()
    return save_figure(fig, path)


def _at(curve: dict, name: str, epoch: int) -> float | None:
    """A source curve's value at an epoch (None where it has none)."""
    hit = np.flatnonzero(curve["epochs"] == epoch)
    return None if curve[name] is None or not len(hit) else float(curve[name][hit[0]])


def _edit_train_table(runs: dict[str, list[dict]], curves: dict[str, dict]) -> str:
    lines = ["| run | source | from epoch | source edited (bias 0) there | start | end (epoch) | max (epoch) | "
             "source model, end (epoch) | source edited (bias 0), end |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for source, started in runs.items():
        src = curves[source]
        for r in sorted(started, key=lambda r: (r["init_epoch"], r["name"])):
            top = int(np.nanargmax(r["test"]))
            lines.append(f"| {r['name']} | {src['name']} | {r['init_epoch']} | "
                         f"{pct(_at(src, 'edited', r['init_epoch']))} | {pct(r['test'][0])} | "
                         f"{pct(r['test'][-1])} ({r['epochs'][-1]}) | {pct(r['test'][top])} ({r['epochs'][top]}) | "
                         f"{pct(src['model'][-1])} ({src['epochs'][-1]}) | "
                         f"{pct(None if src['edited'] is None else src['edited'][-1])} |")
    return "\n".join(lines)


def edit_train_section(paths: list[str], path: str) -> str:
    missing: list[str] = []
    runs = edit_train_runs(paths, missing)
    if not runs and not missing:
        return ""
    lost = (f"\nNot shown, their source store is not found: {'; '.join(missing)}.\n"
            if missing else "")
    if not runs:
        return f"## Edit, then train\n{lost}"
    curves = {source: source_curves(source) for source in runs}
    edit_train_figure(runs, curves, path)
    return f"""## Edit, then train

![Edited runs' test accuracy over epochs on their source runs'](figures/{location.name(path)})

The latent-generalization paper's edit, then train: a run started from its source run's
weights at one epoch, with the last layer replaced by the VeLPIC vectors (bias 0), and
trained on with a fresh optimizer on the same corrupted labels. One panel per source
run: each started run's test accuracy (a dot where it starts) on the source's epoch
numbers, over the source model's (dashed) and the source's edited model at each epoch
(dotted, no training). Whether an edited start keeps its accuracy, or memorizes its way
back to the source's; in the table, an edited run's start is the source's edited model
at that epoch, so the two columns should agree (test accuracy, %).
{lost}
{_edit_train_table(runs, curves)}
"""
