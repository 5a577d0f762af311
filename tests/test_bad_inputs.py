"""A catalogue of bad inputs to the three command lines.

Each must end in exactly one line on stderr that names the problem and what is allowed,
exit status 2, no traceback, and no change to any committed store. The CLIs run in this
process (their `main`), on a copy of the session's tiny committed stores; a few run as
real processes at the end, to check the same from the outside.
"""

from __future__ import annotations

import builtins
import copy
import errno
import io
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml
import zarr

import analyze.cluster
from analyze.__main__ import main as analyze_main
from capture.__main__ import main as capture_main
from stores.__main__ import main as stores_main
from stores.lock import StoreLock

from .conftest import REPO, tiny_pipeline_yaml
from .storecmp import digest
from .test_vision import write_mnist

CLIS = {"capture": capture_main, "analyze": analyze_main, "stores": stores_main}
STORE = "quickstart/corruption=0.6,seed=0.zarr"  # a committed store in every case's root


@dataclass
class Env:
    tmp: Path
    root: Path  # a copy of the committed stores
    pipelines: Path  # the pipelines file they were captured with
    base: dict  # its quickstart pipeline
    monkeypatch: pytest.MonkeyPatch  # undone after the case (file-system faults, timeouts)

    def pipeline_file(self, body: dict | str, name: str = "bad") -> Path:
        path = self.tmp / "bad.yaml"
        if isinstance(body, str):
            path.write_text(body)
        else:
            path.write_text(yaml.safe_dump({name: body}))
        return path

    def capture(self, *extra: str, pipeline: str = "bad", pipelines: Path | None = None) -> list[str]:
        return [pipeline, "--pipelines", str(pipelines or self.tmp / "bad.yaml"),
                "--root", str(self.root), "--quiet", *extra]

    @property
    def store(self) -> Path:
        return self.root / STORE


@dataclass
class Case:
    id: str
    cli: str
    setup: Callable[[Env], list[str]]
    expect: str  # a regex the stderr line must match


def text(body: str) -> Callable[[Env], list[str]]:
    """A pipelines file with this exact text."""
    def setup(env: Env) -> list[str]:
        env.pipeline_file(body)
        return env.capture()
    return setup


def edit(change: Callable[[dict], None], *extra: str) -> Callable[[Env], list[str]]:
    """The committed pipeline, renamed `bad` and changed by `change`."""
    def setup(env: Env) -> list[str]:
        raw = copy.deepcopy(env.base)
        change(raw)
        env.pipeline_file(raw)
        return env.capture(*extra)
    return setup


def put(path: str, value) -> Callable[[dict], None]:
    """Set a dotted key of the pipeline."""
    def change(raw: dict) -> None:
        *parents, last = path.split(".")
        node = raw
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return change


def mnist(**data) -> Callable[[Env], list[str]]:
    def setup(env: Env) -> list[str]:
        write_mnist(env.tmp / "data", "MNIST", n_train=40, n_test=20)
        raw = copy.deepcopy(env.base)
        raw["data"] = {"name": "mnist", "root": str(env.tmp / "data"), **data}
        env.pipeline_file(raw)
        return env.capture()
    return setup


# ------------------------------------------------------------------ store damage
def newer_schema(cli: str) -> Callable[[Env], list[str]]:
    def setup(env: Env) -> list[str]:
        group = zarr.open_group(str(env.store), mode="r+")
        group.attrs["schema_version"] = 3
        return _on_store(env, cli)
    return setup


def truncated_chunk(cli: str) -> Callable[[Env], list[str]]:
    def setup(env: Env) -> list[str]:
        for store in (env.root / "quickstart").glob("*.zarr"):
            shutil.rmtree(store / "analysis", ignore_errors=True)  # so analyze reads again
        chunk = env.store / "activations" / "relu1" / "values" / "c" / "1" / "0" / "0"
        chunk.write_bytes(chunk.read_bytes()[:100])
        return _on_store(env, cli)
    return setup


def _on_store(env: Env, cli: str) -> list[str]:
    if cli == "stores":
        return ["show", str(env.store)]
    pipeline = ["quickstart", "--pipelines", str(env.pipelines), "--root", str(env.root), "--quiet"]
    return pipeline + (["--eager"] if cli == "analyze" else [])


