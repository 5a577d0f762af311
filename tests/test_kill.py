"""SIGKILL a real `python -m capture` at several points and start it again with the same
command: the store it finishes is the one an uninterrupted run writes, bit for bit.

The test watches the store's files from outside (no hooks in the code under test) and
kills the process: while the store is being laid out or before its first commit,
between two commits (paused first, so that a second capture started meanwhile is
refused by the lock, which the killed one then does not leave behind, and `analyze`
meanwhile reads the half-written store), and while the background writer is writing an
epoch (its first chunk is on disk, its commit flag not). Only what must be a separate
process is one (the uninterrupted reference, run alongside, the captures that are
killed, and the one that finishes the run, as a user would start it again); the refused
capture and the analysis run in this process, through the `main` the command lines call.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr
import yaml
import zarr

from analyze.__main__ import main as analyze_main
from capture.__main__ import main as capture_main

from .conftest import REPO
from .storecmp import differences

RUN = "corruption=0.6,seed=0.zarr"
EPOCHS = 10  # every epoch captured: slots 0..10 (kill 2 needs 3 commits, kill 3 one more)


def _pipeline(path: Path) -> Path:
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())["quickstart"]
    raw["sweep"] = {"corruption": [0.6], "seed": [0]}
    raw["model"]["widths"] = [64, 32]
    raw["train"].update({"max_epochs": EPOCHS, "stop_train_acc": None, "batch_size": 128})
    raw["capture"].update({"points": ["input", "relu1", "relu2"], "schedule": {"epochs": [0], "every": 1}})
    path.write_text(yaml.safe_dump({"kill": raw}))
    return path


class Capture:
    def __init__(self, pipelines: Path, root: Path):
        self.args = ["kill", "--pipelines", str(pipelines), "--root", str(root), "--quiet"]
        self.store = root / "kill" / RUN

    def start(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "capture", *self.args], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def run_here(self, capsys) -> tuple[int, str]:
        """`python -m capture ...` in this process: (exit status, stderr)."""
        capsys.readouterr()
        code = capture_main(self.args)
        return code, capsys.readouterr().err

    def run(self) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "capture", *self.args], cwd=REPO,
                              capture_output=True, text=True, timeout=600)

    def committed_files(self) -> list[int]:
        """Slots whose commit flag is on disk (a flag is only ever written as True here)."""
        folder = self.store / "epochs" / "committed" / "c"
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []

    def committed(self) -> list[int]:
        flags = zarr.open_group(str(self.store), mode="r", use_consolidated=False)["epochs/committed"][:]
        return [int(i) for i in flags.nonzero()[0]]

    def kill_when(self, condition, timeout: float = 300, pause: bool = False) -> subprocess.Popen:
        process = self.start()
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            if condition():
                process.send_signal(signal.SIGSTOP if pause else signal.SIGKILL)
                if not pause:
                    process.wait()
                return process
            time.sleep(0.002)
        process.kill()
        raise AssertionError(f"condition not met (exit {process.poll()}): "
                             f"{process.stderr.read().decode()[-2000:]}")

    def writing(self, after: int) -> bool:
        """This process has committed an epoch (slot `after`) and the next one's first
        chunk is on disk, its commit flag not: the writer is in the middle of an epoch."""
        done = self.committed_files()
        slot = done[-1] + 1 if done else 0
        return (slot > after and (self.store / "activations/input/values/c" / str(slot)).exists()
                and not (self.store / "epochs/committed/c" / str(slot)).exists())


@pytest.mark.slow
def test_sigkill_at_several_points_then_resume_gives_the_uninterrupted_store(tmp_path, capsys):
    pipelines = _pipeline(tmp_path / "p.yaml")
    reference = Capture(pipelines, tmp_path / "reference")
    uninterrupted = reference.start()  # alongside the kills
    cap = Capture(pipelines, tmp_path / "runs")

    # 1. As soon as the store (or its staging folder) appears: nothing committed yet.
    staging = Path(f"{cap.store}.creating")
    cap.kill_when(lambda: staging.exists() or (cap.store / "zarr.json").exists())
    assert not (cap.store / "zarr.json").exists() or cap.committed() == []

    # 2. Between two commits, paused: a second capture is refused by the lock ...
    paused = cap.kill_when(lambda: len(cap.committed_files()) >= 3, pause=True)
    code, err = cap.run_here(capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert f"{cap.store} is being written by another process (capture, pid {paused.pid}" in err
    committed_now = cap.committed()
    code = analyze_main(["kill", "--pipelines", str(pipelines), "--root", str(cap.store.parent.parent),
                         "--eager", "--quiet"])
    assert code == 0, capsys.readouterr().err  # ... analysis of the half-written store works
    with xr.open_zarr(str(cap.store), group="analysis/dynamics", consolidated=False) as ds:
        assert ds.epoch.values.tolist() == committed_now  # epoch n is slot n here
    paused.send_signal(signal.SIGKILL)  # ... then it dies without releasing anything
    paused.wait()
    done = cap.committed()
    assert 3 <= len(done) < EPOCHS + 1 and done == list(range(len(done)))

    # 3. While the writer writes an epoch; if the kill lands after its commit, try again.
    for _ in range(4):
        start = len(cap.committed())
        cap.kill_when(lambda: cap.writing(after=start))
        done = cap.committed()
        assert done == list(range(len(done)))
        if start < len(done) < EPOCHS + 1 and (
                cap.store / "activations/input/values/c" / str(len(done))).exists():
            break
    else:
        pytest.fail("never killed while an epoch was being written")

    # 4. The same command finishes it (the dead captures' lock is gone).
    finished = cap.run()
    assert finished.returncode == 0, finished.stderr
    assert uninterrupted.wait(timeout=600) == 0, uninterrupted.stderr.read().decode()
    assert differences(reference.store, cap.store, skip_analysis=True) == []
    resumes = zarr.open_group(str(cap.store), mode="r").attrs["resumes"]
    assert len(resumes) >= 2  # after kills 2 and 3 (kill 1 may come before the store exists)
