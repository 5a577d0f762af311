"""Capture overhead: a run with capture at every epoch against the same run with the
capture replaced by the forward passes over the probe set that capture needs.

Both sides load the same data, build the same seeded model and train it the same way;
after initialization and after every epoch, the baseline runs the probe set through the
model in eval mode in batches of `capture.batch_size` and computes the metrics from the
logits (no hooks, no copies, no writes), where the capture run calls `capture_run`
(hooks, reduce and cast, host copies, the background writer, weights, training state,
commits, consolidation). Two scales: quickstart as the pipeline runs it (digits,
widths 512-512-512, until it memorizes the corrupted labels, ~110 epochs; 20 epochs
with --quick) and the papers' MNIST MLP (128-512-2048-2048) on synthetic 784-d inputs
written as MNIST IDX files (10 000 train + 2 000 test probe samples, 4 epochs). The
sides alternate; the ratio is the median of per-pair ratios after one unrecorded
warm-up pair. Torch runs on one intra-op thread on both sides: with two OpenMP threads
on a two-core machine that other jobs share, the same run varies five-fold in time.
Besides wall time, each side's process CPU time (the `cpu_ratio`: less moved by other
jobs on a shared machine than wall time, though not unmoved), the bytes the capture wrote
per epoch and the size of one training-state copy are recorded: they say where an
overhead comes from.
"""

from __future__ import annotations

import os
import resource
import shutil
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from capture import train
from common import REPO, summary_line
from capture.data import load_dataset
from capture.models import build_model
from capture.run import capture_run, probe_set
from stores import load_pipeline


def _write_idx(path: Path, array: np.ndarray) -> None:
    magic = {3: 0x00000803, 1: 0x00000801}[array.ndim]
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def synthetic_mnist(root: Path, n_train: int = 10_000, n_test: int = 2_000) -> Path:
    """Random 28x28 images with class-dependent means, in MNIST's IDX files."""
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    protos = rng.integers(0, 256, size=(10, 28, 28))
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.permutation(np.arange(n) % 10)
        noise = rng.integers(-64, 64, size=(n, 28, 28))
        images = np.clip(protos[labels] + noise, 0, 255)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def configs(work: Path, quick: bool) -> dict:
    """name -> RunConfig: quickstart and the MNIST MLP, captured at every epoch."""
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())["quickstart"]
    raw["sweep"] = {"corruption": [0.6], "seed": [0]}
    if quick:  # the full run trains as quickstart does, until it memorizes (~110 epochs)
        raw["train"].update({"max_epochs": 20, "stop_train_acc": None})
    raw["capture"]["schedule"] = {"epochs": [0], "every": 1}
    mnist = {
        **raw,
        "description": "benchmark: the papers' MLP on synthetic MNIST-sized inputs",
        "data": {"name": "mnist", "root": str(synthetic_mnist(work / "data")),
                 "n_train": 10_000, "n_test": 2_000},
        "model": {"name": "mlp", "widths": [128, 512, 2048, 2048]},
        "train": {**raw["train"], "lr": 0.01, "batch_size": 128,
                  "max_epochs": 2 if quick else 4, "stop_train_acc": None},
        "capture": {**raw["capture"], "points": ["input", "relu1", "relu2", "relu3", "relu4"]},
    }
    path = work / "pipelines.yaml"
    path.write_text(yaml.safe_dump({"quickstart": raw, "mnist_mlp": mnist}))
    return {name: load_pipeline(name, path).runs()[0] for name in ("quickstart", "mnist_mlp")}


