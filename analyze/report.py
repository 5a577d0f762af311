"""Figures and the Markdown report of a pipeline's analysis.

Everything here reads the results back from the stores (`stores.analysis_results`: one
Dataset with a `run` MultiIndex over the swept parameters), so a report can be redrawn
without recomputing anything. Runs that differ only in their seed form one *group*
(e.g. one corruption level); curves and tables show the mean over its seeds, with the
standard deviation as a band or a ± term.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display on batch nodes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

import stores  # noqa: E402
from stores import location, slabs  # noqa: E402
from stores.config import PROBES  # noqa: E402
from stores.schema import EDIT  # noqa: E402

from . import published, report_controls  # noqa: E402
from .report_published import published_table  # noqa: E402
from .report_common import (  # noqa: E402
    REPLICATE,
    analysed,
    best_layer,
    final,
    groups,
    last_epochs,
    legend_below,
    mean_std,
    n_seeds,
    replacing,
    save_figure,
    summary_cell,
)


def peaks(dynamics: xr.Dataset) -> xr.Dataset:
    """Per (probe, layer): the epoch of peak test accuracy, the peak, the final value,
    and the final-minus-peak drop (latent generalization peaks early, then fades)."""
    test = dynamics["accuracy"].sel(score="test")
    peak_epoch = test.idxmax("epoch")
    return xr.Dataset({
        "peak_epoch": peak_epoch,
        "peak_test": test.max("epoch"),
        "final_test": test.isel(epoch=-1),
        "final_minus_peak": test.isel(epoch=-1) - test.max("epoch"),
    })


# ------------------------------------------------------------------------- figures
def dynamics_figure(results: xr.Dataset, path: str) -> str:
    """Rows: groups (corruption levels); columns: layers; lines: each probe's test
    accuracy over epochs (mean over seeds, ± std shaded), the model's own test accuracy
    (dashed) and, on the edited layer, the edited model's (dotted)."""
    layers = [str(v) for v in results.layer.values]
    rows = groups(results)
    fig, axes = plt.subplots(len(rows), len(layers), figsize=(3.3 * len(layers), 2.7 * len(rows)),
                             sharex="row", sharey=True, squeeze=False)
    test = results["accuracy"].sel(score="test")
    for r, (label, pos) in enumerate(rows):
        group = results.isel(run=pos)
        model = "model_test_acc" in group  # a recorder's model may not report test_acc
        model_mean, model_std = mean_std(100 * group["model_test_acc"]) if model else (None, None)
        for c, layer in enumerate(layers):
            ax = axes[r, c]
            for probe in results.probe.values:
                mean, std = mean_std(100 * test.isel(run=pos).sel(probe=probe, layer=layer))
                line, = ax.plot(results.epoch, mean, marker=".", ms=3, lw=1.2,
                                label=PROBES.get(str(probe), str(probe)))
                ax.fill_between(results.epoch, mean - std, mean + std, color=line.get_color(),
                                alpha=0.15, lw=0)
            if model:
                ax.plot(results.epoch, model_mean, color="black", ls="--", lw=1.5, label="model")
                ax.fill_between(results.epoch, model_mean - model_std, model_mean + model_std,
                                color="black", alpha=0.1, lw=0)
            if "edit_accuracy" in results and layer == results.attrs.get("edit_layer"):
                edited = 100 * group["edit_accuracy"].sel(variant="edit_zero_bias", score="test")
                ax.plot(results.epoch, edited.mean("run"), color="black", ls=":", lw=1.5,
                        label="edited model")
            ax.set_title(f"{layer} — {label} ({n_seeds(pos)})", fontsize=8.5)
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
            if r == len(rows) - 1:
                ax.set_xlabel("epoch")
            if c == 0:
                ax.set_ylabel("test accuracy (%)")
    legend_below(fig, axes)
    return save_figure(fig, path)


