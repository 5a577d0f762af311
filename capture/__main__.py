"""python -m capture PIPELINE [--pipelines FILE] [--root DIR] [--run KEY=VALUE,... | --index I | --list]"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time

from stores import ConfigError, StoreError, load_pipeline, location

from .background import WriterError
from .estimate import GPU_FLOPS, STEP_OVERHEAD_S, estimate_run
from .run import capture_run, committed_text


def list_layers(config, n_runs: int = 1) -> None:
    """Every module's output shape for one sample, the capture points with their stored
    widths, and what the run will cost (bytes per captured epoch, compute)."""
    p = estimate_run(config)
    captured = {layer.name: layer for layer in p.layers}
    print(f"{'module':24s} {'output':14s} captured")
    for name, shape in p.shapes.items():
        layer = captured.get(name)
        note = f"{layer.reduction} -> {layer.units} units" if layer else ""
        mark = "  (penultimate)" if layer and layer.penultimate else ""
        print(f"{name:24s} {'x'.join(map(str, shape)):14s} {note}{mark}")
    mib = 2**20
    print(f"\nprobe set: {p.n_train} train + {p.n_test} test samples, "
          f"{sum(l.units for l in p.layers)} stored units ({config.capture.dtype})")
    print(f"per captured epoch: {p.activation_bytes / mib:,.1f} MiB activations + "
          f"{p.weight_bytes / mib:,.1f} MiB weights = {p.bytes_per_epoch / mib:,.1f} MiB")
    per_run = p.captured_epochs * p.bytes_per_epoch / 2**30
    print(f"at most {p.captured_epochs} captured epochs (max_epochs {p.max_epochs}): "
          f"{per_run:,.1f} GiB per run, {n_runs * per_run:,.1f} GiB for {n_runs} run{'s' * (n_runs > 1)}")
    print(f"compute: {p.forward_flops / 1e6:,.2f} MFLOP per sample forward; at most "
          f"{p.train_flops / 1e15:,.2f} PFLOP per run; estimated "
          f"{p.gpu_hours(config.train.batch_size):.2f} GPU hours per run "
          f"(at {GPU_FLOPS / 1e12:.0f} TFLOP/s + {STEP_OVERHEAD_S * 1e3:.0f} ms per step)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m capture",
        description="Train the runs of a pipeline and capture their epochs into run stores.",
    )
    parser.add_argument("pipeline", help="a pipeline name from the pipelines file")
    parser.add_argument("--pipelines", default="pipelines.yaml", help="pipelines file (YAML)")
    parser.add_argument("--root", default="runs", help="where stores go: ROOT/PIPELINE/RUN.zarr")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--run", help="only this run of the sweep, by its name or swept values: "
                       "corruption=0.6,seed=0 (a value outside the sweep is refused)")
    which.add_argument("--index", type=int,
                       help="only the I-th run (from 0) in `--list` order: a SLURM array task")
    which.add_argument("--list", action="store_true", help="print the runs, one a line, then exit")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    parser.add_argument("--overwrite", action="store_true", help="replace existing stores")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--list-layers", action="store_true",
                        help="print the model's capture points and their output shapes, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    current = None  # the run being captured, for a Ctrl-C's message
    try:
        pipeline = load_pipeline(args.pipeline, args.pipelines)
        runs = [pipeline.select(args.run)] if args.run is not None else pipeline.runs()
        if args.list:
            print("\n".join(f"{i}\t{config.name}" for i, config in enumerate(runs)))
            return 0
        if args.index is not None:
            if not 0 <= args.index < len(runs):
                raise ConfigError(f"--index: expected 0 to {len(runs) - 1} "
                                  f"({pipeline.name} has {len(runs)} runs), got {args.index}")
            runs = [runs[args.index]]
        if args.list_layers:
            list_layers(runs[0], len(runs))
            return 0
        for config in runs:
            start, current = time.perf_counter(), config
            path = capture_run(config, args.root, overwrite=args.overwrite, device=args.device,
                               progress=not args.quiet)
            print(f"{path}  ({time.perf_counter() - start:.1f} s)")
    except (ConfigError, StoreError, WriterError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a write outside a store (its folder, a lock file)
        print(f"error: cannot write {err.filename or args.root} "
              f"({location.os_reason(err)}): free space or make --root writable, "
              "then run the same command again", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted(args, current, sys.argv[1:] if argv is None else argv), file=sys.stderr)
        return 130
    return 0


def interrupted(args: argparse.Namespace, config, argv: list[str]) -> str:
    """Two lines after Ctrl-C: where the store stands, and the command that resumes it
    (the same one, less --overwrite: complete runs are skipped, this one goes on)."""
    if config is None:
        return "interrupted before any capture started: no store was written"
    path = config.store_path(args.root)
    command = shlex.join(["python", "-m", "capture", *(a for a in argv if a != "--overwrite")])
    where = (f"{path} keeps its {committed_text(path)} (of {len(config.schedule)} scheduled)"
             if location.is_store(path) else f"{path} was not created yet")
    return f"interrupted: {where}\nresume with: {command}"


if __name__ == "__main__":
    sys.exit(main())
