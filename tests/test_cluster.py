"""Analysis on clusters: a real dask.distributed scheduler and workers started as
separate processes, and the SLURM job that `--cluster slurm` would submit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
import xarray as xr
import yaml

from analyze.__main__ import main as analyze_main
from analyze.cluster import BLAS_ENV, slurm_cluster
from stores import load_pipeline
from stores.config import parse_pipeline
from tests.conftest import REPO, fresh_tiny_root, tiny_pipeline_yaml


def _start(args: list[str], log) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                            env={**os.environ, **BLAS_ENV})


def _wait_for(pattern: str, path, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text())
        if found:
            return found.group(1)
        time.sleep(0.2)
    raise TimeoutError(f"{pattern!r} not in {path}:\n{path.read_text()}")


@pytest.mark.slow
def test_analysis_on_a_separate_scheduler_and_workers(tiny_root, tmp_path, capsys):
    """`analyze --scheduler tcp://...` against `dask scheduler` + 2 `dask worker`
    processes gives exactly what the eager path gives on copies of the same stores. The
    scheduler and workers are real processes; the two `analyze` command lines run in
    this process (their client is what differs, and the tasks run on the workers)."""
    raw = yaml.safe_load(tiny_root[0].read_text())
    raw["quickstart"]["analysis"]["probes"] = ["masc", "velpic", "ncm"]  # not part of a run's identity
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(yaml.safe_dump(raw))
    root = fresh_tiny_root(tiny_root, tmp_path / "runs")
    copy = fresh_tiny_root(tiny_root, tmp_path / "eager-runs")
    common = ["quickstart", "--pipelines", str(pipelines), "--quiet"]
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("scheduler", "worker0", "worker1")}
    procs = [_start([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                     "--port", "0", "--dashboard-address", ":0"], logs["scheduler"])]
    try:
        address = _wait_for(r"Scheduler at:\s+(tcp://[\d.]+:\d+)", tmp_path / "scheduler.log")
        for i in range(2):
            procs.append(_start([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                 "--nthreads", "1", "--nworkers", "1", "--no-dashboard"],
                                logs[f"worker{i}"]))
        for i in range(2):
            _wait_for(r"(Registered to)", tmp_path / f"worker{i}.log")
        code = analyze_main([*common, "--root", str(root), "--scheduler", address])
        assert code == 0, capsys.readouterr().err
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    worker_logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert all("Registered to" in text for text in worker_logs)
    assert analyze_main([*common, "--root", str(copy), "--eager"]) == 0, capsys.readouterr().err
    for name in ("corruption=0.0,seed=0.zarr", "corruption=0.6,seed=0.zarr"):
        got, want = (xr.open_datatree(str(r / "quickstart" / name), engine="zarr")["analysis/dynamics"]
                     for r in (root, copy))
        # every task computed: a score is missing only where it has no rows (the clean
        # run has no flipped training row)
        has_rows = got["accuracy"]["score_samples"] > 0
        assert (got["accuracy"].notnull() == has_rows).all()
        # Exact: the same task code on the same stored inputs, one BLAS thread on either
        # side (every task runs under threadpool_limits(1); the workers also get BLAS_ENV).
        xr.testing.assert_equal(got.to_dataset(), want.to_dataset())


def test_slurm_job_script_carries_the_options(tmp_path):
    """The pipeline's `cluster` block becomes the #SBATCH lines of the worker jobs (the
    job is only written, not submitted: there is no SLURM here)."""
    pytest.importorskip("dask_jobqueue")  # in the dev extra, so CI runs this
    raw = load_pipeline("quickstart", tiny_pipeline_yaml(tmp_path / "p.yaml")).base
    pipeline = parse_pipeline("q", {**raw, "cluster": {
        "kind": "slurm", "queue": "gpu", "cores": 6, "memory": "24GB", "walltime": "02:30:00",
        "job_extra_directives": ["--gres=gpu:1"], "account": "lab"}})
    jobs = slurm_cluster(pipeline.cluster, submit=False)
    try:
        script = jobs.job_script()
    finally:
        jobs.close()
    for line in ("#SBATCH -p gpu", "#SBATCH -A lab", "#SBATCH -t 02:30:00", "#SBATCH --gres=gpu:1",
                 "export OMP_NUM_THREADS=1", "--nworkers 6", "--nthreads 1"):
        assert line in script, (line, script)
    assert re.search(r"#SBATCH --mem=2[23]G", script), script
