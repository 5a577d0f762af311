"""python -m analyze PIPELINE [--pipelines FILE] [--root DIR] [--workers N] [--scheduler ADDR]
python -m analyze --stores PATH [PATH ...] [--out DIR]   (stores without a pipeline)"""

from __future__ import annotations

import argparse
import errno
import logging
import shlex
import sys
import time

from stores import ConfigError, StoreError, load_pipeline, location
from stores.config import CLUSTER_KINDS, ClusterConfig, check_option, replace_checked, validators

from .cluster import make_client
from .pipeline import analyse, analyse_stores

# What a failed write says (a full disk or quota, a read-only or forbidden folder).
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def cluster_config(pipeline, args) -> ClusterConfig:
    """The pipeline's `cluster` block (the defaults without a pipeline) with the command
    line's options on top."""
    base = ClusterConfig() if pipeline is None else pipeline.cluster
    given = {name: getattr(args, arg) for name, arg in (
        ("kind", "cluster"), ("workers", "workers"), ("queue", "queue"), ("account", "account"),
        ("cores", "cores"), ("memory", "memory"), ("walltime", "walltime"),
        ("job_extra_directives", "job_extra_directives"))}
    return replace_checked(base, "command line", **{k: v for k, v in given.items() if v is not None})


def parser() -> argparse.ArgumentParser:
    """The command line's options."""
    p = argparse.ArgumentParser(
        prog="python -m analyze",
        description="Fit probes over every (run, epoch, layer) of a pipeline's stores, "
                    "compute the last-layer edit and write report.md.",
    )
    p.add_argument("pipeline", nargs="?", help="a pipeline name from the pipelines file")
    p.add_argument("--stores", nargs="+", metavar="PATH",
                   help="analyse these run stores instead of a pipeline's (a recorder's; "
                        "default analysis settings)")
    p.add_argument("--out", metavar="DIR",
                   help="with --stores: where report.md and analysis.csv go (default: the "
                        "first store's folder)")
    p.add_argument("--pipelines", default="pipelines.yaml", help="pipelines file (YAML)")
    p.add_argument("--root", default="runs", help="where the stores are: ROOT/PIPELINE/")
    p.add_argument("--workers", type=int,
                   help="local worker processes (default: cores), or SLURM jobs (default 1)")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler (tcp://host:8786)")
    p.add_argument("--cluster", choices=CLUSTER_KINDS,
                   help="start a LocalCluster or SLURM jobs through dask-jobqueue "
                        "(default: the pipeline's `cluster.kind`, else local)")
    slurm = p.add_argument_group("SLURM (--cluster slurm; override the pipeline's `cluster` block)")
    slurm.add_argument("--queue", help="partition")
    slurm.add_argument("--account", help="account to charge")
    slurm.add_argument("--cores", type=int, help="cores per job (one worker process each)")
    slurm.add_argument("--memory", help="memory per job, e.g. 32GB")
    slurm.add_argument("--walltime", help="per job, e.g. 02:00:00")
    slurm.add_argument("--job-extra", action="append", dest="job_extra_directives",
                       help="an extra #SBATCH directive, e.g. --gres=gpu:1 (repeatable)")
    p.add_argument("--device", help="run MASC and VeLPIC through torch on this device "
                   "(cuda, cuda:N, cpu; overrides analysis.device)")
    p.add_argument("--eager", action="store_true", help="no Dask: run tasks in this process")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def run(args: argparse.Namespace) -> str:
    """Analyse the pipeline as `args` say; the path of its report."""
    check_option("--workers", validators.workers(), args.workers)  # worded as cluster.workers
    check_option("--device", validators.device(), args.device)  # and analysis.device are
    if (args.pipeline is None) == (args.stores is None):
        raise ConfigError("give a PIPELINE or --stores PATH..., not both" if args.stores
                          else "give a PIPELINE (from --pipelines) or --stores PATH...")
    if args.out is not None and args.stores is None:
        raise ConfigError("--out goes with --stores (a pipeline's report goes to ROOT/PIPELINE)")
    pipeline = None if args.stores else load_pipeline(args.pipeline, args.pipelines)
    cluster = cluster_config(pipeline, args)
    client = None if args.eager else make_client(scheduler=args.scheduler, cluster=cluster)
    try:
        if pipeline is None:
            return analyse_stores(args.stores, args.out, client, progress=not args.quiet,
                                  device=args.device)
        return analyse(pipeline, args.root, client, progress=not args.quiet, device=args.device)
    finally:
        if client is not None:
            client.close()
            if not args.scheduler:
                client.cluster.close()  # a cluster we started (local processes or SLURM jobs)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    try:
        path = run(args)
    except (ConfigError, StoreError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a store made read-only meanwhile
        where = err.filename or (args.stores[0] if args.stores else location.join(args.root, args.pipeline))
        verb = "write" if err.errno in WRITE_ERRNOS else "use"
        print(f"error: cannot {verb} {where} ({location.os_reason(err)}): the stores' "
              "committed epochs are unchanged; free space (or make it writable) and run the same "
              "command again", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        command = shlex.join(["python", "-m", "analyze", *(sys.argv[1:] if argv is None else argv)])
        print(f"interrupted: the stores' committed epochs are unchanged, and results already "
              f"written stay (the rest is computed again)\nresume with: {command}", file=sys.stderr)
        return 130
    print(f"{path}  ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
