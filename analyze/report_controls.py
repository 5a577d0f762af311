"""The report's sections on the papers' controls and breakdowns (issue 15).

Per-class test accuracy; the flipped and unflipped training rows over epochs; MASC's n
ablation; a clean model probed with a corrupted run's labels (P1). Each reads the
`results` Dataset of `stores.analysis_results` and is left out, as "", when its data is
not there, so a pipeline without these analyses keeps the report it had. `sections`
(which `report.write_report` calls) adds those of `report_training`: relabel and
retrain, edit then train, read from the stores.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from stores import location

from . import published, report_training
from .report_common import (
    analysed,
    best_layer,
    final,
    groups,
    legend_below,
    mean_std,
    n_seeds,
    pct,
    save_figure,
    summary_cell,
)
from .report_training import EDITED_STYLE, MODEL_STYLE

FLIPPED_SCORES = {"flipped_observed": "flipped rows, observed labels (memorized)",
                  "flipped_true": "flipped rows, true labels (latent)",
                  "unflipped": "unflipped rows"}
MANY_CLASSES = 20  # above this, the per-class table summarizes the classes


def sections(pipeline: str, out_dir: str, paths: list[str], results: xr.Dataset,
             rows: list[dict]) -> list[str]:
    """The sections whose data is there, in report order (`rows`: report.summary_rows,
    one per group of runs)."""
    figure = lambda name: location.join(out_dir, "figures", name)  # noqa: E731
    found = [class_section(results), flipped_section(results, figure("flipped.png")),
             n_section(results, figure("masc_n.png")), cross_section(pipeline, results, rows),
             report_training.relabel_section(paths), report_training.retrain_section(paths),
             report_training.edit_train_section(paths, figure("edit_then_train.png"))]
    return [text for text in found if text]


# ------------------------------------------------------------------------- helpers
def _cell(values: xr.DataArray, n: int, layer: str | None = None) -> str:
    """mean ± std over the runs of `values` (run,), in %, and the layer it is at."""
    stat = (float(values.mean(skipna=True)), float(values.std(skipna=True, ddof=0)), layer,
            int(values.notnull().sum()))
    return _stat_cell(stat, n)


def _stat_cell(stat: tuple | None, n: int) -> str:
    """(mean, std, layer or None, seeds with a value) of a group of `n` seeds as a cell:
    "—" for none; ± only over two or more; the seeds counted where some lack it."""
    if stat is None or not stat[3]:
        return "—"
    mean, std, layer, seeds = stat
    notes = [layer] if layer else []
    if seeds < n:
        notes.append(f"{seeds} of {n} seeds")
    return f"{mean:.1f}" + (f" ± {std:.1f}" if seeds > 1 else "") + (f" ({'; '.join(notes)})" if notes else "")


def _samples(results: xr.Dataset, name: str, pos: np.ndarray) -> xr.DataArray:
    """A group's sample counts (`score_samples`, `class_samples`): the coordinate, or its
    largest value over the group's runs where it has a `run` dim."""
    counts = results[name]
    return counts.isel(run=pos).max("run") if "run" in counts.dims else counts


def _has_scores(results: xr.Dataset, scores) -> bool:
    return "score" in results.coords and set(scores) <= {str(s) for s in results.score.values}


def _group_label(label: str, pos: np.ndarray) -> str:
    return f"{label} ({n_seeds(pos)})"


# ------------------------------------------------------------------------- per class
def class_rows(results: xr.Dataset) -> list[dict]:
    """Per group at each run's final epoch: test accuracy (%) per true class, mean over
    seeds, of the model (`edit_class_accuracy`, variant "unedited") and of the
    best-layer MASC (`class_accuracy`), and the test samples per class."""
    out = []
    for label, pos in groups(results):
        group = results.isel(run=pos)
        lines = []
        if "edit_class_accuracy" in results:
            model = group["edit_class_accuracy"].sel(variant="unedited")
            lines.append(("model", (100 * final(group, model)).mean("run")))
        if "class_accuracy" in results and "masc" in results.probe:
            layer = best_layer(group, "masc")
            masc = group["class_accuracy"].sel(probe="masc", layer=layer)
            lines.append((f"MASC ({layer})", (100 * final(group, masc)).mean("run")))
        samples = _samples(results, "class_samples", pos) if "class_samples" in results.coords else None
        out.append({"label": _group_label(label, pos), "lines": lines, "samples": samples})
    return out


