"""Analysis writes that a kill cannot break, and one analysis of a store at a time.

Each `analysis/<name>` group is written aside and swapped in (`stores.results`), so a
kill at any step leaves, for each group, the old one or the new one: readers
(`open_run`) keep working and the next `analyze` finishes the job. A group that an
analysis from before atomic writes left half written is recomputed, never trusted. A
second analysis of a store is refused while one holds its lock; a stale lock file of a
dead process is taken over. Kills are exceptions raised in process at the exact write
(as in test_resume); the stores are copies of the session's tiny ones."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import stores
from analyze import pipeline as analyze_pipeline
from analyze.__main__ import main as analyze_main
from analyze.pipeline import analyse
from stores import load_pipeline, results
from stores.lock import LockError, StoreLock, lock_path

from .conftest import fresh_tiny_root
from .storecmp import digest
from .test_resume import Crash, crash_at

pytestmark = pytest.mark.slow  # whole analyses, killed and run again: not in `make test-fast`

RUN = "corruption=0.6,seed=0"


def _groups(path: str) -> dict[str, xr.Dataset]:
    """The analysis groups as open_run shows them (it must keep working)."""
    tree = stores.open_run(path)
    return {name: tree[f"analysis/{name}"].to_dataset().compute()
            for name in ("dynamics", "edit") if name in tree["analysis"].children}


def _same(a: xr.Dataset, b: xr.Dataset) -> None:
    assert set(a.data_vars) == set(b.data_vars)
    for var in a.data_vars:
        np.testing.assert_array_equal(a[var].values, b[var].values, err_msg=var)


@pytest.fixture(scope="module")
def analysed_once(tiny_root, tmp_path_factory) -> Path:
    """A copy of the tiny stores after one full analysis (made once for this file)."""
    root = fresh_tiny_root(tiny_root, tmp_path_factory.mktemp("analysed") / "runs")
    analyse(load_pipeline("quickstart", tiny_root[0]), str(root), progress=False)
    return root


@pytest.fixture
def analysed(tiny_root, analysed_once, tmp_path, monkeypatch):
    """(pipeline, root, store path, its analysis groups): a copy of `analysed_once`.
    The report's figures are not drawn (they are not what these tests are about)."""
    from analyze import report

    for name in ("dynamics_figure", "heatmap_figure"):
        monkeypatch.setattr(report, name, lambda *args, **kwargs: None)
    root = tmp_path / "runs"
    shutil.copytree(analysed_once, root)
    path = str(root / "quickstart" / f"{RUN}.zarr")
    return load_pipeline("quickstart", tiny_root[0]), root, path, _groups(path)


def _newer(groups: dict[str, xr.Dataset]) -> dict[str, xr.Dataset]:
    """The same groups, told apart from the stored ones: values + 1, an attribute."""
    return {name: (ds.drop_encoding() + 1).assign_attrs(ds.attrs, generation=2)
            for name, ds in groups.items()}


KILLS = [
    # (what fails, on which call): where the write dies
    ((xr.Dataset, "to_zarr"), 2),  # dynamics written aside, edit not yet: nothing swapped
    ((results, "_swap_in"), 2),  # dynamics swapped in, edit not; consolidated metadata dropped
    ((results, "consolidate"), 1),  # both swapped, the store not consolidated again
    ((results, "_rename"), 2),  # no RENAME_EXCHANGE: an old group aside, the new one not in
]


@pytest.mark.parametrize("target, call", KILLS, ids=["aside", "between-swaps", "before-consolidation",
                                                     "between-renames"])
def test_a_kill_while_writing_leaves_whole_groups_and_the_next_analysis_finishes(
        analysed, monkeypatch, target, call):
    pipeline, root, path, before = analysed
    new = _newer(results.stored_analysis(path))
    with monkeypatch.context() as patch:
        if target[1] == "_rename":
            patch.setattr(results, "_exchange", lambda a, b: False)
        crash_at(patch, *target, call)
        with pytest.raises(Crash):
            results.write_analysis(path, new)  # what `analyze` runs to write a store's results
    after = _groups(path)  # open_run reads the store, and each group is a whole one
    for name, ds in after.items():
        _same(ds, new[name] if ds.attrs.get("generation") == 2 else before[name])
    first = list(new)[0]  # moved aside, its replacement not yet in: absent, never partial
    assert set(after) == ({"dynamics", "edit"} - {first} if target[1] == "_rename" else {"dynamics", "edit"})
    analyse(pipeline, str(root), progress=False)  # tidies, puts back, consolidates; computes nothing new
    final = _groups(path)
    assert set(final) == {"dynamics", "edit"}
    for name, ds in final.items():
        _same(ds, new[name] if ds.attrs.get("generation") == 2 else before[name])
    assert not [p for p in os.listdir(Path(path).parent) if ".analysis-" in p]  # nothing left aside
    meta = zarr.open_group(path, mode="r").metadata.consolidated_metadata
    assert meta is not None and "analysis/edit/accuracy" in meta.flattened_metadata
    assert not results.consolidate_if_stale(path)  # consolidated as the groups now are


