"""Published-scale tasks, probe by probe: every probe of a published pipeline's task
against the straightforward way to fit it, then the whole task.

Two tasks of the published sizes: MNIST-MLP's widest layer (60 000 training + 10 000
test rows, 2 048 units) and CIFAR-10-CNN's conv output (50 000 + 10 000, 1 024 units),
10 balanced classes, 20% of the training labels resampled (observed labels; the true
ones for masc_true), synthetic ReLU-like float16 activations read as float32 (as a task
reads its slab). Each probe is fitted on the training rows and predicts every row, as a
task does, once by the straightforward version and once by the pipeline's, on the same
threads:

* masc, masc_true, velpic: the authors' MASC (per class `np.cov` of [X_c; -X_c], float64
  `eigh`; VeLPIC its top vector), as `bench_probes.reference_fit`, against
  `fit_spectral_probes(method="fast")` (one decomposition for MASC and VeLPIC, as the
  task fits them); VeLPIC's line is VeLPIC fitted by itself, `VeLPIC.fast` (power
  iteration for each class's top pair), timed after the task;
* ncm: float64 class means and cosines in NumPy, against `NearestMeanCosine` (the same
  float64 code: information only, under 1% of a task);
* knn: scikit-learn's ``KNeighborsClassifier(5, metric="cosine", algorithm="brute")``
  against `analyze.knn.KNeighborsCosine.predict_with_fit_rows`;
* logreg: ``make_pipeline(StandardScaler(), LogisticRegression())`` (defaults) against
  `analyze.linear.StandardizedLogisticRegression`; `logreg_adam` (information) is P1's
  own probe, `AdamLogisticRegression`, against the same baseline;
* lda, qda: scikit-learn's defaults against `analyze.discriminant`'s.

The pipeline's side is one task timed probe by probe (`_fast_task`: the calls
`analyze.tasks.score_probes` makes, the class moments shared by logreg, LDA and QDA,
MASC's n ablation fitted with the primary n and then predicting), its peak memory
traced (tracemalloc) on top of the slab and reported against the slab's float32 size.
The straightforward whole task is the sum of the straightforward times, the ablation
counted as two more authors' MASC fits and predictions (one decomposition per label
set reused across the four n, not run again: fewer than the authors' MASC, which
refits for every n, would spend).

`python benchmarks/bench_published.py --setup mnist_mlp --given mnist_mlp:masc=SECONDS`
runs one setup and takes some straightforward times from an earlier run on the same data
(their agreement is then not measured again).
"""

from __future__ import annotations

import os
import time
import tracemalloc
import warnings

import numpy as np
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis, QuadraticDiscriminantAnalysis
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from analyze.linear import AdamLogisticRegression
from analyze.probes import VeLPIC, fit_masc_family
from analyze.moments import shared_moments
from analyze.samples import Samples
from analyze.tasks import make_probe
from bench_probes import reference_fit, reference_predict
from common import summary_line

FULL = (("mnist_mlp", 60_000, 10_000, 2048), ("cifar10_cnn", 50_000, 10_000, 1024))
QUICK = (("mnist_mlp", 12_000, 2_000, 512), ("cifar10_cnn", 10_000, 2_000, 256))  # n_c > d: QDA fits
PROBES = ("masc", "masc_true", "velpic", "ncm", "knn", "logreg", "lda", "qda")
ABLATION = (1, 0.25, 0.5, 0.75)  # MASC's other n in the published pipelines
N_CLASSES = 10
CORRUPTION = 0.2
# Agreement of the two versions' predictions (every row) each line requires, and why:
# the spectral probes keep the reference's k and differ by float32 round-off in the
# scores; k-NN, LDA and QDA compute the same quantities in float32 products (neighbours
# or classes within round-off of each other may swap); logistic regression's two
# versions are two approximations of one optimum (scikit-learn's stops at 100
# iterations, the fast one at its gradient tolerance): they may differ near the boundary.
AGREE = {"masc": 0.999, "masc_true": 0.999, "velpic": 0.999, "ncm": 1.0, "knn": 0.999,
         "logreg": 0.99, "logreg_adam": 0.0, "lda": 0.999, "qda": 0.999}
