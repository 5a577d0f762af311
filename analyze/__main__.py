"""python -m analyze PIPELINE [--pipelines FILE] [--root DIR] [--workers N] [--scheduler ADDR]"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from stores import ConfigError, StoreError, load_pipeline

from .cluster import make_client
from .pipeline import analyse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analyze",
        description="Fit probes over every (run, epoch, layer) of a pipeline's stores, "
                    "compute the last-layer edit and write report.md.",
    )
    parser.add_argument("pipeline", help="a pipeline name from the pipelines file")
    parser.add_argument("--pipelines", default="pipelines.yaml", help="pipelines file (YAML)")
    parser.add_argument("--root", default="runs", help="where the stores are: ROOT/PIPELINE/")
    parser.add_argument("--workers", type=int, help="local Dask worker processes (default: cores)")
    parser.add_argument("--scheduler", help="address of an existing Dask scheduler")
    parser.add_argument("--eager", action="store_true", help="no Dask: run tasks in this process")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.workers is not None and args.workers < 1:
        print(f"error: --workers: expected an integer >= 1, got {args.workers}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        pipeline = load_pipeline(args.pipeline, args.pipelines)
        client = None if args.eager else make_client(args.workers, args.scheduler)
        try:
            path = analyse(pipeline, args.root, client, progress=not args.quiet)
        finally:
            if client is not None:
                client.close()
                if not args.scheduler:
                    client.cluster.close()
    except (ConfigError, StoreError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{path}  ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