def root_is(kind: str) -> Callable[[Env], list[str]]:
    def setup(env: Env) -> list[str]:
        env.pipeline_file(copy.deepcopy(env.base))
        if kind == "file":
            target = env.tmp / "root-file"
            target.write_text("not a folder")
        elif kind == "store-file":
            target = env.tmp / "fresh"
            (target / "bad").mkdir(parents=True)
            (target / "bad" / "corruption=0.6,seed=0.zarr").write_text("not a store")
        else:  # read-only
            target = env.tmp / "read-only"
            target.mkdir()
            target.chmod(0o555)
            if os.access(target, os.W_OK):  # root ignores modes: use a file system that refuses
                target = Path("/sys/latentgen-read-only-root")
        return ["bad", "--pipelines", str(env.tmp / "bad.yaml"), "--root", str(target), "--quiet"]
    return setup


# ------------------------------------------------------------------ file-system faults
def refuse_writes(monkeypatch: pytest.MonkeyPatch, under: Path, code: int,
                  match: tuple[str, ...] = ("",)) -> None:
    """Every write under `under` (to a path holding one of `match`) fails with
    OSError(code), as on a read-only (EROFS) or full (ENOSPC) file system: files opened to
    write, folders made, and (read-only only: a full disk still frees) renames and
    removals. Root ignores file modes, so a chmod cannot make a store read-only here; this
    refuses the writes themselves, in this process."""
    under = os.path.realpath(under)

    def hit(path) -> bool:
        if isinstance(path, int):
            return False
        p = os.path.realpath(os.fsdecode(path))
        return (p == under or p.startswith(under + os.sep)) and any(m in p for m in match)

    def fail(path):
        raise OSError(code, os.strerror(code), os.fsdecode(path))

    real_open, real_os_open = builtins.open, os.open

    def open_(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and hit(file):
            fail(file)
        return real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and hit(path):
            fail(path)
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(os, "open", os_open)
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if hit(path):
            if os.path.isdir(path):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(path))
            fail(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    for name in ("remove", "unlink", "rmdir", "rename", "replace") if code != errno.ENOSPC else ():
        real = getattr(os, name)

        def wrapped(path, *args, _real=real, **kwargs):
            if hit(path):
                fail(path)
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(os, name, wrapped)


def read_only(env: Env, path: Path) -> None:
    """`path` (a store or the root) as on a read-only file system."""
    refuse_writes(env.monkeypatch, path, errno.EROFS)


def resume_read_only(env: Env) -> list[str]:
    """An unfinished store (as a killed capture leaves it) that can no longer be written."""
    zarr.open_group(str(env.store), mode="r+").attrs["status"] = "running"
    read_only(env, env.store)
    return _on_store(env, "capture")


def analyze_read_only(env: Env) -> list[str]:
    read_only(env, env.root)
    return _on_store(env, "analyze")


def analyze_full_disk(env: Env) -> list[str]:
    """The disk fills when analyze writes its results (a store's `analysis` groups, written
    aside as RUN.zarr.analysis-NAME.*, or the pipeline's analysis.csv: whichever is first)."""
    refuse_writes(env.monkeypatch, env.root, errno.ENOSPC, match=(".analysis-", f"{os.sep}analysis"))
    return _on_store(env, "analyze")


def analyze_full_disk_at_the_table(env: Env) -> list[str]:
    """The stores analysed already; the disk fills when analyze writes analysis.csv."""
    argv = _on_store(env, "analyze")
    assert analyze_main(argv) == 0
    refuse_writes(env.monkeypatch, env.root, errno.ENOSPC, match=("analysis.csv", "report.md"))
    return argv


def repair_full_disk(env: Env) -> list[str]:
    """A damaged chunk for repair to un-commit, and a disk too full for repair's writes
    (removals still work, as on a full disk)."""
    chunk = env.store / "activations" / "relu1" / "values" / "c" / "1" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:100])
    refuse_writes(env.monkeypatch, env.store, errno.ENOSPC)
    return ["repair", str(env.store)]


def analyze_with(change: Callable[[dict], None], *extra: str) -> Callable[[Env], list[str]]:
    """The committed quickstart pipeline (same stores) with `change`, analysed eagerly."""
    def setup(env: Env) -> list[str]:
        raw = copy.deepcopy(env.base)
        change(raw)
        pipelines = env.pipeline_file(raw, name="quickstart")
        return ["quickstart", "--pipelines", str(pipelines), "--root", str(env.root), "--quiet", *extra]
    return setup


