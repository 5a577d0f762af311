"""Figures and the Markdown report of a pipeline's analysis."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on batch nodes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

import stores  # noqa: E402

PROBE_LABELS = {"masc": "MASC", "velpic": "VeLPIC", "ncm": "nearest mean (cos)",
                "knn": "k-NN (cos)", "logreg": "logistic reg."}


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


def _run_label(attrs: dict) -> str:
    return ", ".join(f"{k} = {v}" for k, v in attrs.get("params", {}).items()) or attrs.get("run_name", "")


def dynamics_figure(runs: list[tuple[str, dict[str, xr.Dataset]]], path: Path) -> Path:
    """Rows: runs; columns: layers; lines: each probe's test accuracy over epochs, beside
    the model's own test accuracy (and the edited model's, on the penultimate layer)."""
    layers = list(runs[0][1]["dynamics"].layer.values)
    fig, axes = plt.subplots(len(runs), len(layers), figsize=(3.4 * len(layers), 2.8 * len(runs)),
                             sharex="row", sharey=True, squeeze=False)
    for row, (store, ds) in enumerate(runs):
        attrs = stores.run_attrs(store)
        model = stores.metrics(stores.open_run(store))["test_acc"]
        edit = ds["edit"]
        for col, layer in enumerate(layers):
            ax = axes[row, col]
            for probe in ds["dynamics"].probe.values:
                acc = ds["dynamics"]["accuracy"].sel(probe=probe, layer=layer, score="test")
                ax.plot(acc.epoch, 100 * acc, marker=".", lw=1.2, label=PROBE_LABELS.get(probe, probe))
            ax.plot(model.epoch, 100 * model, color="black", ls="--", lw=1.5, label="model")
            if layer == edit.attrs["layer"]:
                e = edit["accuracy"].sel(variant="edit_zero_bias", score="test")
                ax.plot(e.epoch, 100 * e, color="black", ls=":", lw=1.5, label="edited model")
            ax.set_title(f"{layer}  ({_run_label(attrs)})", fontsize=9)
            ax.grid(alpha=0.3)
            if row == len(runs) - 1:
                ax.set_xlabel("epoch")
            if col == 0:
                ax.set_ylabel("test accuracy (%)")
    handles, labels = [], []
    for ax in axes.flat:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary_rows(runs: list[tuple[str, dict[str, xr.Dataset]]]) -> list[dict]:
    """The published-style numbers of each run at its final epoch (test split, %)."""
    rows = []
    for store, ds in runs:
        attrs = stores.run_attrs(store)
        model = stores.metrics(stores.open_run(store))["test_acc"]
        test = ds["dynamics"]["accuracy"].sel(score="test").isel(epoch=-1)
        edit = ds["edit"]["accuracy"].sel(score="test").isel(epoch=-1)
        row = {"run": _run_label(attrs), "epoch": int(test.epoch),
               "model": 100 * float(model.isel(epoch=-1))}
        for probe in ("masc", "velpic"):
            if probe in test.probe:
                best = test.sel(probe=probe)
                layer = str(best.idxmax("layer").values)
                row[probe] = (100 * float(best.max()), layer)
        row["edit_zero_bias"] = 100 * float(edit.sel(variant="edit_zero_bias"))
        row["edit_keep_bias"] = 100 * float(edit.sel(variant="edit_keep_bias"))
        row["crosscheck"] = ds["edit"].attrs.get("crosscheck_agreement")
        rows.append(row)
    return rows


def _table(rows: list[dict]) -> str:
    lines = ["| run | final epoch | model | best-layer MASC | best-layer VeLPIC | "
             "edited (bias 0) | edited (bias kept) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        probe = lambda k: f"{r[k][0]:.1f} ({r[k][1]})" if k in r else "-"  # noqa: E731
        lines.append(f"| {r['run']} | {r['epoch']} | {r['model']:.1f} | {probe('masc')} | "
                     f"{probe('velpic')} | {r['edit_zero_bias']:.1f} | {r['edit_keep_bias']:.1f} |")
    return "\n".join(lines)


def _peaks_table(runs: list[tuple[str, dict[str, xr.Dataset]]]) -> str:
    lines = ["| run | probe | layer | peak epoch | peak | final | final − peak |",
             "|---|---|---|---:|---:|---:|---:|"]
    for store, ds in runs:
        label = _run_label(stores.run_attrs(store))
        p = peaks(ds["dynamics"])
        for probe in ("masc", "velpic"):
            if probe not in p.probe:
                continue
            for layer in p.layer.values:
                q = p.sel(probe=probe, layer=layer)
                lines.append(f"| {label} | {PROBE_LABELS[probe]} | {layer} | {int(q.peak_epoch)} | "
                             f"{100 * float(q.peak_test):.1f} | {100 * float(q.final_test):.1f} | "
                             f"{100 * float(q.final_minus_peak):+.1f} |")
    return "\n".join(lines)


def write_report(pipeline: str, out_dir: Path, runs: list[tuple[str, dict[str, xr.Dataset]]],
                 csv_name: str, extra: str = "") -> Path:
    """`report.md` with the dynamics figure and the tables, next to the stores."""
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    dynamics_figure(runs, figures / "dynamics.png")
    rows = summary_rows(runs)
    checks = [f"{r['run']}: {100 * r['crosscheck']:.2f}%" for r in rows if r["crosscheck"] is not None]
    text = f"""# {pipeline}: latent generalization report

Accuracies are on the held-out test split against true labels, in percent. Probes are
fit on each layer's training-split activations with the *observed* (possibly corrupted)
labels, exactly as the network saw them.

## Final epoch

The memorizing model beside the best layer's probes and the model with its last layer
replaced by the VeLPIC vectors of its penultimate layer (no retraining).

{_table(rows)}

Edit cross-check (predictions of the zero-bias edited model rebuilt from the stored
weights and run on the stored inputs, against those computed from the stored
penultimate activations): {"; ".join(checks) or "not run (no `input` capture point)"}.

## Dynamics

![Probe test accuracy per layer over epochs, beside the model's own test accuracy]
(figures/dynamics.png)

Each panel shows one layer of one run: every probe's test accuracy over the captured
epochs, the model's own test accuracy (dashed) and, on the penultimate layer, the
edited model's (dotted).

## Peaks

Latent generalization peaks early and fades as the network memorizes: per probe and
layer, the epoch of peak test accuracy and the drop from there to the final epoch.

{_peaks_table(runs)}

{extra}

The tidy table of every number is in `{csv_name}`; the same results are stored in each
run's store under `analysis/`.
"""
    path = out_dir / "report.md"
    path.write_text(text.replace("]\n(figures", "](figures"))
    return path
