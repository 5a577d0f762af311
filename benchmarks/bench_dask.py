"""Dask scaling: the analysis grid of a multi-run pipeline on 2 workers against 1.

The stores of a four-run quickstart-derived pipeline are captured first (not timed).
For each worker count a LocalCluster is started the way `python -m analyze` starts it
(one thread per worker process, BLAS on one thread) and warmed up (imports) before the
clock starts; then `grid.run_dask` runs every (run, epoch, layer) task of the grid:
tasks carry store paths, read their own slab, and send back small results. Cluster
start-up is not timed. The worker counts alternate; the ratio is the median of t1/t2.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from analyze import grid
from analyze.pipeline import settings_for, store_paths
from capture.run import capture_run
from stores import load_pipeline

from common import quickstart, summary_line, write_pipelines


def _pipeline(work: Path, quick: bool):
    raw = quickstart(
        sweep={"corruption": [0.0, 0.6], "seed": [0, 1]},
        train={"max_epochs": 10, "stop_train_acc": None},
        capture={"schedule": {"epochs": [0, 2, 4, 6, 8, 10] if not quick else [0, 5, 10]}},
    )
    return load_pipeline("quickstart", write_pipelines(work / "pipelines.yaml", {"quickstart": raw}))


def _client(workers: int):
    from distributed import Client, LocalCluster

    from analyze.cluster import BLAS_ENV

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, env=BLAS_ENV,
                           dashboard_address=":0", silence_logs=logging.ERROR)
    client = Client(cluster)
    # Warm-up, untimed: every worker imports the analysis modules once (and keeps
    # logistic regression's convergence warnings off the benchmark's output).
    client.run(lambda: (__import__("analyze.tasks"), __import__("warnings").simplefilter("ignore")))
    return client


def run(quick: bool = False, root: str | None = None) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="dask-", dir=root))
    rows = []
    try:
        pipeline = _pipeline(work, quick)
        runs_root = str(work / "runs")
        for config in pipeline.runs():
            capture_run(config, runs_root, progress=False)
        paths = store_paths(pipeline, runs_root)
        settings = settings_for(pipeline)
        tasks = grid.list_tasks(paths)
        for trial in range(1 if quick else 3):
            t = {}
            for workers in (1, 2) if trial % 2 == 0 else (2, 1):
                with _client(workers) as client:
                    t0 = time.perf_counter()
                    grid.run_dask(tasks, settings, client)
                    t[workers] = time.perf_counter() - t0
                    client.cluster.close()
            rows.append({"trial": trial, "tasks": len(tasks), "runs": len(paths),
                         "t1_s": t[1], "t2_s": t[2], "ratio": t[1] / t[2]})
            print(f"  dask trial {trial}: {len(tasks)} tasks, 1 worker {t[1]:.1f}s, "
                  f"2 workers {t[2]:.1f}s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    ratio = float(np.median([r["ratio"] for r in rows]))
    return [summary_line(
        "dask_scaling", ratio, ">=1.7",
        f"grid time 1 worker / 2 workers, {rows[0]['tasks']} tasks over {rows[0]['runs']} runs "
        f"(median of {len(rows)})",
        note="two single-threaded workers, the scheduler and the client share the two cores "
             "with whatever else runs on the machine; see the per-trial times in the CSV")]