def test_half_written_groups_from_an_old_crash_are_recomputed(analysed, caplog):
    """What an analysis killed before writes were atomic left: an empty `analysis/edit`
    (every `analyze` crashed on it, and `open_run` too), and a dynamics group without its
    accuracies."""
    pipeline, root, path, before = analysed
    for child in (Path(path) / "analysis" / "edit").iterdir():
        if child.is_dir():
            shutil.rmtree(child)
    shutil.rmtree(Path(path) / "analysis" / "dynamics" / "accuracy")
    analyse(pipeline, str(root), progress=False)
    assert f"{path}: analysis/edit is incomplete (no arrays)" in caplog.text
    assert f"{path}: analysis/dynamics is incomplete (no 'accuracy')" in caplog.text
    after = _groups(path)
    for key in ("dynamics", "edit"):
        _same(after[key], before[key])


def test_a_second_analysis_of_a_store_is_refused_before_computing(analysed, tiny_root, capsys,
                                                                  monkeypatch):
    pipeline, root, path, _ = analysed
    argv = ["quickstart", "--root", str(root), "--eager", "--quiet", "--pipelines", str(tiny_root[0])]
    computed = []
    monkeypatch.setattr(analyze_pipeline, "stored_analysis", lambda p: computed.append(p) or {})
    before = {p.name: digest(p) for p in (Path(root) / "quickstart").glob("*.zarr")}
    with StoreLock(path, purpose="analysis"):
        assert analyze_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {path} is being analysed by another process (analysis, pid "
                             f"{os.getpid()} on ")
    assert err[0].endswith("; wait for it to end or stop it, then run this again")
    assert computed == []  # refused before reading or computing anything
    assert {p.name: digest(p) for p in (Path(root) / "quickstart").glob("*.zarr")} == before


def test_a_stale_lock_is_taken_over_and_a_capture_lock_does_not_block(analysed):
    """A lock file left by a dead analysis (SIGKILL: its flock died with it) is simply
    locked again; a capture writing the store (its own lock) does not stop analysis."""
    pipeline, root, path, _ = analysed
    stale = Path(lock_path(path, "analysis"))
    stale.write_text(json.dumps({"pid": 2**22 + 1, "host": "gone", "purpose": "analysis"}))
    with StoreLock(path):  # as a capture writing the store holds it
        analyse(pipeline, str(root), progress=False)
    assert not stale.exists()  # taken over, then released
    with StoreLock(path, purpose="analysis"):
        with pytest.raises(LockError, match=r"being analysed by another process \(analysis, pid \d+"):
            StoreLock(path, purpose="analysis").acquire()


@pytest.mark.parametrize("where", ["local", "memory"])
def test_write_analysis_replaces_a_group_whole(tmp_path, where):
    """The swap on its own, on a tiny hand-made store: local (RENAME_EXCHANGE, and the
    two-rename fallback) and memory:// (the object-store order)."""
    path = str(tmp_path / "r.zarr") if where == "local" else f"memory://{tmp_path.name}/r.zarr"
    root = zarr.open_group(path, mode="w", zarr_format=3)
    root.attrs.update({"schema_version": stores.SCHEMA_VERSION, "status": "complete"})
    stores.consolidate(path)
    for n in (2, 3, 5):
        ds = xr.Dataset({"x": ("epoch", np.arange(n, dtype=float))}, coords={"epoch": np.arange(n)})
        results.write_analysis(path, {"dynamics": ds})
        with xr.open_zarr(path, group="analysis/dynamics", consolidated=False) as back:
            np.testing.assert_array_equal(back["x"].values, np.arange(n))
        with xr.open_zarr(path, group="analysis/dynamics", consolidated=True) as back:
            assert back.sizes["epoch"] == n  # the consolidated metadata follows
    fs, base = stores.location.filesystem(stores.location.parent(path))
    assert [p for p in fs.ls(base, detail=False) if ".analysis-" in p] == []


def test_a_full_disk_while_writing_is_one_line_and_keeps_the_old_results(analysed, monkeypatch):
    pipeline, root, path, before = analysed
    new = _newer(results.stored_analysis(path))
    original = xr.Dataset.to_zarr

    def full(self, store, *args, **kwargs):
        original(self, store, *args, **kwargs)  # the first group fits, then the disk is full
        monkeypatch.setattr(xr.Dataset, "to_zarr", _no_space)
        _no_space()

    monkeypatch.setattr(xr.Dataset, "to_zarr", full)
    with pytest.raises(stores.StoreError) as info:
        results.write_analysis(path, new)
    assert str(info.value) == (f"{path}: cannot write analysis/{list(new)[0]} (no space left on device); "
                               "the captured data and the earlier analysis results are intact: free "
                               "space or make the folder writable, then run the analysis again")
    assert not [p for p in os.listdir(Path(path).parent) if ".analysis-" in p]
    for name, ds in _groups(path).items():
        _same(ds, before[name])


def _no_space(*args, **kwargs):
    raise OSError(28, "No space left on device")
