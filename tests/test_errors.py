"""Failures in the middle of work: a run that diverges, Ctrl-C of capture and analyze.

Each ends in one line (or two for Ctrl-C: where the store stands, and the command that
resumes it), never a traceback, and leaves every committed epoch as it was. The CLIs run
in this process (their `main`) on a copy of the session's tiny stores, as in
`tests/test_bad_inputs.py`; the interruption is a KeyboardInterrupt raised from a hook at
a chosen moment (the second training epoch; the third analysis task).
"""

from __future__ import annotations

import copy
import shlex
import shutil

import pytest
import zarr

import analyze.grid
import capture.train
import stores
from stores import slabs
from analyze.__main__ import main as analyze_main
from capture.__main__ import main as capture_main
from stores.__main__ import main as stores_main

from . import test_bad_inputs
from .test_bad_inputs import Env, _committed

env = test_bad_inputs.env  # the fixture: a copy of the tiny committed stores

pytestmark = pytest.mark.slow  # own captures and analyses, in process


def _bad_pipeline(env: Env, **train) -> list[str]:
    """The committed quickstart pipeline renamed `bad` (one run, no store yet)."""
    raw = copy.deepcopy(env.base)
    raw["train"].update(train)
    env.pipeline_file(raw)
    return env.capture()


def _lines(err: str) -> list[str]:
    assert "Traceback" not in err, err
    return err.strip("\n").splitlines()


def test_a_diverging_run_stops_in_one_line_and_is_marked_diverged(env, capsys):
    before = _committed(env.root)
    argv = _bad_pipeline(env, lr=1e12)
    capsys.readouterr()
    assert capture_main(argv) == 2
    (line,) = _lines(capsys.readouterr().err)
    path = env.root / "bad" / "corruption=0.6,seed=0.zarr"
    assert line.startswith("error: corruption=0.6,seed=0: training diverged at epoch 1 (train loss ")
    assert f"{path} keeps its 1 committed epoch (0) and is marked diverged; lower train.lr" in line
    # the epoch before it stays committed and readable; nothing of the diverged one is
    assert list(slabs.committed_slots(str(path))[1]) == [0]
    assert zarr.open_group(str(path), mode="r").attrs["diverged"]["epoch"] == 1
    assert stores_main(["validate", str(path)]) == 0
    capsys.readouterr()
    stores_main(["ls", str(env.root / "bad")])
    row = next(r for r in capsys.readouterr().out.splitlines() if "seed=0.zarr" in r)
    assert row.split()[1:3] == ["diverged", "1"]
    # the same command again is refused in one line, the store untouched
    marked = _committed(env.root)
    assert capture_main(argv) == 2
    (again,) = _lines(capsys.readouterr().err)
    assert "this run diverged at epoch 1" in again and "pass --overwrite" in again
    assert _committed(env.root) == marked
    assert {k: v for k, v in marked.items() if not k.startswith("bad")} == before


def _interrupt_at(monkeypatch, module, name: str, call: int) -> None:
    """Raise KeyboardInterrupt (as Ctrl-C does) at the `call`-th call of module.name."""
    real, calls = getattr(module, name), []

    def hook(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, hook)


def test_ctrl_c_of_capture_says_where_the_store_stands_and_how_to_resume(env, capsys, monkeypatch):
    before = _committed(env.root)
    argv = _bad_pipeline(env)
    _interrupt_at(monkeypatch, capture.train, "train_epoch", 2)  # epochs 0 and 1 are captured
    capsys.readouterr()
    assert capture_main(argv) == 130
    where, resume = _lines(capsys.readouterr().err)
    path = env.root / "bad" / "corruption=0.6,seed=0.zarr"
    assert where == f"interrupted: {path} keeps its 2 committed epochs (0 to 1) (of 4 scheduled)"
    assert resume == "resume with: " + shlex.join(["python", "-m", "capture", *argv])
    monkeypatch.undo()
    # the printed command resumes it to the end
    assert capture_main(shlex.split(resume.removeprefix("resume with: "))[3:]) == 0
    assert stores.run_attrs(str(path))["status"] == "complete"
    assert list(slabs.committed_slots(str(path))[1]) == [0, 1, 2, 4]
    assert {k: v for k, v in _committed(env.root).items() if not k.startswith("bad")} == before


def test_ctrl_c_of_analyze_leaves_the_stores_and_says_how_to_resume(env, capsys, monkeypatch):
    argv = ["quickstart", "--pipelines", str(env.pipelines), "--root", str(env.root), "--quiet",
            "--eager"]
    for store in (env.root / "quickstart").glob("*.zarr"):  # so that analyze computes tasks
        shutil.rmtree(store / "analysis", ignore_errors=True)
    before = _committed(env.root)
    _interrupt_at(monkeypatch, analyze.grid, "run_task", 3)
    capsys.readouterr()
    assert analyze_main(argv) == 130
    where, resume = _lines(capsys.readouterr().err)
    assert where.startswith("interrupted: the stores' committed epochs are unchanged")
    assert resume == "resume with: " + shlex.join(["python", "-m", "analyze", *argv])
    assert _committed(env.root) == before


def test_ctrl_c_before_the_store_exists_says_so(env, capsys, monkeypatch):
    import capture.run

    before = _committed(env.root)
    argv = _bad_pipeline(env)
    _interrupt_at(monkeypatch, capture.run, "load_dataset", 1)
    capsys.readouterr()
    assert capture_main(argv) == 130
    where, resume = _lines(capsys.readouterr().err)
    assert where == f"interrupted: {env.root / 'bad' / 'corruption=0.6,seed=0.zarr'} was not created yet"
    assert resume == "resume with: " + shlex.join(["python", "-m", "capture", *argv])
    assert _committed(env.root) == before


def test_an_os_error_that_escapes_analysis_is_one_line(env, capsys, monkeypatch):
    """What no writer turned into a message of its own (a figure, say) still ends in
    one line with the path."""
    import errno
    import os

    import analyze.__main__

    figure = env.root / "quickstart" / "figure.png"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(figure))

    monkeypatch.setattr(analyze.__main__, "analyse", full)
    before = _committed(env.root)
    capsys.readouterr()
    assert analyze_main(["quickstart", "--pipelines", str(env.pipelines), "--root", str(env.root),
                         "--quiet", "--eager"]) == 2
    (line,) = _lines(capsys.readouterr().err)
    assert line == (f"error: cannot write {figure} (no space left on device): the stores' committed "
                    "epochs are unchanged; free space (or make it writable) and run the same "
                    "command again")
    assert _committed(env.root) == before