def heatmap_figure(results: xr.Dataset, probe: str, path: str) -> str:
    """One panel per group: the probe's test accuracy (mean over seeds) on a layer ×
    epoch grid; epochs are the captured ones, evenly spaced."""
    rows = groups(results)
    test = 100 * results["accuracy"].sel(score="test", probe=probe)
    layers = [str(v) for v in results.layer.values]
    epochs = results.epoch.values
    fig, axes = plt.subplots(1, len(rows), figsize=(0.16 * len(epochs) * len(rows) + 2.5, 0.45 * len(layers) + 1.6),
                             squeeze=False, sharey=True)
    image = None
    for c, (label, pos) in enumerate(rows):
        ax = axes[0, c]
        reached = analysed(results).isel(run=pos).any("run")
        group = test.isel(run=pos).sel(epoch=reached)
        epochs = group.epoch.values
        grid = group.mean("run", skipna=True).transpose("layer", "epoch").values
        image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=100,
                          interpolation="nearest")
        step = max(1, len(epochs) // 8)
        ax.set_xticks(range(0, len(epochs), step), [str(e) for e in epochs[::step]], fontsize=7)
        ax.set_yticks(range(len(layers)), layers, fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_title(f"{label} ({n_seeds(pos)})", fontsize=9)
    fig.colorbar(image, ax=axes[0, :].tolist(), label=f"{PROBES.get(probe, probe)} test accuracy (%)",
                 shrink=0.9)
    return save_figure(fig, path, bbox_inches="tight")


def levels_figure(results: xr.Dataset, table: list[dict], level: str, path: str) -> str:
    """Final-epoch test accuracy against the swept level (e.g. corruption): the model,
    the best layer's MASC and VeLPIC, and the edited model; mean ± std over seeds."""
    x = [row["key"][level] for row in table]
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for column, style in (("model", dict(color="black", ls="--")), ("masc", {}), ("masc_true", {}),
                          ("velpic", {}), ("edit_zero_bias", dict(color="black", ls=":"))):
        if column not in table[0]:
            continue
        mean = [row[column][0] for row in table]
        std = [row[column][1] for row in table]
        label = COLUMN_LABELS[column] if column in ("model", "edit_zero_bias") else f"best-layer {COLUMN_LABELS[column]}"
        ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=label, **style)
    ax.set_xlabel(level)
    ax.set_ylabel("test accuracy at the final epoch (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)  # beside, off the data
    return save_figure(fig, path, bbox_inches="tight")


# ------------------------------------------------------------------------- tables
COLUMN_LABELS = {"model": "model", "masc": "MASC, observed-label subspaces",
                 "masc_true": "MASC, true-label subspaces", "velpic": "VeLPIC",
                 "edit_zero_bias": "edited (bias 0)", "edit_keep_bias": "edited (bias kept)"}
TABLE_PROBES = ("masc", "masc_true", "velpic")  # the probes of the final table, best layer each


def summary_rows(results: xr.Dataset, notes: dict[str, str] | None = None) -> list[dict]:
    """The published-style numbers per group at each run's final analysed epoch (test
    split, %): (mean, std) over seeds; a probe's best layer is the one with the highest
    mean. `notes` (run name -> note, e.g. a run still being captured) go into the row
    of the run's group."""
    test = results["accuracy"].sel(score="test")
    rows = []
    names = [str(v) for v in results["run_name"].values] if "run_name" in results.coords else []
    for label, pos in groups(results):
        group = results.isel(run=pos)
        index = group.indexes["run"]
        row = {"label": label, "key": index.to_frame(index=False).iloc[0].to_dict(),
               "n": len(pos), "epochs": last_epochs(group).values,
               "notes": _group_notes([names[i] for i in pos] if names else [], notes or {})}
        if "model_test_acc" in group:
            row["model"] = _stat(100 * final(group, group["model_test_acc"]))
        for probe in TABLE_PROBES:
            if probe in test.probe:
                layer = best_layer(group, probe)
                row[probe] = (*_stat(100 * final(group, test.isel(run=pos).sel(probe=probe, layer=layer))), layer)
        if "edit_accuracy" in results:
            for variant in ("edit_zero_bias", "edit_keep_bias"):
                row[variant] = _stat(100 * final(group, group["edit_accuracy"].sel(variant=variant, score="test")))
        rows.append(row)
    return rows


def _group_notes(runs: list[str], notes: dict[str, str]) -> str:
    """The notes of a group's runs: "(running: ...)" for a one-run group, else each
    noted run by name."""
    noted = [run for run in runs if run in notes]
    if not noted:
        return ""
    if len(runs) == 1:
        return f" ({notes[noted[0]]})"
    return " (" + "; ".join(f"{run} {notes[run]}" for run in noted) + ")"


def run_notes(paths: list[str], results: xr.Dataset | None = None) -> dict[str, str]:
    """Run name -> a note for its row, as the store says now: "running: N of M scheduled
    epochs committed" while its capture has not finished, and ", K analysed" (or, for a
    finished run, "K of N committed epochs analysed") where epochs were committed after
    this analysis planned its tasks (`results`: what the report shows)."""
    counted = {}
    if results is not None and "run_name" in results.coords:
        counted = dict(zip((str(v) for v in results["run_name"].values),
                           (int(n) for n in analysed(results).sum("epoch").values)))
    out = {}
    for path in paths:
        attrs = stores.run_attrs(path)
        name = str(attrs.get("run_name", path))
        committed = len(slabs.committed_slots(path)[0])
        done = counted.get(name, committed)
        if attrs.get("status") != stores.schema.STATUS_COMPLETE:
            out[name] = (f"running: {committed} of {len(attrs.get('schedule', []))} scheduled "
                         "epochs committed" + (f", {done} analysed" if done < committed else ""))
        elif done < committed:
            out[name] = f"{done} of {committed} committed epochs analysed"
    return out


def _stat(values: xr.DataArray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=0))


def _table(rows: list[dict]) -> str:
    columns = [c for c in COLUMN_LABELS if c in rows[0]]
    lines = ["| runs | final epoch | " + " | ".join(COLUMN_LABELS[c] for c in columns) + " |",
             "|---|---:|" + "---:|" * len(columns)]
    for r in rows:
        lo, hi = int(np.min(r["epochs"])), int(np.max(r["epochs"]))
        epochs = f"{lo}" if lo == hi else f"{lo}–{hi}"
        lines.append(f"| {r['label']} ({n_seeds(np.arange(r['n']))}){r.get('notes', '')} | {epochs} | "
                     + " | ".join(summary_cell(r[c], r["n"]) for c in columns) + " |")
    return "\n".join(lines)


def _peaks_table(results: xr.Dataset) -> str:
    lines = ["| runs | probe | layer | peak epoch | peak | final | final − peak |",
             "|---|---|---|---:|---:|---:|---:|"]
    for label, pos in groups(results):
        mean = results.isel(run=pos)[["accuracy"]].mean("run", skipna=True)
        reached = analysed(results).isel(run=pos).any("run")
        p = peaks(mean.sel(epoch=reached))
        for probe in ("masc", "velpic"):
            if probe not in p.probe:
                continue
            for layer in p.layer.values:
                q = p.sel(probe=probe, layer=layer)
                if bool(q.peak_epoch.isnull()):
                    continue  # no test split (a recorder's all-train probe set)
                lines.append(f"| {label} | {PROBES[probe]} | {layer} | {int(q.peak_epoch)} | "
                             f"{100 * float(q.peak_test):.1f} | {100 * float(q.final_test):.1f} | "
                             f"{100 * float(q.final_minus_peak):+.1f} |")
    return "\n".join(lines)


def _crosschecks(paths: list[str]) -> str:
    checks = []
    for path in paths:
        attrs = stores.node_attrs(path, EDIT)
        if attrs.get("crosscheck_agreement") is not None:
            checks.append(f"{stores.run_attrs(path).get('run_name', path)}: "
                          f"{100 * attrs['crosscheck_agreement']:.2f}%")
    return "; ".join(checks) or "not run (no `input` capture point, or no run config to rebuild the model from)"


# ------------------------------------------------------------------------- report
def _final_section(pipeline: str, paths: list[str], rows: list[dict], notes: dict[str, str],
                   pending: list[str] | None) -> str:
    """The report's head: how to read it, then the final-epoch table and the edit's
    cross-check."""
    unfinished = ""
    if notes:
        unfinished += ("\nSome runs are still being captured, or committed epochs after this "
                       "analysis began (marked in their rows): the report covers the epochs "
                       "analysed; run `python -m analyze` again to extend it.\n")
    if pending:
        unfinished += f"\nNot in this report yet: {'; '.join(pending)}.\n"
    return f"""# {pipeline}: latent generalization report

Accuracies are on the held-out test split against true labels, in percent. Probes are
fit on each layer's training-split activations with the *observed* (possibly corrupted)
labels, exactly as the network saw them. Runs that differ only in their seed are shown
together: mean ± standard deviation over the seeds.

## Final epoch

The memorizing model beside the probes of its layers, at each run's final epoch: MASC
with subspaces from the observed training labels, MASC with subspaces from the true
labels (a control: an upper bound on what the representation holds), VeLPIC, and
the model with its last layer replaced by the VeLPIC vectors of its penultimate layer
(no retraining). A probe's cell names its best layer: the highest mean over the seeds.
{unfinished}
{_table(rows)}

Edit cross-check (predictions of the zero-bias edited model rebuilt from the stored
weights and run on the stored inputs, against those computed from the stored
penultimate activations): {_crosschecks(paths)}.
"""


def _levels_section(results: xr.Dataset, rows: list[dict], figure) -> list[str]:
    """The levels figure and its text, where one level is swept over three or more
    values ([] otherwise)."""
    numeric = [name for name in results.indexes["run"].names if name != REPLICATE
               and len({row["key"][name] for row in rows}) > 1]
    if not (len(numeric) == 1 and len(rows) > 2):
        return []
    levels_figure(results, rows, numeric[0], figure("levels.png"))
    return [f"""![Final test accuracy against {numeric[0]}](figures/levels.png)

How much of the lost accuracy the layers still hold: the model's final test accuracy
(dashed), the best layer's MASC (observed- and true-label subspaces) and VeLPIC probes
and the edited model (dotted), against {numeric[0]}, mean ± std over seeds.
"""]


def _dynamics_sections(results: xr.Dataset, figure) -> list[str]:
    """The dynamics figure, then MASC's and VeLPIC's layer × epoch heatmaps, with their
    text."""
    dynamics_figure(results, figure("dynamics.png"))
    sections = ["""## Dynamics

![Probe test accuracy per layer over epochs, beside the model's own test accuracy](figures/dynamics.png)

One row per group of runs, one column per layer: every probe's test accuracy over the
captured epochs (mean over seeds, the band ± one std), the model's own test accuracy
(dashed) and, on the penultimate layer, the edited model's (dotted).
"""]
    for probe in ("velpic", "masc"):
        if probe in results.probe:
            heatmap_figure(results, probe, figure(f"heatmap_{probe}.png"))
            sections.append(f"""![{PROBES[probe]} test accuracy, layer by epoch](figures/heatmap_{probe}.png)

{PROBES[probe]} test accuracy on a layer × epoch grid, one panel per group: where
(which layer) and when (which epoch) the latent generalization is strongest.
""")
    sections.append(f"""## Peaks

Latent generalization peaks early and fades as the network memorizes: per probe and
layer, the epoch of peak test accuracy (of the mean over seeds) and the drop from there
to the final epoch.

{_peaks_table(results)}
""")
    return sections


def write_report(pipeline: str, out_dir: str, paths: list[str], results: xr.Dataset,
                 csv_name: str, extra: str = "", pending: list[str] | None = None) -> str:
    """Write `report.md` with its figures (PNG, under `figures/`), next to the stores.

    A run still being captured says so in its row.

    Parameters
    ----------
    pipeline : str
        The pipeline's name.
    out_dir : str
        Where the report goes, a path or a URL.
    paths : list of str
        The run stores.
    results : xarray.Dataset
        Their analysis results, `stores.analysis_results(paths)`.
    csv_name : str
        The tidy table's file name, which the report names.
    extra : str, default ""
        A section to add before the closing note (e.g. the modular-arithmetic one).
    pending : list of str, optional
        The pipeline's runs not in the report yet (no store, or no committed epoch), with why.

    Returns
    -------
    str
        Where report.md went.
    """
    figure = lambda name: location.join(out_dir, "figures", name)  # noqa: E731
    notes = run_notes(paths, results)
    rows = summary_rows(results, notes)
    sections = [_final_section(pipeline, paths, rows, notes, pending)]
    if published.setup_of(pipeline):
        sections.append(published_table(pipeline, rows))
    sections += _levels_section(results, rows, figure)
    sections += _dynamics_sections(results, figure)
    sections.extend(report_controls.sections(pipeline, out_dir, paths, results, rows))
    if extra:
        sections.append(extra)
    sections.append(f"""The tidy table of every number is in `{csv_name}` (also
`stores.analysis_table("{out_dir}")`); the same results are stored in each run's store
under `analysis/` and open as one xarray Dataset with `stores.analysis_results`.
""")
    path = location.join(out_dir, "report.md")
    with replacing(path, "w") as f:
        f.write("\n".join(sections))
    return path
