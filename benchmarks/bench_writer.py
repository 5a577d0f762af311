"""Writer throughput: activation bytes committed per second by `RunWriter` against
`np.save` of the same bytes to the same disk.

Both sides write whole epochs of float16 activations of several layers (the MNIST-MLP
capture points at 12 000 probe samples, 132 MB an epoch) into fresh directories under
the same root, and both end with every written file fsynced: `np.save` then `fsync`
per file, as the baseline; the store writer hands over whole chunks the way capture
does, commits each epoch, and then every file of the store is fsynced. `os.sync()`
runs before each timed section so neither side pays for the other's dirty pages.
The sides run in one chain, each right after the other side, whose files it replaces
(so each starts with the same amount of page cache just freed); the first pair warms
up and is not recorded; the ratio is the median of the per-trial ratios.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from common import summary_line
from stores import LayerSpec, RunWriter

UNITS = {"input": 784, "relu1": 128, "relu2": 512, "relu3": 2048, "relu4": 2048}
N_SAMPLES = 12_000


def _files(path: str, since_ns: int = 0) -> list[str]:
    """Files under `path` modified at or after `since_ns` (the ones a writer wrote)."""
    paths = (os.path.join(d, f) for d, _, names in os.walk(path) for f in names)
    return [p for p in paths if os.stat(p).st_mtime_ns >= since_ns]


def _fsync_one(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync(paths: list[str]) -> None:
    """fsync every file, several at once (the journal commits them together); both
    sides of the comparison end with this same call."""
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(_fsync_one, paths))


def _epochs(n_epochs: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """ReLU-like float16 activations, different for every epoch."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_epochs):
        out.append({name: np.maximum(rng.standard_normal((N_SAMPLES, u), dtype=np.float32), 0)
                    .astype(np.float16) for name, u in UNITS.items()})
    return out


def _settle(previous: str | None) -> None:
    """Remove the previous side's files and flush everything dirty, right before the
    clock starts: each side starts from the same state (its predecessor's page cache
    just freed, nothing dirty), whatever it prepared beforehand."""
    if previous:
        shutil.rmtree(previous)
    os.sync()


def npsave(root: str, epochs: list[dict[str, np.ndarray]], previous: str | None = None) -> float:
    """Seconds to np.save every (epoch, layer) array to its own file, then fsync them."""
    os.makedirs(root)
    _settle(previous)
    t0 = time.perf_counter()
    paths = []
    for e, layers in enumerate(epochs):
        for name, values in layers.items():
            paths.append(os.path.join(root, f"{name}.{e}.npy"))
            with open(paths[-1], "wb") as f:
                np.save(f, values)
    _fsync(paths)
    return time.perf_counter() - t0


def store_writer(root: str, epochs: list[dict[str, np.ndarray]], compressor: str | None,
                 previous: str | None = None) -> float:
    """Seconds for RunWriter to write and commit every epoch, chunk by chunk as capture
    hands them over, then fsync every file it wrote (laying the store out not timed)."""
    n = N_SAMPLES
    samples = {"split": np.array(["train"] * n), "index": np.arange(n),
               "label_true": np.zeros(n, int), "label_observed": np.zeros(n, int),
               "corrupted": np.zeros(n, bool)}
    writer = RunWriter.create(
        root, attrs={}, schedule=list(range(len(epochs))), samples=samples,
        layers=[LayerSpec(name, u, (u,)) for name, u in UNITS.items()],
        params={"head.weight": (10, 2048)}, compressor=compressor,
    )
    blocks = {name: writer.sample_block(name) for name in UNITS}
    _settle(previous)
    since = time.time_ns() - 1_000_000  # file times are coarse: 1 ms of slack
    t0 = time.perf_counter()
    for slot, layers in enumerate(epochs):
        for name, values in layers.items():
            b = blocks[name]
            for start in range(0, n, b):
                writer.write_activations(slot, name, start, values[start : start + b])
        writer.commit(slot, slot)
    _fsync(_files(root, since))
    return time.perf_counter() - t0


def run(quick: bool = False, root: str | None = None) -> list[dict]:
    """Per trial: np.save and writer seconds (plain and zstd), bytes, ratios."""
    n_epochs, trials = (2, 3) if quick else (3, 7)
    epochs = _epochs(n_epochs)
    nbytes = sum(a.nbytes for layers in epochs for a in layers.values())
    base = tempfile.mkdtemp(prefix="writer-", dir=root)
    sides = {"np": lambda out, prev: npsave(out, epochs, prev),
             "w": lambda out, prev: store_writer(out, epochs, None, prev),
             "z": lambda out, prev: store_writer(out, epochs, "zstd", prev)}
    rows, previous = [], None
    try:
        # One chain of timed sides, each right after another whose files it replaces
        # (freeing the same amount of page cache): np.save and the writer alternate,
        # then np.save and the zstd writer. The first pair warms up, unrecorded.
        times: dict[str, list[float]] = {"np": [], "w": [], "np_z": [], "z": []}
        for first, second in [("np", "w")] * (trials + 1) + [("np_z", "z")] * (trials + 1):
            for key in (first, second):
                out = os.path.join(base, f"{key}{len(times[key])}")
                times[key].append(sides[key.split("_")[0]](out, previous))
                previous = out
        for trial in range(trials):
            t_np, t_w, t_z = times["np"][trial + 1], times["w"][trial + 1], times["z"][trial + 1]
            rows.append({"trial": trial, "bytes": nbytes, "npsave_s": t_np, "writer_s": t_w,
                         "zstd_s": t_z, "npsave_MBps": nbytes / t_np / 1e6,
                         "writer_MBps": nbytes / t_w / 1e6, "zstd_MBps": nbytes / t_z / 1e6,
                         "ratio": t_np / t_w, "zstd_ratio": times["np_z"][trial + 1] / t_z})
            print(f"  writer trial {trial}: np.save {rows[-1]['npsave_MBps']:.0f} MB/s, "
                  f"writer {rows[-1]['writer_MBps']:.0f} MB/s, zstd {rows[-1]['zstd_MBps']:.0f} "
                  f"MB/s", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    ratio = float(np.median([r["ratio"] for r in rows]))
    zstd = float(np.median([r["zstd_ratio"] for r in rows]))
    mbps = lambda key: float(np.median([r[key] for r in rows]))  # noqa: E731
    return [
        summary_line("writer", ratio, ">=0.8",
                     f"writer {mbps('writer_MBps'):.0f} MB/s vs np.save+fsync "
                     f"{mbps('npsave_MBps'):.0f} MB/s (median of {len(rows)})"),
        summary_line("writer_zstd", zstd, "info",
                     f"zstd level 1: {mbps('zstd_MBps'):.0f} MB/s of raw activations "
                     f"(random activations compress little)"),
    ]
