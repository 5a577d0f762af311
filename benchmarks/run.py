"""latentgen benchmarks: each a ratio against a baseline measured side by side, in one run.

    python benchmarks/run.py [--quick] [--only probes,writer,...] [--csv PATH] [--root DIR]

Prints one line per benchmark, `NAME ratio=X target=Y PASS|FAIL` (or `INFO` for a line
without a target, and a note where one falls short), and writes every measured number
to a CSV (benchmarks/results.csv by default). `--quick` runs a smaller version of each
in a few minutes; the full run is the one that counts. Scratch data go under `--root`
(default: the system's temporary folder), which is also the disk the writer is timed on.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the bench_* modules beside this file
sys.path.insert(1, str(HERE.parent))  # latentgen itself, when run from a plain checkout

BENCHMARKS = ("probes", "writer", "capture", "dask", "memory", "published")


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def _line(summary: dict) -> str:
    status = "INFO" if summary["passed"] is None else "PASS" if summary["passed"] else "FAIL"
    text = f"{summary['name']} ratio={summary['ratio']:.2f} target={summary['target']} {status}"
    if summary.get("note"):
        text += f"  # {summary['note']}"
    return text


def _run_one(name: str, quick: bool, root: str) -> tuple[list[dict], list[dict]]:
    module = __import__(f"bench_{name}")
    rows = module.run(quick=quick, root=root)
    return rows, module.summarize(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, a few minutes")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--csv", default=str(HERE / "results.csv"), help="where the numbers go")
    parser.add_argument("--root", default=None, help="scratch folder (and the disk timed)")
    args = parser.parse_args(argv)
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"--only: expected names from {', '.join(BENCHMARKS)}, got {', '.join(unknown)}")
    root = args.root or tempfile.gettempdir()
    os.makedirs(root, exist_ok=True)
    started = dt.datetime.now().astimezone()
    print(f"# latentgen benchmarks{' (quick)' if args.quick else ''}, "
          f"{started:%Y-%m-%d %H:%M %Z}; {machine()}", flush=True)
    records, lines, failed = [], [], False
    for name in chosen:
        t0 = time.perf_counter()
        try:
            rows, summaries = _run_one(name, args.quick, root)
        except Exception as err:  # one broken benchmark does not hide the others
            traceback.print_exc()
            rows, summaries = [], [{"name": name, "ratio": float("nan"), "target": "-",
                                    "passed": False, "note": f"error: {err!r}"}]
        records += [{"benchmark": name, **row} for row in rows]
        for summary in summaries:
            records.append({"benchmark": name, "line": summary["name"], "ratio": summary["ratio"],
                            "target": summary["target"], "passed": summary["passed"],
                            "detail": summary.get("detail", ""), "note": summary.get("note", ""),
                            "seconds": round(time.perf_counter() - t0, 1)})
            lines.append(_line(summary))
            failed |= summary["passed"] is False
            print(lines[-1], flush=True)
    _write_csv(Path(args.csv), records, started)
    print("\n".join(["", "# summary"] + lines))
    return 1 if failed else 0


def _write_csv(path: Path, records: list[dict], started: dt.datetime) -> None:
    fields: list[str] = ["benchmark", "line", "ratio", "target", "passed"]
    for record in records:
        fields += [k for k in record if k not in fields]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        f.write(f"# {started.isoformat(timespec='seconds')}; {machine()}\n")
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)
    print(f"# numbers written to {path}")


if __name__ == "__main__":
    sys.exit(main())
