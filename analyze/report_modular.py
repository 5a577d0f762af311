"""Figures and report sections of modular-arithmetic runs (Doshi et al. 2023)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

import stores  # noqa: E402
from stores import location  # noqa: E402

from . import neurons  # noqa: E402
from .modular import PRUNE_FRACTION, at_fraction  # noqa: E402
from .report_common import save_figure  # noqa: E402

Runs = list[tuple[str, dict[str, xr.Dataset]]]
GROUP_STYLE = {"corrupted": ("tab:red", "corrupted train (observed labels)"),
               "clean": ("tab:blue", "uncorrupted train"), "test": ("black", "test")}


def _label(path: str) -> str:
    params = stores.run_attrs(path).get("params", {})
    shown = {k: v for k, v in params.items() if k not in ("p", "seed")}
    return ", ".join(f"{k} = {v}" for k, v in shown.items())


def _save(fig, path: str) -> str:
    fig.tight_layout()
    return location.name(save_figure(fig, path))


def training_figure(runs: Runs, out: str) -> str:
    """Train (observed labels) and test accuracy over epochs, and the mean IPR, per run."""
    fig, axes = plt.subplots(2, len(runs), figsize=(4.2 * len(runs), 5.6), squeeze=False, sharex="col")
    for col, (path, ds) in enumerate(runs):
        m = stores.metrics(stores.open_run(path))
        attrs = ds["neurons"].attrs
        ax = axes[0, col]
        ax.plot(m.epoch, 100 * m.train_acc_observed, label="train (observed labels)")
        ax.plot(m.epoch, 100 * m.test_acc, label="test")
        ax.axhline(100 * attrs["two_stage_target"], color="grey", ls=":",
                   label="100(1 − ξ) + 100ξ/p")
        ax.set_title(f"{_label(path)}\nphase: {attrs['phase'].replace('_', ' ')}", fontsize=9)
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax = axes[1, col]
        ax.plot(ds["neurons"].epoch, ds["neurons"].mean_ipr, color="tab:purple")
        ax.set_xlabel("epoch (full-batch step)")
        ax.set_ylabel("mean neuron IPR")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    return _save(fig, location.join(out, "modular_training.png"))


def ipr_histogram_figure(runs: Runs, out: str) -> str:
    """The distribution of neuron IPRs at the final epoch, per run."""
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.2), squeeze=False)
    for ax, (path, ds) in zip(axes[0], runs):
        ipr = ds["neurons"]["ipr"].isel(epoch=-1)
        ax.hist(ipr, bins=np.linspace(0, 1, 41), color="tab:purple")
        ax.set_title(f"{_label(path)} (epoch {int(ipr.epoch)})", fontsize=9)
        ax.set_xlabel("neuron IPR")
        ax.set_ylabel("neurons")
    return _save(fig, location.join(out, "ipr_histogram.png"))


def pruning_figure(runs: Runs, out: str) -> str:
    """Accuracy per group against the fraction of neurons pruned, in both IPR orders."""
    fig, axes = plt.subplots(len(runs), 2, figsize=(9, 3.2 * len(runs)), squeeze=False, sharey=True)
    for row, (path, ds) in enumerate(runs):
        pr = ds["pruning"]
        for col, order in enumerate(("ascending", "descending")):
            ax = axes[row, col]
            for group, (color, name) in GROUP_STYLE.items():
                acc = pr["accuracy"].sel(order=order, group=group)
                ax.plot(100 * pr.fraction, 100 * acc, color=color, label=name)
            first = "low-IPR (memorizing) first" if order == "ascending" else "high-IPR first"
            ax.set_title(f"{_label(path)}\npruning {first}", fontsize=9)
            ax.set_xlabel("neurons pruned (%)")
            ax.grid(alpha=0.3)
        axes[row, 0].set_ylabel("accuracy (%)")
    axes[0, 0].legend(fontsize=8)
    return _save(fig, location.join(out, "pruning.png"))


def bn_figure(runs: Runs, out: str) -> str | None:
    """BatchNorm's effective gain of each neuron against its IPR."""
    bn = [(path, ds) for path, ds in runs if "bn_gain" in ds["neurons"]]
    if not bn:
        return None
    fig, axes = plt.subplots(len(bn), 2, figsize=(9, 3.6 * len(bn)), squeeze=False)
    for row, (path, ds) in enumerate(bn):
        n = ds["neurons"]
        for ax, name, ylabel in zip(axes[row], ("bn_gain", "bn_gamma"),
                                    ("|γ| / sqrt(running var + ε)", "|γ| (BatchNorm weight)")):
            ax.scatter(n["ipr"].isel(epoch=-1), np.abs(n[name]), s=8, alpha=0.6)
            ax.set_xlabel("neuron IPR (final epoch)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{_label(path)}\nmean over IPR ≥ 0.5 / IPR < 0.5: "
                         f"{n.attrs[name + '_ratio']:.2f}", fontsize=9)
            ax.grid(alpha=0.3)
    return _save(fig, location.join(out, "batchnorm_gain.png"))


