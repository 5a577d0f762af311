"""`python -m stores validate` finds every damaged or missing chunk; `repair` un-commits
the epochs they belong to, and a resumed capture rewrites them as they were."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
import zarr

import stores
from capture.run import capture_run
from stores import load_pipeline
from stores.__main__ import main as stores_main
from stores.lock import StoreLock
from stores.validate import validate

from .conftest import REPO
from .storecmp import differences


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(config, root, store) of a small complete run: slots 0, 1, 2, 3 = epochs 0, 1, 2, 4."""
    base = tmp_path_factory.mktemp("validate")
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())["quickstart"]
    raw["sweep"] = {"corruption": [0.6], "seed": [0]}
    raw["model"]["widths"] = [32, 16]
    raw["train"].update({"max_epochs": 4, "stop_train_acc": None})
    raw["capture"].update({"points": ["input", "relu1", "relu2"], "schedule": {"epochs": [0, 1, 2], "every": 2}})
    (base / "p.yaml").write_text(yaml.safe_dump({"quickstart": raw}))
    config = load_pipeline("quickstart", base / "p.yaml").runs()[0]
    return config, capture_run(config, str(base / "runs"), progress=False)


@pytest.fixture
def store(reference, tmp_path) -> tuple:
    config, path = reference
    copy = Path(config.store_path(str(tmp_path)))
    shutil.copytree(path, copy)
    return config, str(copy)


def chunk(store: str, array: str, *index: int) -> Path:
    return Path(store, array, "c", *map(str, index))


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = stores_main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_good_store_validates(store, capsys):
    _, path = store
    code, out, err = run(capsys, "validate", path)
    assert code == 0 and err == ""
    assert out.strip().endswith("epochs committed)") and "ok (schema_version 2" in out


def test_each_damaged_or_missing_chunk_is_reported_by_array_and_index(store, capsys):
    _, path = store
    flip(chunk(path, "activations/relu1/values", 2, 0, 0))
    chunk(path, "weights/fc1.weight/values", 3, 0, 0).write_bytes(b"\x00\x01")  # truncated
    chunk(path, "metrics/test_acc", 1).unlink()
    flip(chunk(path, "samples/label_true", 0))
    code, out, err = run(capsys, "validate", path)
    assert code == 1
    lines = out.splitlines()
    # A shard's inner chunks are named by epoch and block of samples (or rows).
    assert ("activations/relu1/values epoch 2 (slot 2), samples 0-1796: damaged (checksum "
            "mismatch)") in lines
    assert "weights/fc1.weight/values epoch 4 (slot 3): damaged (truncated shard (2 bytes, its " \
        "index alone takes 20))" in lines
    assert "metrics/test_acc chunk (1,): missing (slot 1 is committed)" in lines
    assert "samples/label_true chunk (0,): damaged (checksum mismatch)" in lines
    assert len(err.splitlines()) == 1
    assert err.startswith(f"error: {path}: 4 problem(s) in epoch slot(s) 1, 2, 3;")


def test_layout_problems(store, capsys):
    _, path = store
    meta = Path(path, "metrics/train_loss/zarr.json")
    doc = json.loads(meta.read_text())
    doc["dimension_names"] = ["time"]
    meta.write_text(json.dumps(doc))
    shutil.rmtree(Path(path, "metrics/test_loss"))
    code, out, _ = run(capsys, "validate", path)
    assert code == 1
    assert "metrics/train_loss: dims: expected ('epoch',), got ('time',)" in out
    assert "metrics/test_loss: missing array" in out


def test_newer_schema_is_one_line(store, capsys):
    _, path = store
    zarr.open_group(path, mode="r+", use_consolidated=False).attrs["schema_version"] = 7
    code, out, err = run(capsys, "validate", path)
    assert code == 2 and out == ""
    assert err.strip() == (f"error: {path}: written by a newer latentgen (schema_version 7); this one "
                           "reads schema_version 1 and 2: upgrade latentgen to use this store")


