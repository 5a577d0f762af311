"""`python -m stores ls DIR`, `show STORE`, `validate STORE` and `repair STORE`."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from . import location, schema
from .catalog import list_runs, summary
from .errors import StoreError
from .groups import open_group
from .reader import layers, metrics, open_run, run_attrs
from .repair import repair
from .slabs import committed_slots
from .validate import validate


def cmd_ls(args: argparse.Namespace) -> None:
    runs = list_runs(args.dir)
    if not runs:
        print(f"no run stores under {args.dir}")
        return
    print(f"{'store':60s} {'status':9s} {'epochs':>9s} {'last':>5s} {'MiB':>8s}")  # epochs: committed
    damaged = []
    for path in runs:
        try:
            s = summary(path)
        except StoreError as err:  # one broken store does not hide the others
            print(f"{path:60s} {'damaged':9s} {'?':>9s} {'?':>5s} {'?':>8s}")
            damaged.append(str(err))
            continue
        epochs = str(s["committed"])  # the stop epoch may add one to the schedule
        last = "-" if s["last_epoch"] is None else str(s["last_epoch"])
        print(f"{s['path']:60s} {s['status']:9s} {epochs:>9s} {last:>5s} {s['size_mib']:8.1f}")
    if damaged:
        raise StoreError(damaged[0] + (f" (and {len(damaged) - 1} more damaged store(s))"
                                       if len(damaged) > 1 else ""))


def cmd_show(args: argparse.Namespace) -> None:
    path = args.store
    attrs = run_attrs(path)
    slots, epochs = committed_slots(path)
    print(f"store      {path}")
    for key in ("schema_version", "pipeline", "run_name", "status", "config_hash", "created"):
        if key in attrs:  # a recorder's store has no pipeline, run name or config
            print(f"{key:10s} {attrs[key]}")
    if "params" in attrs:
        print(f"params     {json.dumps(attrs['params'])}")
    print(f"epochs     {len(slots)} committed of {len(attrs.get('schedule', []))} scheduled: "
          f"{', '.join(map(str, epochs))}")
    group = open_group(path, checked=False)
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
    table = metrics(open_run(path)).to_dataframe().dropna(axis="columns", how="all")  # val_acc of runs without a val split
    if len(table):
        print("metrics")
        print(table.to_string(float_format=lambda v: f"{v:.4f}"))


def cmd_validate(args: argparse.Namespace) -> int:
    report = validate(args.store)
    for problem in report.problems:
        print(problem)
    for note in report.notes:
        print(f"note: {note}")
    if report.ok:
        version = run_attrs(args.store).get("schema_version")
        print(f"{args.store}: ok (schema_version {version}, {report.n_arrays} arrays, "
              f"{report.n_chunks} chunks checked, {int(report.committed.sum())} epochs committed)")
        return 0
    slots = sorted({p.slot for p in report.problems if p.slot is not None})
    where = f" in epoch slot(s) {', '.join(map(str, slots))}" if slots else ""
    print(f"error: {args.store}: {len(report.problems)} problem(s){where}; "
          f"`python -m stores repair {args.store}` un-commits damaged epochs so that resuming "
          "the capture rewrites them, rebuilds lost metadata and commit flags, and removes "
          "broken analysis results", file=sys.stderr)
    return 1


def cmd_repair(args: argparse.Namespace) -> int:
    report, result = repair(args.store)
    if result.temporaries:
        print(f"removed {result.temporaries} leftover temporary file(s) of interrupted writes")
    if report.ok:
        print(f"{args.store}: nothing {'else ' if result.temporaries else ''}to repair")
        return 0
    for name in result.rebuilt:
        print(f"rebuilt the metadata of {name} from {result.sources.get(name, 'the schema')}")
    if result.marked_running:
        print(f"marked {args.store} running (so that resuming the capture completes it)")
    for name in result.removed:
        if name.split("/")[0] == schema.STATE:
            print(f"removed {name} (unreadable training state; a resume uses the other copy "
                  "or retrains)")
        elif name == schema.ANALYSIS:
            print(f"removed {name} (it covered the epochs that are no longer committed; "
                  "`python -m analyze` computes it again)")
        else:
            print(f"removed {name} (broken; `python -m analyze` computes it again)")
    for slot, epoch in result.uncommitted:
        print(f"un-committed epoch {epoch} (slot {slot})")
    for slot, epoch in result.recommitted:
        print(f"committed epoch {epoch} (slot {slot}) again (every chunk of it present and valid)")
    for name in result.rewritten:
        print(f"wrote {name} again (a coordinate copy, from what it copies)")
    for name in result.invalidated:
        print(f"marked {name} invalid (training state; a resume uses the other copy or retrains)")
    for problem in result.unrepairable:
        print(f"cannot repair: {problem}")
    if (result.uncommitted or result.marked_running) and "pipeline" not in run_attrs(args.store):
        print("record them again: open the recorder on this store (capture.Recorder; with "
              "`rec.state(...)` it resumes from the first un-committed epoch)")
    elif result.uncommitted or result.marked_running:
        attrs = run_attrs(args.store)
        root = location.parent(location.parent(location.normalize(args.store)))
        command = ["python", "-m", "capture", str(attrs.get("pipeline")), "--run",
                   str(attrs.get("run_name")), "--root", str(root)]
        print(f"resume the capture to rewrite them: {shlex.join(command)} (with the same --pipelines file)")
    if result.unrepairable:
        print(f"error: {args.store}: {len(result.unrepairable)} problem(s) outside the epochs cannot "
              "be repaired by un-committing; capture the run again with --overwrite", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stores", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("ls", help="list the run stores under a directory")
    ls.add_argument("dir")
    ls.set_defaults(func=cmd_ls)
    show = sub.add_parser("show", help="describe one run store")
    show.add_argument("store")
    show.set_defaults(func=cmd_show)
    check = sub.add_parser("validate", help="check a store's layout and every chunk's checksum")
    check.add_argument("store")
    check.set_defaults(func=cmd_validate)
    fix = sub.add_parser("repair", help="un-commit the epochs of a store that have damaged chunks")
    fix.add_argument("store")
    fix.set_defaults(func=cmd_repair)
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except StoreError as err:
        print(f"error: {err}", file=sys.stderr)
    except ValueError as err:  # a damaged chunk read by `show`
        where = getattr(args, "store", None) or getattr(args, "dir", "")
        print(f"error: {where}: unreadable data ({str(err).splitlines()[0]}); "
              f"run `python -m stores validate {where}`", file=sys.stderr)
    except OSError as err:  # e.g. a full disk or a read-only folder during repair
        where = err.filename or getattr(args, "store", None) or getattr(args, "dir", "")
        advice = (" (repair orders its writes: free space or make it writable, then run it again)"
                  if args.func is cmd_repair else "")
        print(f"error: {where}: {location.os_reason(err)}{advice}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
