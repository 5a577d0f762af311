"""`python -m stores ls DIR` and `python -m stores show STORE`."""

from __future__ import annotations

import argparse
import json
import sys

import zarr

from . import schema
from .catalog import list_runs, summary
from .reader import committed_slots, layers, metrics, open_run, run_attrs
from .writer import StoreError


def cmd_ls(args: argparse.Namespace) -> None:
    runs = list_runs(args.dir)
    if not runs:
        print(f"no run stores under {args.dir}")
        return
    print(f"{'store':60s} {'status':9s} {'epochs':>9s} {'last':>5s} {'MiB':>8s}")  # epochs: committed
    for path in runs:
        s = summary(path)
        epochs = str(s["committed"])  # the stop epoch may add one to the schedule
        last = "-" if s["last_epoch"] is None else str(s["last_epoch"])
        print(f"{s['path']:60s} {s['status']:9s} {epochs:>9s} {last:>5s} {s['size_mib']:8.1f}")


def cmd_show(args: argparse.Namespace) -> None:
    path = args.store
    attrs = run_attrs(path)
    slots, epochs = committed_slots(path)
    print(f"store      {path}")
    for key in ("pipeline", "run_name", "status", "config_hash", "created"):
        print(f"{key:10s} {attrs.get(key)}")
    print(f"params     {json.dumps(attrs.get('params', {}))}")
    print(f"epochs     {len(slots)} committed of {len(attrs.get('schedule', []))} scheduled: "
          f"{', '.join(map(str, epochs))}")
    group = zarr.open_group(path, mode="r")
    print("activations")
    for name in layers(path):
        node = group[f"{schema.ACTIVATIONS}/{name}"]
        a = node[schema.VALUES]
        mark = "  (penultimate)" if node.attrs.get("penultimate") else ""
        print(f"  {name:20s} {str(a.shape):22s} {a.dtype!s:8s} chunks {a.chunks}{mark}")
    print("weights")
    for name, node in group[schema.WEIGHTS].groups():
        a = node[schema.VALUES]
        print(f"  {name:20s} {str(a.shape):22s} {a.metadata.dimension_names}")
    if schema.ANALYSIS in group:
        print("analysis   " + ", ".join(name for name, _ in group[schema.ANALYSIS].groups()))
    table = metrics(open_run(path)).to_dataframe()
    if len(table):
        print("metrics")
        print(table.to_string(float_format=lambda v: f"{v:.4f}"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stores", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("ls", help="list the run stores under a directory")
    ls.add_argument("dir")
    ls.set_defaults(func=cmd_ls)
    show = sub.add_parser("show", help="describe one run store")
    show.add_argument("store")
    show.set_defaults(func=cmd_show)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except StoreError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