def unreachable_scheduler(env: Env) -> list[str]:
    env.monkeypatch.setattr(analyze.cluster, "CONNECT_TIMEOUT_S", 0.5, raising=False)  # 10 s in use
    return ["quickstart", "--pipelines", str(env.pipelines), "--root", str(env.root), "--quiet",
            "--scheduler", "tcp://127.0.0.1:1"]


def other_config(env: Env) -> list[str]:
    raw = copy.deepcopy(env.base)
    raw["train"]["lr"] = 0.01
    return env.capture(pipeline="quickstart", pipelines=env.pipeline_file(raw, name="quickstart"))


def locked(env: Env) -> list[str]:
    lock = StoreLock(str(env.root / "quickstart" / "corruption=0.6,seed=0.zarr"))
    lock.acquire()
    env.held = lock  # released by the test
    shutil.rmtree(env.store)  # an unfinished capture would go on here, but someone holds it
    return ["quickstart", "--pipelines", str(env.pipelines), "--root", str(env.root), "--quiet",
            "--run", "corruption=0.6"]


def escaping_pipeline_name(env: Env) -> list[str]:
    env.pipeline_file(copy.deepcopy(env.base), name="../../escaped")
    return env.capture(pipeline="../../escaped")


def stores_cmd(*args: str) -> Callable[[Env], list[str]]:
    def setup(env: Env) -> list[str]:
        (env.tmp / "a-file").write_text("x")
        return [a.format(tmp=env.tmp, root=env.root, store=env.store) for a in args]
    return setup


def foreign_zarr(env: Env) -> list[str]:
    zarr.open_group(str(env.tmp / "other.zarr"), mode="w").attrs["x"] = 1
    return ["validate", str(env.tmp / "other.zarr")]