def phase_figure(runs: Runs, out: str) -> str | None:
    """The phase of each run on the (alpha, xi) grid."""
    points = []
    for path, ds in runs:
        cfg = stores.run_attrs(path)["config"]
        points.append((cfg["data"]["alpha"], cfg["corruption"]["rate"], ds["neurons"].attrs["phase"]))
    alphas = sorted({a for a, _, _ in points})
    xis = sorted({x for _, x, _ in points})
    if len(alphas) < 2 or len(xis) < 2:
        return None
    grid = np.full((len(xis), len(alphas)), np.nan)
    for a, x, ph in points:
        grid[xis.index(x), alphas.index(a)] = neurons.PHASES.index(ph)
    colors = ["tab:green", "tab:olive", "tab:blue", "tab:red", "tab:gray"]
    cmap = matplotlib.colors.ListedColormap(colors)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.imshow(grid, origin="lower", cmap=cmap, vmin=-0.5, vmax=len(colors) - 0.5, aspect="auto")
    ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    ax.set_yticks(range(len(xis)), [f"{x:g}" for x in xis])
    ax.set_xlabel("training fraction α")
    ax.set_ylabel("corrupted fraction ξ")
    handles = [matplotlib.patches.Patch(color=c, label=p.replace("_", " "))
               for c, p in zip(colors, neurons.PHASES)]
    ax.legend(handles=handles, bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    return _save(fig, location.join(out, "phase_diagram.png"))


def table(runs: Runs) -> str:
    pct = f"{int(100 * PRUNE_FRACTION)}%"
    lines = [f"| run | train | test | phase | mean IPR | prune {pct} low-IPR first: corrupted / clean / test "
             f"| prune {pct} high-IPR first: corrupted / clean / test | train peak (epoch) | settles at (epoch) |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for path, ds in runs:
        a = ds["neurons"].attrs
        lo, hi = (at_fraction(ds["pruning"], o) for o in ("ascending", "descending"))
        trio = lambda d: " / ".join(f"{100 * d[g]:.1f}" for g in ("corrupted", "clean", "test"))  # noqa: E731
        settle = ("-" if a.get("two_stage_settle_epoch") is None else
                  f"{100 * a['two_stage_settled_train_acc']:.1f} ({a['two_stage_settle_epoch']})")
        lines.append(
            f"| {_label(path)} | {100 * a['final_train_acc']:.1f} | {100 * a['final_test_acc']:.1f} | "
            f"{a['phase'].replace('_', ' ')} | {float(ds['neurons'].mean_ipr[-1]):.3f} | {trio(lo)} | "
            f"{trio(hi)} | {100 * a['two_stage_peak_train_acc']:.1f} ({a['two_stage_peak_epoch']}) | {settle} |")
    return "\n".join(lines)


def section(runs: Runs, out: str) -> str:
    """The modular part of report.md: the table and every figure, one sentence each."""
    figures = location.join(out, "figures")
    parts = ["## Neurons (modular arithmetic)", "",
             "Accuracies in percent; train is against the observed (possibly corrupted) labels. "
             "Pruning zeroes neurons in the stored last layer, ordered by Fourier IPR.", "",
             table(runs), ""]
    for path, ds in runs:
        a = ds["neurons"].attrs
        if "bn_gain_ratio" in a:
            parts += [f"BatchNorm ({_label(path)}): mean over high-IPR (≥ 0.5, {a['bn_gain_n_high']}) "
                      f"over low-IPR ({a['bn_gain_n_low']}) neurons of the effective gain "
                      f"|γ|/sqrt(var + ε) is {a['bn_gain_ratio']:.2f} (Spearman ρ with IPR "
                      f"{a['bn_gain_spearman']:+.2f}); of the learned scale |γ| alone "
                      f"{a['bn_gamma_ratio']:.2f} (ρ {a['bn_gamma_spearman']:+.2f}).", ""]
    shown = [
        (training_figure(runs, figures), "Train (observed labels) and test accuracy over "
         "training, with the dotted level 100(1 − ξ) + 100ξ/p % that train accuracy falls to "
         "once the corrupted labels are unlearned (top), and the mean neuron IPR (bottom)."),
        (ipr_histogram_figure(runs, figures), "Neuron IPRs at the final epoch: generalizing "
         "(periodic) neurons sit near 1, memorizing ones near 0."),
        (pruning_figure(runs, figures), "Accuracy as neurons are pruned, low-IPR first "
         "(left) and high-IPR first (right)."),
        (bn_figure(runs, figures), "BatchNorm's effective gain γ/sqrt(var + ε) (left) and its "
         "learned scale γ (right) per neuron against its IPR."),
        (phase_figure(runs, figures), "The phase of each run over training fraction and "
         "corruption."),
    ]
    for name, sentence in shown:
        if name:
            parts += [f"![{sentence}](figures/{name})", "", sentence, ""]
    return "\n".join(parts)
