"""The Dask client: a LocalCluster by default, or an existing scheduler."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

# One thread per worker process, and BLAS capped to one thread inside it, so that
# N workers use N cores instead of fighting over them.
BLAS_ENV = {name: "1" for name in (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
)}


def make_client(workers: int | None = None, scheduler: str | None = None):
    """A `distributed.Client` on `scheduler`, or on a new LocalCluster of `workers` processes."""
    from distributed import Client, LocalCluster

    # distributed sets INFO on its own loggers; its chatter is not ours to show.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("distributed"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(
            n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
            env=BLAS_ENV, dashboard_address=":0", silence_logs=logging.ERROR,
        )
        client = Client(cluster)
    log.info("dask dashboard: %s", client.dashboard_link)
    return client