# Parser-level cases: the pipelines file, its keys and values, the command-line options.
# They fail before any store is opened, so all of them run in the fast
# `test_bad_config_is_one_line`; one representative of each class (REPRESENTATIVES) also
# runs in the end-to-end table below, on a copy of committed stores.
PARSER_CASES = [
    # YAML syntax and file
    Case("yaml-unclosed-bracket", "capture", text("bad:\n  sweep: {corruption: [0.6\n"),
         r"not valid YAML at line \d+, column \d+"),
    Case("yaml-mapping-in-scalar", "capture", text("bad:\n  data: name: digits\n"),
         r"not valid YAML at line 2, column \d+: mapping values are not allowed here"),
    Case("yaml-tab-indent", "capture", text("bad:\n\tdata: {}\n"), r"not valid YAML at line 2"),
    Case("yaml-python-tag", "capture", text("bad: !!python/object/apply:os.system ['true']\n"),
         r"not valid YAML.*python/object/apply"),
    Case("yaml-not-a-mapping", "capture", text("- bad\n- worse\n"),
         r"expected a mapping of pipeline names, got list"),
    Case("yaml-empty-file", "capture", text(""), r"expected a mapping of pipeline names, got NoneType"),
    Case("pipelines-not-utf8", "capture",
         lambda env: (env.tmp.joinpath("bad.yaml").write_bytes(b"bad: {\xff\xfe}\n"), env.capture())[1],
         r"cannot read the pipelines file.*expected a readable UTF-8 YAML file"),
    Case("pipelines-file-missing", "capture",
         lambda env: env.capture(pipelines=env.tmp / "nope.yaml"), r"pipelines file not found"),
    Case("unknown-pipeline", "capture", lambda env: env.capture(pipeline="nope", pipelines=env.pipelines),
         r"pipeline: expected one of quickstart, got 'nope'"),
    # unknown keys at every level
    Case("unknown-key-pipeline", "capture", edit(put("trian", {})),
         r"bad: unknown key 'trian': expected one of analysis, capture, .*train"),
    Case("unknown-key-data", "capture", edit(put("data.nmae", "digits")),
         r"bad\.data: unknown key 'nmae': expected one of name, "),
    Case("unknown-key-corruption", "capture", edit(put("corruption.rat", 0.1)),
         r"bad\.corruption: unknown key 'rat': expected one of mode, rate"),
    Case("unknown-key-model", "capture", edit(put("model.widht", [8])),
         r"bad\.model: unknown key 'widht': expected one of name, widths"),
    Case("unknown-key-train", "capture", edit(put("train.learning_rate", 0.1)),
         r"bad\.train: unknown key 'learning_rate': expected one of optimizer, lr"),
    Case("unknown-key-capture", "capture", edit(put("capture.point", ["input"])),
         r"bad\.capture: unknown key 'point': expected one of points"),
    Case("unknown-key-schedule", "capture", edit(put("capture.schedule.evry", 2)),
         r"bad\.capture\.schedule: unknown key 'evry': expected one of epochs, every, rule"),
    Case("unknown-key-analysis", "capture", edit(put("analysis.probe", ["masc"])),
         r"bad\.analysis: unknown key 'probe': expected one of probes"),
    Case("bad-spectral-method", "capture", edit(put("analysis.spectral", "slow")),
         r"bad\.analysis\.spectral: expected one of fast, exact, got 'slow'"),
    Case("bad-analysis-device", "capture", edit(put("analysis.device", "tpu")),
         r"bad\.analysis\.device: expected cpu, cuda, cuda:N or null, got 'tpu'"),
    Case("unknown-key-init", "capture", edit(put("init.src", "x")),
         r"bad\.init: unknown key 'src': expected one of source, epoch, edit"),
    Case("unknown-key-cluster", "capture", edit(put("cluster.nodes", 3)),
         r"bad\.cluster: unknown key 'nodes': expected one of kind, workers"),
    Case("unknown-sweep-key", "capture", edit(put("sweep", {"lr": [0.1]})),
         r"bad\.sweep\.lr: unknown key 'lr': expected one of seed, data"),
    Case("unknown-run-key", "capture", edit(lambda raw: None, "--run", "lr=0.1"),
         r"--run: unknown key 'lr': expected one of corruption, seed"),
    Case("malformed-run", "capture", edit(lambda raw: None, "--run", "corruption"),
         r"--run: expected KEY=VALUE\[,KEY=VALUE\.\.\.\], got 'corruption'"),
    # wrong types
    Case("type-lr-string", "capture", edit(put("train.lr", "fast")),
         r"bad\.train\.lr: expected a number in \(0\.0, inf\], got 'fast'"),
    Case("type-max-epochs-float", "capture", edit(put("train.max_epochs", 2.5)),
         r"bad\.train\.max_epochs: expected an integer in \[1, inf\], got 2\.5"),
    Case("type-widths-scalar", "capture", edit(put("model.widths", 512)),
         r"bad\.model\.widths: expected a non-empty list of integers >= 1, got 512"),
    Case("type-block-list", "capture", edit(put("data", ["digits"])),
         r"bad\.data: expected a mapping, got \['digits'\]"),
    Case("type-stop-bool", "capture", edit(put("train.stop_train_acc", True)),
         r"bad\.train\.stop_train_acc: expected a number in \(0\.0, 1\.0\] or null, got True"),
    # corruption outside [0, 1]
    Case("corruption-above-one", "capture", edit(put("sweep.corruption", [0.5, 1.5])),
         r"bad\.corruption\.rate: expected a number in \[0\.0, 1\.0\], got 1\.5"),
    Case("corruption-negative", "capture", edit(lambda raw: (raw.pop("sweep"), put("corruption.rate", -0.2)(raw))),
         r"bad\.corruption\.rate: expected a number in \[0\.0, 1\.0\], got -0\.2"),
    # unknown names
    Case("unknown-dataset", "capture", edit(put("data.name", "imagenet")),
         r"bad\.data\.name: expected one of digits, modular, mnist, .*, got 'imagenet'"),
    Case("unknown-model", "capture", edit(put("model.name", "transformer")),
         r"bad\.model\.name: expected one of mlp, modular_mlp, cnn, alexnet, resnet18, got 'transformer'"),
    Case("unknown-optimizer", "capture", edit(put("train.optimizer", "rmsprop")),
         r"bad\.train\.optimizer: expected one of sgd, adam, adamw, got 'rmsprop'"),
    Case("unknown-probe", "capture", edit(put("analysis.probes", ["masc", "svm"])),
         r"bad\.analysis\.probes: unknown 'svm': expected names from masc, masc_true, velpic"),
    # sweeps
    Case("empty-sweep-list", "capture", edit(put("sweep.corruption", [])),
         r"bad\.sweep\.corruption: expected a non-empty list, got \[\]"),
    Case("empty-sweep-mapping", "capture", edit(put("sweep", {})),
         r"bad\.sweep: expected at least one name -> list of values"),
    # command-line options
    Case("analyze-workers-zero", "analyze",
         lambda env: ["quickstart", "--pipelines", str(env.pipelines), "--root", str(env.root), "--workers", "0"],
         r"--workers: expected an integer >= 1, got 0"),
    Case("analyze-device-unknown", "analyze",
         lambda env: ["quickstart", "--pipelines", str(env.pipelines), "--root", str(env.root),
                      "--device", "tpu"],
         r"--device: expected cpu, cuda or cuda:N, got 'tpu'"),
    Case("analyze-workers-above-cores", "analyze",
         lambda env: ["quickstart", "--pipelines", str(env.pipelines), "--root", str(env.root),
                      "--workers", str(max(64, (os.cpu_count() or 1) + 1))],
         r"--workers \(or cluster\.workers\): expected 1 to \d+ local worker processes \(the cores "
         r"here\), got \d+; for more, use --cluster slurm or --scheduler"),
    # duplicate keys (PyYAML keeps the last without a word)
    Case("yaml-duplicate-pipeline", "capture",
         text("bad:\n  seed: 1\nother:\n  seed: 2\nbad:\n  seed: 3\n"),
         r"bad\.yaml: duplicate key 'bad' at lines 1 and 5 \(YAML would silently keep the second\)"),
    Case("yaml-duplicate-nested-key", "capture", text("bad:\n  train: {lr: 0.1,\n    lr: 0.2}\n"),
         r"duplicate key 'lr' at lines 2 and 3 .*expected each key once"),
    # --run outside the sweep: a run nobody swept, which the analysis would never see
    Case("run-value-outside-sweep", "capture", edit(lambda raw: None, "--run", "corruption=0.37,seed=0"),
         r"--run: corruption=0\.37 is not in the sweep of bad: expected one of 0\.6$"),
    Case("run-seed-outside-sweep", "capture", edit(lambda raw: None, "--run", "corruption=0.6,seed=7"),
         r"--run: seed=7 is not in the sweep of bad: expected one of 0$"),
    # schedules: an epoch past max_epochs, and plans too large to lay out
    Case("epoch-beyond-max-epochs", "capture", edit(put("capture.schedule", {"epochs": [0, 1, 9]})),
         r"bad\.capture\.schedule\.epochs: epoch 9 is beyond train\.max_epochs = 4: expected epochs "
         r"up to 4"),
    Case("max-epochs-1e12", "capture", edit(put("train.max_epochs", 10**12)),
         r"bad\.capture\.schedule: 500,000,000,002 scheduled epochs up to train\.max_epochs = "
         r"1,000,000,000,000: expected at most 10,000 per run"),
    Case("max-epochs-1e7", "capture", edit(put("train.max_epochs", 10**7)),
         r"bad\.capture\.schedule: 5,000,002 scheduled epochs .*: expected at most 10,000 per run"),
    Case("epoch-range-1e13", "capture", edit(put("capture.schedule", {"epochs": ["0:10000000000000:1"]})),
         r"bad\.capture\.schedule\.epochs: expected at most 10,000 epochs listed \("
         r"10,000,000,000,001 here\)"),
    # a model too large to allocate, counted before it is built
    Case("widths-1e9", "capture", edit(put("model.widths", [10**9])),
         r"bad\.model: mlp with widths \[1000000000\] has 75,000,000,010 parameters \(279\.4 GiB "
         r"as float32 per captured epoch\): expected at most 1,000,000,000"),
    Case("widths-1e9-list-layers", "capture", edit(put("model.widths", [10**9]), "--list-layers"),
         r"bad\.model: mlp with widths \[1000000000\] has 75,000,000,010 parameters"),
    # names that no listing shows whole
    Case("newline-in-run-name", "capture", edit(put("sweep", {"data.root": ["a\nb"]})),
         r"run name: expected a plain file name \(no '/', '\\', control characters such as a "
         r"newline.*got 'data\.root=a\\nb'"),
    Case("newline-in-pipeline-name", "capture",
         lambda env: (env.pipeline_file(copy.deepcopy(env.base), name="bad\nname"),
                      env.capture(pipeline="bad\nname"))[1],
         r"pipeline name: expected a plain file name .*control characters.*got 'bad\\nname'"),
]