def baseline(config) -> int:
    """The same run with the capture replaced by plain forward passes over the probe set."""
    torch.manual_seed(config.seed)
    data = load_dataset(config.data)
    probe = probe_set(data, config, torch.device("cpu"))
    model = build_model(config.model, data.x_train.shape[1:], data.n_classes)
    tc = config.train
    loss = train.loss_fn(tc.loss, getattr(model, model.head_name).out_features)
    optimizer = train.make_optimizer(model.parameters(), tc)
    generator = torch.Generator().manual_seed(config.seed)
    is_train = torch.as_tensor(probe.samples["split"] == "train")
    observed, true = (torch.as_tensor(probe.samples[k]) for k in ("label_observed", "label_true"))
    x_train, y_train = probe.inputs[is_train], observed[is_train]

    def forward() -> dict:
        logits = train.predict(model, probe.inputs, batch_size=config.capture.batch_size)
        return train.metrics(logits, loss, is_train, observed, true)

    forward()  # epoch 0, as capture records initialization
    epochs = 0
    for epochs in range(1, tc.max_epochs + 1):
        train.train_epoch(model, optimizer, loss, x_train, y_train, tc.batch_size, generator)
        acc = forward()["train_acc_observed"]
        if tc.stop_train_acc is not None and acc >= tc.stop_train_acc:
            break  # the same stop rule: both sides train the same epochs
    return epochs


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _bytes(path: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _state_bytes(store_root: str) -> float:
    """Bytes of one training-state copy (the mean of a store's `state/<copy>` folders)."""
    copies = [c for s in Path(store_root).rglob("state") if s.is_dir() for c in s.iterdir() if c.is_dir()]
    return sum(_bytes(c) for c in copies) / max(1, len(copies))


def run(quick: bool = False, root: str | None = None, threads: int | None = 1) -> list[dict]:
    """Per scale and pair: capture and baseline seconds (torch on `threads` threads)."""
    if threads:
        torch.set_num_threads(threads)
    work = Path(tempfile.mkdtemp(prefix="capture-", dir=root))
    pairs = 2 if quick else 3
    rows = []
    try:
        for name, config in configs(work, quick).items():
            store_root = str(work / "runs")
            for pair in range(-1, pairs):  # pair -1 warms up (imports, caches), unrecorded
                sides = [("baseline", lambda: baseline(config)),
                         ("capture", lambda: capture_run(config, store_root, overwrite=True,
                                                         progress=False))]
                t, cpu = {}, {}
                for side, fn in sides if pair % 2 else sides[::-1]:
                    c0, t0 = _cpu(), time.perf_counter()
                    out = fn()
                    t[side], cpu[side] = time.perf_counter() - t0, _cpu() - c0
                    if side == "baseline":
                        epochs = out
                written, state = _bytes(store_root), _state_bytes(store_root)
                shutil.rmtree(store_root, ignore_errors=True)
                os.sync()
                if pair < 0:
                    continue
                rows.append({"scale": name, "pair": pair, "epochs": epochs,
                             "capture_s": t["capture"], "baseline_s": t["baseline"],
                             "capture_cpu_s": cpu["capture"], "baseline_cpu_s": cpu["baseline"],
                             "store_MB_per_epoch": written / (epochs + 1) / 1e6,
                             "state_copy_MB": state / 1e6,
                             "cpu_ratio": cpu["capture"] / cpu["baseline"],
                             "ratio": t["capture"] / t["baseline"]})
                print(f"  capture {name} pair {pair}: capture {t['capture']:.2f}s, "
                      f"forward-only {t['baseline']:.2f}s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    lines = []
    for scale in dict.fromkeys(r["scale"] for r in rows):
        sub = [r for r in rows if r["scale"] == scale]
        ratio = float(np.median([r["ratio"] for r in sub]))
        med = lambda key: float(np.median([r[key] for r in sub]))  # noqa: E731
        extra_cpu = (med("capture_cpu_s") - med("baseline_cpu_s")) / (sub[0]["epochs"] + 1)
        note = (f"CPU-bound: capture costs {1e3 * extra_cpu:.0f} ms CPU per epoch more than the "
                f"forward passes (the store grows {med('store_MB_per_epoch'):.1f} MB per epoch, "
                f"the resume state's copy, rewritten each epoch, is {med('state_copy_MB'):.2f} MB) "
                f"against a {1e3 * med('baseline_s') / (sub[0]['epochs'] + 1):.0f} ms epoch, and "
                "the writer's work competes with training for the CPU (see README, Performance)")
        lines.append(summary_line(
            f"capture_overhead_{scale}", ratio, "<=1.10",
            f"capture/forward-only run time, {sub[0]['epochs']} epochs all captured (median of "
            f"{len(sub)}: {med('capture_s'):.2f}s vs {med('baseline_s'):.2f}s; CPU time ratio "
            f"{med('cpu_ratio'):.2f})", note))
    return lines
