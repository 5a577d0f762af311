"""Memory: peak resident memory of the analysis of one store with 40 scheduled epochs
against the same store with 10, and the same for the capture that writes them.

Each measured step runs in a fresh Python process (so imports and allocator state are
the same on both sides) that reports its own peak resident set size (VmHWM from
/proc/self/status) when it is done: the capture of a quickstart run
captured at every epoch for 10 or 40 epochs, then `analyze` of that store (eager,
in-process; probes masc, velpic, ncm, knn). Memory bounded by slabs and by the writer
queue gives ratios near 1; anything held per epoch shows up as ratio ~ 4.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, quickstart, summary_line, write_pipelines

CHILD = r"""
import json, resource, sys, logging
logging.disable(logging.WARNING)
import torch
torch.set_num_threads(1)
from stores import load_pipeline
step, pipelines, root = sys.argv[1:4]
pipeline = load_pipeline("quickstart", pipelines)
if step == "capture":
    from capture.run import capture_run
    capture_run(pipeline.runs()[0], root, progress=False)
else:
    import warnings
    warnings.simplefilter("ignore")
    from analyze.pipeline import analyse
    analyse(pipeline, root, client=None, progress=False)
# VmHWM is this process's own peak; ru_maxrss also counts the parent's at fork time.
try:
    peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"maxrss_kib": peak}))
"""


def _peak_mib(step: str, pipelines: Path, root: Path) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, step, str(pipelines), str(root)],
                         cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["maxrss_kib"] / 1024


def run(quick: bool = False, root: str | None = None) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="memory-", dir=root))
    small, large = (5, 20) if quick else (10, 40)
    rows = []
    try:
        for epochs in (small, large):
            raw = quickstart(sweep={"corruption": [0.6], "seed": [0]},
                             train={"max_epochs": epochs, "stop_train_acc": None},
                             capture={"schedule": {"epochs": [0], "every": 1}},
                             analysis={"probes": ["masc", "velpic", "ncm", "knn"]})
            pipelines = write_pipelines(work / f"e{epochs}" / "pipelines.yaml", {"quickstart": raw})
            runs = work / f"e{epochs}" / "runs"
            capture = _peak_mib("capture", pipelines, runs)
            analysis = _peak_mib("analyze", pipelines, runs)
            rows.append({"epochs": epochs, "capture_peak_MiB": capture,
                         "analysis_peak_MiB": analysis})
            print(f"  memory {epochs} epochs: capture peak {capture:.0f} MiB, analysis peak "
                  f"{analysis:.0f} MiB", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    small, large = rows
    return [summary_line(name, large[key] / small[key], "<=1.2",
                         f"peak RSS {large['epochs']} / {small['epochs']} epochs: "
                         f"{large[key]:.0f} / {small[key]:.0f} MiB")
            for key, name in (("analysis_peak_MiB", "memory_analysis"),
                              ("capture_peak_MiB", "memory_capture"))]