STORE_CASES = [
    # found when the model is built, after the pipeline's folder is made
    Case("unknown-capture-point", "capture", edit(put("capture.points", ["input", "relu9"])),
         r"capture\.points: unknown 'relu9': expected names from input, flatten, fc1"),
    # data
    Case("probe-set-larger-than-dataset", "capture", mnist(n_train=1000),
         r"mnist: data\.n_train = 1000 is larger than the train split \(40 rows\)"),
    Case("missing-dataset-root", "capture", edit(put("data", {"name": "mnist", "root": "/nonexistent/data"})),
         r"mnist: expected train-images-idx3-ubyte, .* under /nonexistent/data/MNIST/raw; set data\.root"),
    Case("missing-init-source", "capture", edit(put("init", {"source": "quickstart/nope"})),
         r"init\.source: no run store at .*quickstart/nope\.zarr"),
    # stores and roots
    Case("store-path-is-a-file", "capture", root_is("store-file"),
         r"corruption=0\.6,seed=0\.zarr is a file, not a run store: move it away or choose another --root"),
    Case("root-is-a-file", "capture", root_is("file"),
         r"cannot create .*root-file/bad \(.*\): --root .* must be a writable folder"),
    Case("read-only-root", "capture", root_is("read-only"),
         r"cannot create .* \((permission denied|operation not permitted|read-only file system)\): "
         r"--root .* must be a writable folder"),
    Case("other-config-in-store", "capture", other_config,
         r"holds a run with a different config \(differs in: train\.lr\); pass --overwrite to replace it"),
    Case("store-locked", "capture", locked,
         r"is being written by another process \(capture, pid \d+ on .*\); wait for it to end"),
    Case("newer-schema-capture", "capture", newer_schema("capture"),
         r"written by a newer latentgen \(schema_version 3\); this one reads schema_version 1 and 2: upgrade"),
    Case("newer-schema-analyze", "analyze", newer_schema("analyze"),
         r"written by a newer latentgen \(schema_version 3\)"),
    Case("newer-schema-show", "stores", newer_schema("stores"),
         r"written by a newer latentgen \(schema_version 3\)"),
    Case("truncated-chunk-analyze", "analyze", truncated_chunk("analyze"),
         r"activations/relu1/values chunk \(1, 0, 0\) is damaged .*: run `python -m stores validate"),
    Case("run-name-escapes-root", "capture", edit(put("sweep", {"data.root": ["../../escaped"]})),
         r"run name: expected a plain file name \(no '/'.*got 'data\.root=\.\./\.\./escaped'"),
    Case("pipeline-name-escapes-root", "capture", escaping_pipeline_name,
         r"pipeline name: expected a plain file name .*got '\.\./\.\./escaped'"),
    Case("analyze-missing-store", "analyze",
         lambda env: ["quickstart", "--pipelines", str(env.pipelines), "--root", str(env.tmp / "empty"), "--eager"],
         r"run corruption=0\.0,seed=0 has no store at .*empty/quickstart/.*: run `python -m capture quickstart"),
    Case("show-a-file", "stores", stores_cmd("show", "{tmp}/a-file"), r"no run store at .*a-file"),
    Case("validate-not-a-store", "stores", stores_cmd("validate", "{tmp}"), r"no run store at "),
    Case("ls-missing-dir", "stores", stores_cmd("ls", "{tmp}/nope"), r"no directory .*nope"),
    Case("validate-foreign-zarr", "stores", foreign_zarr, r"not a latentgen run store \(no schema_version"),
    # read-only stores and a full disk: refused before any work, or stopped with the path
    Case("read-only-store-resume", "capture", resume_read_only,
         r"corruption=0\.6,seed=0\.zarr is not writable \(read-only file system\): it keeps its "
         r"\d+ committed epochs \(0 to \d+\); make it writable .*run the same command again"),
    Case("read-only-store-analyze", "analyze", analyze_read_only,
         r"\.zarr is not writable \(read-only file system\): analyze writes its results there; "
         r"make it writable"),
    Case("full-disk-analyze", "analyze", analyze_full_disk,
         r"cannot write .*analysis.* \(no space left on device\)[:;] .*free space"),
    Case("full-disk-analyze-table", "analyze", analyze_full_disk_at_the_table,
         r"cannot write .*/quickstart/analysis\.csv \(no space left on device\)[:;] .*free space"),
    Case("full-disk-repair", "stores", repair_full_disk,
         r"corruption=0\.6,seed=0\.zarr.*: no space left on device \(repair orders its writes: free space"),
    Case("knn-larger-than-training-set", "analyze",
         analyze_with(put("analysis.knn_neighbors", 100000), "--eager"),
         r"quickstart\.analysis\.knn_neighbors: expected at most the training set's \d+ samples "
         r"\(.*\.zarr\), got 100000"),
    Case("scheduler-unreachable", "analyze", unreachable_scheduler,
         r"--scheduler tcp://127\.0\.0\.1:1: no Dask scheduler answered within 0\.5 s \(.*\): "
         r"start one \(`dask scheduler`\) or leave out --scheduler"),
]


