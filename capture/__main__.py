"""python -m capture PIPELINE [--pipelines FILE] [--root DIR] [--run KEY=VALUE,...]"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from stores import ConfigError, StoreError, load_pipeline
from stores.config import parse_run_overrides

from .background import WriterError
from .convnets import output_shapes
from .data import input_shape
from .models import build_model
from .run import capture_run


def list_layers(config) -> None:
    """Capture points by module path, with each one's output shape for one sample."""
    in_shape, n_classes = input_shape(config.data)
    model = build_model(config.model, in_shape, n_classes)
    for name, shape in output_shapes(model, in_shape).items():
        mark = "  (penultimate)" if name == model.penultimate else ""
        print(f"{name:24s} {'x'.join(map(str, shape))}{mark}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m capture",
        description="Train the runs of a pipeline and capture their epochs into run stores.",
    )
    parser.add_argument("pipeline", help="a pipeline name from the pipelines file")
    parser.add_argument("--pipelines", default="pipelines.yaml", help="pipelines file (YAML)")
    parser.add_argument("--root", default="runs", help="where stores go: ROOT/PIPELINE/RUN.zarr")
    parser.add_argument("--run", help="only this run, by its swept values: corruption=0.6,seed=0")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    parser.add_argument("--overwrite", action="store_true", help="replace existing stores")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--list-layers", action="store_true",
                        help="print the model's capture points and their output shapes, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        pipeline = load_pipeline(args.pipeline, args.pipelines)
        runs = [pipeline.run(parse_run_overrides(args.run))] if args.run else pipeline.runs()
        if args.list_layers:
            list_layers(runs[0])
            return 0
        for config in runs:
            start = time.perf_counter()
            path = capture_run(config, args.root, overwrite=args.overwrite, device=args.device,
                               progress=not args.quiet)
            print(f"{path}  ({time.perf_counter() - start:.1f} s)")
    except (ConfigError, StoreError, WriterError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