def _class_table(rows: list[dict], classes: np.ndarray) -> str:
    if len(classes) > MANY_CLASSES:
        head = ["| runs | | lowest class | median class | highest class | three lowest classes |",
                "|---|---|---:|---:|---:|---|"]
        body = []
        for r in rows:
            for i, (name, values) in enumerate(r["lines"]):
                v = values.values
                worst = ", ".join(f"{classes[c]}: {v[c]:.1f}" for c in np.argsort(v, kind="stable")[:3])
                body.append(f"| {r['label'] if i == 0 else ''} | {name} | {np.nanmin(v):.1f} | "
                            f"{np.nanmedian(v):.1f} | {np.nanmax(v):.1f} | {worst} |")
        return "\n".join(head + body)
    head = ["| runs | | " + " | ".join(str(c) for c in classes) + " |",
            "|---|---|" + "---:|" * len(classes)]
    body = []
    for r in rows:
        lines = list(r["lines"])
        if r["samples"] is not None:
            lines.insert(0, ("test samples", r["samples"]))
        for i, (name, values) in enumerate(lines):
            cells = [str(int(v)) if name == "test samples" else pct(float(v)) for v in values.values]
            body.append(f"| {r['label'] if i == 0 else ''} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(head + body)


def class_section(results: xr.Dataset) -> str:
    if "class_accuracy" not in results and "edit_class_accuracy" not in results:
        return ""
    rows = class_rows(results)
    if not any(r["lines"] for r in rows):
        return ""
    classes = results["class"].values
    many = (f" With {len(classes)} classes the table gives the spread over the classes; "
            "every class is in the stores (`class_accuracy`).") if len(classes) > MANY_CLASSES else ""
    return f"""## Per class

Test accuracy per true class at each run's final epoch (mean over seeds): the model
beside the best layer's MASC (observed-label subspaces). Where the model's memorizing
costs it accuracy, and whether the representation keeps the classes the model lost.{many}

{_class_table(rows, classes)}
"""


# ------------------------------------------------------------------------- flipped
def flipped_groups(results: xr.Dataset) -> list[tuple[str, np.ndarray]]:
    """The groups of runs with a flipped training row (observed label != true label)."""
    if "score_samples" not in results.coords or not _has_scores(results, FLIPPED_SCORES):
        return []
    return [(label, pos) for label, pos in groups(results)
            if int(_samples(results, "score_samples", pos).sel(score="flipped_observed")) > 0]


def _predictors(results: xr.Dataset, group: xr.Dataset) -> list[tuple[str, xr.DataArray, dict]]:
    """(name, accuracy in % (epoch, score, run), line style): the model, the best-layer
    MASC and the edited model, those that are there."""
    out = []
    if "edit_accuracy" in results:
        out.append(("model", 100 * group["edit_accuracy"].sel(variant="unedited"), MODEL_STYLE))
    if "masc" in results.probe:
        layer = best_layer(group, "masc")
        out.append((f"MASC ({layer})", 100 * group["accuracy"].sel(probe="masc", layer=layer),
                    dict(color="C0")))
    if "edit_accuracy" in results:
        out.append(("edited (bias 0)", 100 * group["edit_accuracy"].sel(variant="edit_zero_bias"),
                    EDITED_STYLE))
    return out


def flipped_figure(results: xr.Dataset, path: str) -> str:
    """Rows: groups with flipped rows; columns: the three scores; lines: the model
    (dashed), the best-layer MASC and the edited model (dotted), mean ± std over seeds."""
    rows = flipped_groups(results)
    fig, axes = plt.subplots(len(rows), 3, figsize=(10.5, 2.8 * len(rows) + 0.5), sharey=True,
                             squeeze=False)
    for r, (label, pos) in enumerate(rows):
        group = results.isel(run=pos)
        reached = analysed(group).any("run")
        for c, (score, title) in enumerate(FLIPPED_SCORES.items()):
            ax = axes[r, c]
            for name, values, style in _predictors(results, group):
                mean, std = mean_std(values.sel(score=score).sel(epoch=reached))
                line, = ax.plot(mean.epoch, mean, marker="." if mean.sizes["epoch"] <= 40 else None, ms=3, lw=1.3,
                                label="best-layer MASC" if name.startswith("MASC") else name, **style)
                ax.fill_between(mean.epoch, mean - std, mean + std, color=line.get_color(), alpha=0.12, lw=0)
            ax.set_title(f"{title}\n{_group_label(label, pos)}", fontsize=8.5)
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
            ax.set_xlabel("epoch" if r == len(rows) - 1 else "")
            if c == 0:
                ax.set_ylabel("accuracy (%)")
    legend_below(fig, axes)
    return save_figure(fig, path)


def _flipped_table(results: xr.Dataset) -> str:
    lines = ["| runs | | " + " | ".join(FLIPPED_SCORES.values()) + " |", "|---|---|---:|---:|---:|"]
    for label, pos in flipped_groups(results):
        group = results.isel(run=pos)
        counts = _samples(results, "score_samples", pos)
        name = (f"{_group_label(label, pos)}: {int(counts.sel(score='flipped_observed'))} of "
                f"{int(counts.sel(score='train_observed'))} training rows flipped")
        for i, (what, values, _) in enumerate(_predictors(results, group)):
            cells = [_cell(final(group, values.sel(score=s)), len(pos)) for s in FLIPPED_SCORES]
            lines.append(f"| {name if i == 0 else ''} | {what} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def flipped_section(results: xr.Dataset, path: str) -> str:
    if not flipped_groups(results) or ("edit_accuracy" not in results and "masc" not in results.probe):
        return ""
    flipped_figure(results, path)
    return f"""## Flipped and unflipped training rows

![Accuracy on the flipped and unflipped training rows over epochs](figures/{location.name(path)})

The training rows whose observed label differs from the true one (flipped), scored
against the label the model saw (memorized) and against the true one (latent), and the
other training rows (unflipped), over epochs. The model (dashed) predicts the true class
of many flipped rows early and learns their observed labels as it memorizes. MASC is
fitted on these same rows with their observed labels, so on them it shows how much it
fits the flipped labels, not what it generalizes (that is the test accuracy above); the
edited model (dotted) is the model with a VeLPIC last layer. One row per group of runs
with flipped rows; mean over seeds, the band ± one std. At each run's final epoch (%):

{_flipped_table(results)}
"""


# ------------------------------------------------------------------------- n ablation
def _n_label(n: float) -> str:
    return f"{n:g}" if n < 1 else f"{int(n)} comp."


def _n_order(results: xr.Dataset) -> list[float]:
    """The n values from the smallest subspaces up: fixed counts (n >= 1) ascending, then
    the explained-variance fractions ascending."""
    return sorted((float(n) for n in results["masc_n_accuracy"].n.values), key=lambda n: (n < 1, n))


def n_rows(results: xr.Dataset) -> list[dict]:
    """Per group: {(subspaces, n): (mean, std, layer, seeds) or None}, the final-epoch
    test accuracy (%) of MASC with that n at its best layer (the highest mean over the
    seeds; `seeds`: how many have that n, as a later analysis may add an n to some)."""
    acc = results["masc_n_accuracy"].sel(score="test")
    out = []
    for label, pos in groups(results):
        group = results.isel(run=pos)
        at_end = 100 * final(group, acc.isel(run=pos))
        cells = {}
        for subspaces in acc.subspaces.values:
            for n in _n_order(results):
                values = at_end.sel(subspaces=subspaces, n=n)
                mean = values.mean("run", skipna=True)
                if not mean.notnull().any():
                    cells[str(subspaces), float(n)] = None
                    continue
                layer = str(mean.idxmax("layer").values)
                best = values.sel(layer=layer)
                cells[str(subspaces), float(n)] = (float(best.mean(skipna=True)), float(best.std(skipna=True, ddof=0)),
                                                   layer, int(best.notnull().sum()))
        model = float((100 * final(group, group["model_test_acc"])).mean())
        out.append({"label": _group_label(label, pos), "n": len(pos), "cells": cells, "model": model})
    return out


def n_figure(results: xr.Dataset, rows: list[dict], path: str) -> str:
    ns = _n_order(results)
    subspaces = [str(s) for s in results["masc_n_accuracy"].subspaces.values]
    fig, axes = plt.subplots(1, len(rows), figsize=(4.0 * len(rows) + 0.6, 3.4), sharey=True, squeeze=False)
    for ax, row in zip(axes[0], rows):
        ax.axhline(row["model"], lw=1.2, label="model", **MODEL_STYLE)
        for s in subspaces:
            cells = [row["cells"][s, n] for n in ns]
            ax.errorbar(range(len(ns)), [np.nan if c is None else c[0] for c in cells],
                        yerr=[0 if c is None else c[1] for c in cells], marker="o", capsize=3,
                        label=f"{s}-label subspaces")
        ax.set_xticks(range(len(ns)), [_n_label(n) for n in ns], fontsize=8)
        ax.set_xlabel("MASC n")
        ax.set_title(row["label"], fontsize=9)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("test accuracy at the final epoch (%)")
    legend_below(fig, axes)
    return save_figure(fig, path)


def n_section(results: xr.Dataset, path: str) -> str:
    if "masc_n_accuracy" not in results or results.sizes["n"] < 2:  # one n: the tables have it
        return ""
    rows = n_rows(results)
    n_figure(results, rows, path)
    ns = _n_order(results)
    lines = ["| runs | subspaces | " + " | ".join(f"n = {_n_label(n)}" for n in ns) + " |",
             "|---|---|" + "---:|" * len(ns)]
    for row in rows:
        for i, s in enumerate(str(s) for s in results["masc_n_accuracy"].subspaces.values):
            cells = [_stat_cell(row["cells"][s, n], row["n"]) for n in ns]
            lines.append(f"| {row['label'] if i == 0 else ''} | {s} labels | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    return f"""## MASC's n

![MASC test accuracy against n](figures/{location.name(path)})

MASC's final-epoch test accuracy against n, from the smallest subspaces up: a fixed
number of components per class ("comp."), then the share of each class's explained
variance its subspace keeps; subspaces from the observed and from the true training
labels, each point at its best layer (the highest mean over seeds, in parentheses
below), mean ± std over seeds, with the model's own final test accuracy (dashed). The
tables above use n = {_n_label(float(results.attrs.get('masc_components', ns[-1])))}.

{table}
"""


# ------------------------------------------------------------------------- cross-run
def _source_group(results: xr.Dataset, rows: list[dict], rate, pos: np.ndarray) -> dict | None:
    """The summary row of the group holding the run whose labels built the subspaces."""
    names = results["labels_from_run"].sel(labels_from=rate)
    names = np.atleast_1d(names.isel(run=pos) if "run" in names.dims else names).tolist()
    run_names = [str(v) for v in results["run_name"].values]
    for name in names:  # a str, or the NaN of a run without this rate
        if isinstance(name, str) and name in run_names:
            at = run_names.index(name)
            for row, (_, members) in zip(rows, groups(results)):
                if at in members:
                    return row
    return None


def cross_rows(results: xr.Dataset, rows: list[dict]) -> list[dict]:
    """Per clean group and corruption rate r: the clean model's MASC with subspaces from
    rate r's observed labels (best layer, final epoch, %), beside that corrupted group's
    summary row."""
    acc = results["cross_accuracy"].sel(score="test")
    out = []
    for label, pos in groups(results):
        group = results.isel(run=pos)
        at_end = 100 * final(group, acc.isel(run=pos))
        for rate in acc.labels_from.values:
            values = at_end.sel(labels_from=rate)
            mean = values.mean("run", skipna=True)
            if not mean.notnull().any():
                continue
            layer = str(mean.idxmax("layer").values)
            out.append({"label": _group_label(label, pos), "n": len(pos), "rate": float(rate),
                        "layer": layer, "values": values.sel(layer=layer),
                        "source": _source_group(results, rows, rate, pos)})
    return out


def cross_section(pipeline: str, results: xr.Dataset, rows: list[dict]) -> str:
    if "cross_accuracy" not in results:
        return ""
    found = cross_rows(results, rows)
    if not found:
        return ""
    # P1's numbers for this control are not found (published.P1_CROSS is empty; the
    # published section says so): the column appears once any is typed in.
    show_published = any(published.cross_control(pipeline, r["rate"]) is not None for r in found)
    head = ("| clean runs | subspaces from the labels of | clean model's MASC | corrupted model's MASC "
            "(observed-label subspaces) | corrupted model |" + (" P1 |" if show_published else ""))
    lines = [head, "|---|---|---:|---:|---:|" + ("---:|" if show_published else "")]
    for r in found:
        src = r["source"]
        own = "—" if src is None or "masc" not in src else summary_cell(src["masc"], src["n"])
        model = "—" if src is None else summary_cell(src["model"], src["n"])
        cells = [_cell(r["values"], r["n"], r["layer"]), own, model]
        if show_published:
            cells.append(pct(published.cross_control(pipeline, r["rate"])))
        lines.append(f"| {r['label']} | corruption {r['rate']:g} | " + " | ".join(cells) + " |")
    note = f"\nSource of the P1 column: {published.P1_SOURCE}.\n" if show_published else ""
    table = "\n".join(lines)
    return f"""## A clean model probed with corrupted labels

A control of the latent-generalization paper: MASC fitted on the activations of a model
trained on clean labels, with subspaces built from the corrupted labels of a corrupted
run (the same samples, the same corruption), at the clean run's final epoch and its best
layer, beside the corrupted model's own MASC and its own test accuracy (at its final
epoch). How much of MASC's accuracy comes from the probe's tolerance of wrong labels,
and how much from what the memorizing network learned.
{note}
{table}
"""