def test_repair_uncommits_damaged_epochs_and_resume_rewrites_them(reference, store, capsys):
    config, path = store
    _, original = reference
    flip(chunk(path, "activations/relu2/values", 1, 0, 0))  # a middle epoch
    chunk(path, "metrics/train_loss", 3).unlink()  # the last one
    flip(Path(path, "state/1/optimizer/0.momentum_buffer/c/0/0"))  # a training-state copy
    code, out, err = run(capsys, "repair", path)
    assert code == 0, err
    assert "un-committed epoch 1 (slot 1)" in out and "un-committed epoch 4 (slot 3)" in out
    assert "marked state/1 invalid" in out
    assert f"python -m capture quickstart --run corruption=0.6,seed=0 --root {Path(path).resolve().parent.parent}" in out
    assert list(stores.open_run(path).epoch.values) == [0, 2]  # the rest is hidden now
    assert stores.run_attrs(path)["status"] == "running"
    assert run(capsys, "validate", path)[0] == 0  # damage left in uncommitted slots only
    root = str(Path(path).parent.parent)
    assert capture_run(config, root, progress=False) == path
    assert differences(original, path) == []


def test_repair_removes_damaged_analysis_and_refuses_the_probe_set(store, capsys):
    import xarray as xr

    from stores.results import write_analysis

    _, path = store
    write_analysis(path, {"x": xr.Dataset({"a": ("epoch", [0.5, 0.25])}, coords={"epoch": [0, 1]})})
    flip(next(p for p in Path(path, "analysis/x/a/c").rglob("*") if p.is_file()))
    flip(chunk(path, "samples/index", 0))
    code, out, err = run(capsys, "repair", path)
    assert code == 1
    assert "removed analysis/x" in out and not Path(path, "analysis/x").exists()
    assert "cannot repair: samples/index chunk (0,): damaged" in out
    assert err.startswith(f"error: {path}: 1 problem(s) outside the epochs cannot be repaired")


def test_repair_waits_for_no_one(store, capsys):
    _, path = store
    with StoreLock(path):
        code, _, err = run(capsys, "repair", path)
    assert code == 2 and "being written by another process (capture, pid" in err


def test_repair_deletes_the_temporaries_of_interrupted_writes_and_nothing_else(reference, store, capsys):
    _, path = store
    shard = next(p for p in sorted(Path(path, "activations").rglob("c/1/**/*")) if p.is_file())
    leftover = shard.with_name(f"{shard.name}.{'0' * 31}a.partial")  # as a kill leaves one
    leftover.write_bytes(shard.read_bytes()[:100])
    mine = Path(path, "notes.partial")  # not a latentgen or zarr temporary: not touched
    mine.write_text("a user's file")
    code, out, err = run(capsys, "validate", path)
    assert code == 0 and err == ""
    assert out.splitlines()[0] == ("note: 1 leftover temporary file(s) of interrupted writes (harmless; "
                                   "`python -m stores repair` and a resumed capture remove them)")
    code, out, err = run(capsys, "repair", path)
    assert code == 0 and err == ""
    assert out.splitlines() == ["removed 1 leftover temporary file(s) of interrupted writes",
                                f"{path}: nothing else to repair"]
    assert not leftover.exists() and mine.read_text() == "a user's file"
    mine.unlink()
    assert differences(reference[1], path) == []


def test_validate_reads_every_chunk(store):
    _, path = store
    report = validate(path)
    files = {p for p in Path(path).rglob("*") if p.is_file() and p.name != "zarr.json"}
    assert report.ok and report.n_chunks >= len(files) and report.n_arrays > 20


def test_unreadable_metadata_is_a_problem_not_a_crash(store, capsys):
    _, path = store
    Path(path, "weights/fc1.weight/values/zarr.json").write_text('{"zarr_format": 3, "node')
    code, out, err = run(capsys, "validate", path)
    assert code == 1 and out.startswith("weights/fc1.weight/values: unreadable metadata (")
    assert len(err.splitlines()) == 1
