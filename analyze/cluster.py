"""The Dask client: a LocalCluster by default, an existing scheduler, or SLURM jobs
started through dask-jobqueue (the optional extra `latentgen[slurm]`)."""

from __future__ import annotations

import dataclasses
import logging
import os

from stores import ConfigError
from stores.config import ClusterConfig

log = logging.getLogger(__name__)

# How long to wait for an existing scheduler (`--scheduler`): one that runs answers in
# well under a second; distributed's own default (30 s, retried) hides a wrong address.
CONNECT_TIMEOUT_S = 10

# One thread per worker process, and BLAS capped to one thread inside it, so that
# N workers use N cores instead of fighting over them.
BLAS_ENV = {name: "1" for name in (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
)}


def make_client(workers: int | None = None, scheduler: str | None = None,
                cluster: ClusterConfig = ClusterConfig()):
    """A `distributed.Client` on `scheduler`, else on the cluster `cluster` describes:
    a LocalCluster of `workers` single-threaded processes, or `workers` SLURM jobs."""
    from distributed import Client, LocalCluster

    if workers is not None:
        cluster = dataclasses.replace(cluster, workers=workers)

    # distributed sets INFO on its own loggers; its chatter is not ours to show.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("distributed"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if scheduler:
        client = _connect(Client, scheduler)
    elif cluster.kind == "slurm":
        client = Client(slurm_cluster(cluster))
    else:
        check_workers(cluster)
        client = Client(LocalCluster(
            n_workers=cluster.workers or local_cores(), threads_per_worker=1, processes=True,
            env=BLAS_ENV, dashboard_address=":0", silence_logs=logging.ERROR,
        ))
    log.info("dask dashboard: %s", client.dashboard_link)
    return client


def local_cores() -> int:
    """The cores this process may run on (a job's allocation, not the whole node)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def check_workers(cluster: ClusterConfig) -> None:
    """A LocalCluster runs at most one single-threaded worker per core: more only contend
    for the cores (and 64 of them took minutes to fail on two)."""
    cores = local_cores()
    if cluster.kind == "local" and cluster.workers is not None and cluster.workers > cores:
        raise ConfigError(f"--workers (or cluster.workers): expected 1 to {cores} local worker "
                          f"processes (the cores here), got {cluster.workers}; for more, use "
                          "--cluster slurm or --scheduler")


def _connect(client_cls, scheduler: str):
    try:
        return client_cls(scheduler, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"--scheduler {scheduler}: no Dask scheduler answered within "
                          f"{CONNECT_TIMEOUT_S} s ({reason}): start one (`dask scheduler`) or "
                          "leave out --scheduler to start a local cluster") from None


def slurm_cluster(cluster: ClusterConfig, submit: bool = True):
    """A dask-jobqueue SLURMCluster: each job runs `cores` single-threaded worker
    processes; `workers` jobs are submitted at once (default 1) unless `submit` is off."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise ConfigError("cluster: slurm needs dask-jobqueue: pip install 'latentgen[slurm]'") from None
    jobs = SLURMCluster(
        queue=cluster.queue, account=cluster.account, cores=cluster.cores, processes=cluster.cores,
        memory=cluster.memory, walltime=cluster.walltime,
        job_extra_directives=list(cluster.job_extra_directives),
        job_script_prologue=[f"export {name}={value}" for name, value in BLAS_ENV.items()],
        scheduler_options={"dashboard_address": ":0"},
    )
    log.info("SLURM job script:\n%s", jobs.job_script())
    if submit:
        jobs.scale(jobs=cluster.workers or 1)
    return jobs