INFO = ("ncm", "logreg_adam")


def task_data(n_train: int, n_test: int, d: int, seed: int = 0) -> tuple[np.ndarray, Samples]:
    """ReLU-like activations of overlapping classes (prototypes 0.1 apart in a 256-d
    latent with a decaying spread, a random projection to d units, noise 0.5, ReLU),
    stored as float16 and read as float32; `CORRUPTION` of the training labels resampled."""
    rng = np.random.default_rng(seed)
    n, latent = n_train + n_test, 256
    W = rng.standard_normal((latent, d), dtype=np.float32) / np.sqrt(latent)
    protos = 0.1 * rng.standard_normal((N_CLASSES, latent), dtype=np.float32)
    y = np.repeat(np.arange(N_CLASSES), -(-n // N_CLASSES))[:n]
    rng.shuffle(y)
    scale = (0.98 ** np.arange(latent)).astype(np.float32)
    H = (protos[y] + rng.standard_normal((n, latent), dtype=np.float32) * scale) @ W
    for i in range(0, n, 8192):  # the noise in blocks: no second n x d temporary
        H[i:i + 8192] += 0.5 * rng.standard_normal((len(H[i:i + 8192]), d), dtype=np.float32)
    np.maximum(H, 0, out=H)
    x = H.astype(np.float16).astype(np.float32)
    del H
    train = np.arange(n) < n_train
    observed = y.copy()
    flip = train & (rng.random(n) < CORRUPTION)
    observed[flip] = rng.integers(0, N_CLASSES, int(flip.sum()))
    return x, Samples(train, ~train, observed, y, N_CLASSES)


def _velpic_reference(X, y, x):
    _, _, V, _ = reference_fit(X, y)
    return np.unique(y)[(x.astype(np.float64) @ V.T).argmax(1)]


def _ncm_reference(X, y, x):
    classes = np.unique(y)
    M = np.stack([X[y == c].mean(axis=0, dtype=np.float64) for c in classes])
    x = x.astype(np.float64)
    S = (x @ M.T) / np.maximum(np.linalg.norm(x, axis=1)[:, None] * np.linalg.norm(M, axis=1), 1e-300)
    return classes[S.argmax(1)]


def _qda_reference(X, y, x):
    """scikit-learn's default QDA; where it refuses (a singular class covariance), the
    remedy its error names and the pipeline takes (Ledoit-Wolf shrinkage)."""
    try:
        return QuadraticDiscriminantAnalysis().fit(X, y).predict(x)
    except np.linalg.LinAlgError:
        return QuadraticDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(X, y).predict(x)


STRAIGHT = {
    "masc": lambda X, y, x, s: reference_predict(reference_fit(X, y), x)[0],
    "velpic": lambda X, y, x, s: _velpic_reference(X, y, x),
    "ncm": lambda X, y, x, s: _ncm_reference(X, y, x),
    "knn": lambda X, y, x, s: KNeighborsClassifier(
        n_neighbors=5, metric="cosine", algorithm="brute").fit(X, y).predict(x),
    "logreg": lambda X, y, x, s: make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y).predict(x),
    "lda": lambda X, y, x, s: LinearDiscriminantAnalysis().fit(X, y).predict(x),
    "qda": lambda X, y, x, s: _qda_reference(X, y, x),
}
def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def _fast_task(x: np.ndarray, samples: Samples) -> tuple[dict, dict, float]:
    """The pipeline's task, timed probe by probe: the calls `analyze.tasks.score_probes`
    makes (MASC at the primary n and the ablation's, and VeLPIC, from one decomposition
    per label set, then each baseline as `tasks.make_probe` builds it, inside one
    `shared_moments()`), then the ablation's predictions. A probe's seconds are its fit
    and its predictions on every row (MASC's lines carry their label set's decomposition,
    VeLPIC's is measured by itself after the task by `_setup_rows`; LDA and QDA reuse the
    moments logreg computed first). Returns (seconds, predictions, whole-task seconds)."""
    t_start = time.perf_counter()
    X = samples.train_rows(x)  # the task's training rows (a view: they come first)
    labels = {"masc": samples.observed[samples.train], "masc_true": samples.true[samples.train]}
    times, preds, families = {}, {}, {}
    for name, y in labels.items():
        t_fit, (family, velpic) = _timed(lambda: fit_masc_family(X, y, [0.99, *ABLATION], method="fast"))
        families[name] = family[1:]
        t, preds[name] = _timed(family[0].predict, x)
        times[name] = t_fit + t
        if name == "masc":
            preds["velpic"] = velpic.predict(x)
    with shared_moments():
        for name in ("ncm", "knn", "logreg", "lda", "qda"):
            est = make_probe(name, **({"k": 5} if name == "knn" else {}))
            t0 = time.perf_counter()
            est.fit(X, labels["masc"])
            preds[name] = (est.predict_with_fit_rows(x, samples.train) if name == "knn" else est.predict(x))
            times[name] = time.perf_counter() - t0
    times["ablation"] = _timed(lambda: [m.predict(x) for f in families.values() for m in f])[0]
    return times, preds, time.perf_counter() - t_start


def _straight(X, samples: Samples, x: np.ndarray, given: dict) -> dict:
    """probe -> (seconds, predictions) of each straightforward version (`given`: probe ->
    seconds measured before, on the same data, not run again; predictions None)."""
    out = {}
    for probe in ("masc", "masc_true", "velpic", "ncm", "knn", "logreg", "lda", "qda"):
        if probe in given:
            out[probe] = (given[probe], None)
            continue
        y = (samples.true if probe == "masc_true" else samples.observed)[samples.train]
        out[probe] = _timed(STRAIGHT[probe.replace("_true", "")], X, y, x, samples)
        print(f"  published straightforward {probe}: {out[probe][0]:.2f}s", flush=True)
    return out


def _setup_rows(setup: str, x: np.ndarray, samples: Samples, given: dict) -> list[dict]:
    X = x[samples.train]  # the straightforward versions' own copy
    straight = _straight(X, samples, x, given)
    del X
    tracemalloc.start()
    times, preds, t_task = _fast_task(x, samples)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    X, obs = samples.train_rows(x), samples.observed[samples.train]
    times["velpic"], preds["velpic"] = _timed(lambda: VeLPIC.fast(X, obs).predict(x))
    del X
    times["logreg_adam"], preds["logreg_adam"] = _timed(
        lambda: AdamLogisticRegression(random_state=0).fit(samples.train_rows(x), samples.observed[samples.train]).predict(x))
    straight["logreg_adam"] = straight["logreg"]
    rows = []
    for probe in (*PROBES[:5], "logreg", "logreg_adam", "lda", "qda"):
        t_ref, p_ref = straight[probe]
        agree = float("nan") if p_ref is None else float(np.mean(p_ref == preds[probe]))
        rows.append({"setup": setup, "probe": probe, "straight_s": t_ref, "fast_s": times[probe],
                     "ratio": t_ref / times[probe], "agree": agree,
                     "test_acc": float(np.mean((preds[probe] == samples.true)[samples.test]))})
        print(f"  published {setup} {probe}: straightforward {t_ref:.2f}s fast {times[probe]:.2f}s "
              f"agree={agree:.4f} test={rows[-1]['test_acc']:.3f}", flush=True)
    t_ref = sum(straight[p][0] for p in PROBES) + straight["masc"][0] + straight["masc_true"][0]
    slab = x.nbytes
    rows.append({"setup": setup, "probe": "task", "straight_s": t_ref, "fast_s": t_task,
                 "ratio": t_ref / t_task, "ablation_s": times["ablation"], "slab_mib": slab / 2**20,
                 "peak_mib": (slab + peak) / 2**20, "memory_ratio": (slab + peak) / slab})
    print(f"  published {setup} task: straightforward {t_ref:.1f}s (the ablation counted as two "
          f"MASC fits) fast {t_task:.1f}s; peak {(slab + peak) / 2**20:,.0f} MiB over a "
          f"{slab / 2**20:,.0f} MiB slab", flush=True)
    return rows


def run(quick: bool = False, root: str | None = None, threads: int | None = None,
        setups: tuple[str, ...] | None = None, given: dict | None = None) -> list[dict]:
    """One row per (setup, probe), one per setup's whole task, then the bill (in memory:
    `root` unused). `setups` picks some of the sizes; `given`: setup -> probe -> seconds
    of straightforward versions measured before on the same data (not rerun)."""
    threads = threads or os.cpu_count() or 1
    rows = []
    for setup, n_train, n_test, d in QUICK if quick else FULL:
        if setups and setup not in setups:
            continue
        x, samples = task_data(n_train, n_test, d, seed=d)
        with threadpool_limits(threads), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            found = _setup_rows(setup, x, samples, (given or {}).get(setup, {}))
        for row in found:
            row.update(n_train=n_train, n_test=n_test, d=d, threads=threads)
        rows += found
        del x
    return rows + [{"probe": "bill", **b} for b in bill(rows)]


# What limits a line that falls short (README, Performance, has the measurements).
NOTES = {
    "masc": "n_c > d: both versions decompose the d x d covariance side, the floor of both",
    "knn": "the float32 products run at the GEMM rate; scikit-learn's 1.6x as many at about half "
           "that rate bound the ratio near 3",
    "logreg": "the fast fit carries the task's class moments (reused by LDA and QDA); scikit-learn's "
              "lbfgs is at most 100 cheap iterations here",
    "lda": "the shared class moments dominate", "qda": "the per-class triangular solves dominate",
    "masc_true": "as masc",
    "task": "k-NN and QDA, bound by their float32 products, are most of the fast task",
    "memory": "the slab, the two label sets' MASC bases, the shared class moments and QDA's blocks",
}


def summarize(rows: list[dict]) -> list[dict]:
    """Per setup: one line per probe (>= 5, information for ncm and the Adam variant), the
    whole task (>= 8) and its peak memory against the slab (<= 3)."""
    lines = []
    for r in (r for r in rows if r["probe"] != "bill"):
        name = f"published_{r['setup']}_{r['probe']}"
        if r["probe"] == "task":
            lines.append(summary_line(name, r["ratio"], ">=8", "straightforward / pipeline seconds, whole task",
                                      NOTES["task"]))
            lines.append(summary_line(f"published_{r['setup']}_memory", r["memory_ratio"], "<=3",
                                      "(slab + peak traced bytes of the task) / slab float32 bytes",
                                      NOTES["memory"]))
            continue
        ok = not r["agree"] < AGREE[r["probe"]]  # NaN: a given time, predictions not rerun
        note = (f"predictions agree on {r['agree']:.4f} of rows, below {AGREE[r['probe']]}" if not ok
                else NOTES.get(r["probe"], ""))
        lines.append(summary_line(name, r["ratio"], "info" if r["probe"] in INFO else ">=5",
                                  "straightforward / pipeline seconds, fit + predict every row", note, valid=ok))
    return lines


# --------------------------------------------------------------------------------------
# The bill: every published pipeline's analysis, from its task count and the measured tasks
# --------------------------------------------------------------------------------------

PUBLISHED = ("mnist-mlp", "cifar10-mlp", "mnist-cnn", "fashion-cnn", "cifar10-cnn",
             "cifar10-resnet18", "cifar100-alexnet", "tinyimagenet-alexnet")
MASC_PROBES = ("masc", "masc_true", "velpic")


def _cost(probe: str, n_train: int, n_test: int, d: int, K: int) -> float:
    """The leading operation count of a probe's fit + predict (the scale of its time)."""
    m, M = min(n_train / K, d), max(n_train / K, d)
    return {
        "knn": n_train * (n_train / 2 + n_test) * d,
        "logreg": (n_train + n_test) * d * K * 30 + n_train * d * d,
        "lda": n_train * d * d + d**3,
        "qda": n_train * d * d + K * d**3 + (n_train + n_test) * K * d * d,
        "ncm": (n_train + n_test) * d * K,
    }.get(probe, K * (m * m * M + m**3) + (n_train + n_test) * d * K)


def task_seconds(rows: list[dict], n_train: int, n_test: int, d: int, K: int) -> float:
    """Seconds of one task of this shape: the measured task nearest in width, its
    seconds shared among the probes as their measured times are, each share scaled by
    that probe's `_cost` from the measured shape to this one."""
    tasks = [r for r in rows if r["probe"] == "task"]
    near = min(tasks, key=lambda r: abs(np.log(r["d"] / d)))
    probes = [r for r in rows if r.get("setup") == near["setup"] and r["probe"] in PROBES]
    measured = sum(r["fast_s"] for r in probes)
    scaled = sum(r["fast_s"] * _cost(r["probe"], n_train, n_test, d, K)
                 / _cost(r["probe"], r["n_train"], r["n_test"], r["d"], N_CLASSES) for r in probes)
    return near["fast_s"] * scaled / measured


def bill(rows: list[dict], workers: tuple[int, ...] = (16, 64, 256)) -> list[dict]:
    """Per published pipeline: tasks (runs x at most captured epochs x layers, from
    `capture.estimate.estimate_run`), seconds per task on two cores (measured or scaled,
    `task_seconds`), CPU-hours, the memory of its widest task and wall hours on N
    single-threaded SLURM workers (CPU-hours / N: a task on one core takes about twice
    its two-core time)."""
    from capture.estimate import estimate_run
    from stores import load_pipeline

    memory = max(r["memory_ratio"] for r in rows if r["probe"] == "task")
    out = []
    for name in PUBLISHED:
        pipeline = load_pipeline(name, str(os.path.join(os.path.dirname(__file__), "..", "pipelines.yaml")))
        runs = pipeline.runs()
        est = estimate_run(runs[0])
        K = {"cifar100-alexnet": 100, "tinyimagenet-alexnet": 200}.get(name, 10)
        per_layer = [task_seconds(rows, est.n_train, est.n_test, layer.units, K) for layer in est.layers]
        tasks = len(runs) * est.captured_epochs * len(est.layers)
        cpu_h = len(runs) * est.captured_epochs * sum(per_layer) * 2 / 3600
        widest = max(layer.units for layer in est.layers)
        out.append({"pipeline": name, "runs": len(runs), "epochs": est.captured_epochs,
                    "layers": len(est.layers), "tasks": tasks,
                    "mean_task_s": sum(per_layer) / len(per_layer), "cpu_hours": cpu_h,
                    "worker_gib": memory * (est.n_train + est.n_test) * widest * 4 / 2**30,
                    **{f"wall_h_{n}": cpu_h / n for n in workers}})
        print(f"  bill {name}: {tasks} tasks x {out[-1]['mean_task_s']:.1f} s = {cpu_h:,.0f} CPU-hours; "
              f"{out[-1]['worker_gib']:.1f} GiB per worker", flush=True)
    return out


if __name__ == "__main__":  # one setup, some straightforward times given: see README, Performance
    import argparse
    import csv
    import sys

    parser = argparse.ArgumentParser(description="published-scale tasks, probe by probe")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--setup", action="append", help="mnist_mlp or cifar10_cnn (default: both)")
    parser.add_argument("--given", default="", help="SETUP:PROBE=SECONDS,... measured before")
    parser.add_argument("--csv", default=None)
    args = parser.parse_args()
    given: dict = {}
    for item in filter(None, args.given.split(",")):
        key, seconds = item.split("=")
        setup, probe = key.split(":")
        given.setdefault(setup, {})[probe] = float(seconds)
    found = run(quick=args.quick, setups=tuple(args.setup or ()), given=given)
    for line in summarize(found):
        print(f"{line['name']} ratio={line['ratio']:.2f} target={line['target']}"
              f" {'INFO' if line['passed'] is None else 'PASS' if line['passed'] else 'FAIL'}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            fields = sorted({k for r in found for k in r})
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(found)
    sys.exit(0)