CASES = PARSER_CASES + STORE_CASES
# One case of each class of parser-level input, to show end to end that it, too, leaves
# every committed store as it was.
REPRESENTATIVES = ("yaml-unclosed-bracket", "pipelines-file-missing", "unknown-key-train",
                   "type-lr-string", "corruption-above-one", "unknown-model",
                   "empty-sweep-list", "unknown-run-key", "analyze-workers-zero",
                   "yaml-duplicate-pipeline", "run-value-outside-sweep", "max-epochs-1e7",
                   "widths-1e9", "newline-in-run-name")
END_TO_END = [c for c in CASES if c.id in REPRESENTATIVES or c in STORE_CASES]


def _base(pipelines: Path) -> dict:
    base = yaml.safe_load(pipelines.read_text())["quickstart"]
    base["sweep"] = {"corruption": [0.6], "seed": [0]}
    return base


@pytest.fixture
def env(tiny_root, tmp_path, monkeypatch) -> Env:
    pipelines, root = tiny_root
    shutil.copytree(root, tmp_path / "runs", ignore=shutil.ignore_patterns("*.lock"))
    return Env(tmp_path, tmp_path / "runs", pipelines, _base(pipelines), monkeypatch)


@pytest.fixture
def parser_env(tmp_path, monkeypatch) -> Env:
    """The tiny pipeline's file and an empty root: no store is captured or copied."""
    pipelines = tiny_pipeline_yaml(tmp_path / "pipelines.yaml")
    (tmp_path / "runs").mkdir()
    return Env(tmp_path, tmp_path / "runs", pipelines, _base(pipelines), monkeypatch)


def _committed(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): digest(p) for p in sorted(root.rglob("*.zarr")) if p.is_dir()}


def _call(case: Case, argv: list[str], env: Env, capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = CLIS[case.cli](argv)
    finally:
        held = getattr(env, "held", None)
        if held is not None:
            held.release()
    return code, capsys.readouterr().err


def run_case(case: Case, env: Env, capsys) -> tuple[int, str]:
    argv = case.setup(env)
    before = _committed(env.root)
    code, err = _call(case, argv, env, capsys)
    assert _committed(env.root) == before, "committed data changed"
    return code, err


def assert_one_line(case: Case, code: int, err: str) -> None:
    lines = err.strip("\n").splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert re.search(case.expect, lines[0]), lines[0]


@pytest.mark.slow  # the command lines, in process, on copied stores
@pytest.mark.parametrize("case", END_TO_END, ids=lambda c: c.id)
def test_bad_input(case, env, capsys):
    assert_one_line(case, *run_case(case, env, capsys))


@pytest.mark.parametrize("case", PARSER_CASES, ids=lambda c: c.id)
def test_bad_config_is_one_line(case, parser_env, capsys):
    """Every parser-level case, on an empty root, which it leaves empty."""
    code, err = _call(case, case.setup(parser_env), parser_env, capsys)
    assert_one_line(case, code, err)
    assert list(parser_env.root.iterdir()) == []


def test_the_catalogue_is_long_enough():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("case_id", ["yaml-unclosed-bracket", "truncated-chunk-analyze",
                                     "newer-schema-show"])
def test_bad_input_from_a_real_process(case_id, env):
    """The same one line and exit status 2 from `python -m ...`, logging and all."""
    case = next(c for c in CASES if c.id == case_id)
    argv = case.setup(env)
    before = _committed(env.root)
    done = subprocess.run([sys.executable, "-m", case.cli, *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip("\n").splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert _committed(env.root) == before
