"""Damage that used to read as something else (issue 14, parts 1, 3, 6 and analysis
groups): a missing chunk of a committed epoch is damage, never fill; `repair` can be
killed between any two of its writes; lost commit flags and broken array metadata are
rebuilt from what the store holds; a broken analysis group is found and removed.

Every case damages a copy of the session's tiny stores itself; every failure is one
line naming the store, what is wrong and what to do.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import stores
from stores import StoreError, slabs
from stores import repair as repair_module
from stores.__main__ import main as stores_main

from .conftest import fresh_tiny_root
from .storecmp import differences, digest

# Each test damages, validates and repairs its own copy of the stores: not in `make test-fast`.
pytestmark = pytest.mark.slow

STORE = "quickstart/corruption=0.6,seed=0.zarr"  # slots 0..3 = epochs 0, 1, 2, 4; slot 4 spare
OTHER = "quickstart/corruption=0.0,seed=0.zarr"


@pytest.fixture
def root(tiny_root, tmp_path) -> Path:
    return fresh_tiny_root(tiny_root, tmp_path / "runs")


@pytest.fixture
def store(tiny_root, tmp_path) -> str:
    """A copy of the tiny corrupted store as capture left it (analysis-free)."""
    path = tmp_path / "runs" / STORE
    shutil.copytree(tiny_root[1].parent / "pristine" / STORE, path)
    return str(path)


def chunk(store: str, array: str, *index: int) -> Path:
    return Path(store, array, "c", *map(str, index))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = stores_main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(err) -> str:
    text = str(err.value) if hasattr(err, "value") else str(err)
    assert "\n" not in text.strip(), text
    return text


def with_analysis(path: str) -> None:
    from stores.results import write_analysis

    write_analysis(path, {"dynamics": xr.Dataset({"accuracy": ("epoch", [0.5, 0.25, 0.75, 0.5]),
                                         "masc_k": ("epoch", [1, 2, 3, 4])},
                                        coords={"epoch": [0, 1, 2, 4]})})


# ------------------------------------------------------------------ 1. missing chunks
MISSING = [
    # (array, chunk index, a read of it through the library)
    ("weights/head.weight/values", (2, 0, 0), lambda p: slabs.weight_slab(p, "head.weight", 2)),
    ("weights/head.weight/values", (2, 0, 0), lambda p: stores.weights(p, "head.weight").values),
    ("weights/head.weight/values", (2, 0, 0), lambda p: slabs.weight_slabs(p, "head.weight", [0, 2])),
    ("activations/relu1/values", (1, 0, 0), lambda p: slabs.slab(p, "relu1", 1)),
    ("activations/relu1/values", (1, 0, 0), lambda p: stores.activations(p, "relu1").values),
    ("metrics/test_acc", (3,), lambda p: stores.metrics(stores.open_run(p)).load()),
    ("metrics/test_acc", (3,), lambda p: stores.open_runs([p])["metrics"].to_dataset().load()),
]


@pytest.mark.parametrize("array, index, read", MISSING,
                         ids=[f"{a.split('/')[1]}-{i}" for i, (a, _, _) in enumerate(MISSING)])
def test_a_missing_chunk_of_a_committed_epoch_is_damage_not_fill(store, array, index, read):
    chunk(store, array, *index).unlink()
    epoch = {1: 1, 2: 2, 3: 4}[index[0]]
    with pytest.raises(StoreError) as err:
        read(store)
    assert one_line(err) == (
        f"{store}: {array} chunk {index} of committed epoch {epoch} (slot {index[0]}) is missing "
        f"(damage, not fill): run `python -m stores validate {store}`, then "
        f"`python -m stores repair {store}` and resume the capture")


def test_reads_that_need_no_missing_chunk_go_on(store):
    chunk(store, "activations/relu1/values", 1, 0, 0).unlink()
    assert slabs.slab(store, "relu1", 2).shape == (1797, 48)  # another epoch
    assert slabs.slab(store, "relu2", 1).shape == (1797, 32)  # another layer
    assert list(stores.open_run(store).epoch.values) == [0, 1, 2, 4]  # lazily: nothing read yet
    # The spare slot was never written and is not committed: nobody's data, reads as fill.
    assert np.isnan(slabs.slab(store, "relu1", 4)).all()


def test_a_missing_epoch_number_of_a_committed_slot_is_damage(store):
    chunk(store, "epochs/epoch", 2).unlink()
    with pytest.raises(StoreError) as err:
        slabs.committed_slots(store)
    assert one_line(err).startswith(f"{store}: epochs/epoch chunk (2,) of committed slot 2 is "
                                    "missing (damage, not fill): run `python -m stores validate")


def test_a_missing_probe_set_chunk_is_damage(store):
    chunk(store, "samples/label_observed", 0).unlink()
    with pytest.raises(StoreError) as err:
        slabs.sample_table(store)
    assert one_line(err).startswith(f"{store}: samples/label_observed chunk (0,) is missing (the "
                                    "probe set is damaged)")


def test_analyze_names_store_layer_and_epoch(root, tiny_root, capsys):
    from analyze.__main__ import main as analyze_main

    store = str(root / STORE)
    shutil.rmtree(root / OTHER)  # one store is enough (analyze goes on without the other)
    chunk(store, "activations/input/values", 0, 0, 0).unlink()  # what the first task reads
    code = analyze_main(["quickstart", "--pipelines", str(tiny_root[0]), "--root", str(root),
                         "--eager", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {store}: activations/input/values chunk (0, 0, 0) of committed "
                          "epoch 0 (slot 0) is missing (damage, not fill): run `python -m stores "
                          "validate"), err
    assert not Path(store, "analysis").exists()


def test_repair_of_a_missing_chunk_drops_the_analysis(store, capsys):
    with_analysis(store)
    chunk(store, "weights/head.weight/values", 3, 0, 0).unlink()
    code, out, err = run(capsys, "repair", store)
    assert code == 0, err
    assert "un-committed epoch 4 (slot 3)" in out.splitlines()
    assert ("removed analysis (it covered the epochs that are no longer committed; "
            "`python -m analyze` computes it again)") in out.splitlines()
    assert not Path(store, "analysis").exists()
    assert list(slabs.committed_slots(store)[1]) == [0, 1, 2]
    assert stores.run_attrs(store)["status"] == "running"


def test_repair_also_drops_results_a_killed_analysis_left_aside(store, capsys):
    aside = Path(f"{store}.analysis-dynamics.old")  # what a kill during a swap leaves
    shutil.copytree(Path(store, "samples"), aside)  # (any group: it is only removed)
    chunk(store, "metrics/test_acc", 2).unlink()
    assert run(capsys, "repair", store)[0] == 0
    assert not aside.exists()


def test_repair_waits_for_no_analysis(store, capsys):
    from stores.lock import StoreLock

    chunk(store, "metrics/test_acc", 2).unlink()
    with StoreLock(store, purpose="analysis"):
        code, _, err = run(capsys, "repair", store)
    assert code == 2 and err.startswith(f"error: {store} is being analysed by another process (")
    assert len(err.splitlines()) == 1 and list(slabs.committed_slots(store)[1]) == [0, 1, 2, 4]


# ------------------------------------------------------------------ 3. a crash-safe repair
class Crash(RuntimeError):
    """The simulated death of the repair."""


def kill_repair_at(monkeypatch, step: str, call: int) -> None:
    """Make the repair die right after its `call`-th write of kind `step`."""
    calls = {"n": 0}

    def hook(name: str) -> None:
        if name == step:
            calls["n"] += 1
            if calls["n"] == call:
                raise Crash(f"{step} {call}")

    monkeypatch.setattr(repair_module, "_step", hook)


def damage_two_epochs(store: str) -> None:
    with_analysis(store)
    chunk(store, "activations/relu1/values", 1, 0, 0).unlink()
    data = bytearray(chunk(store, "weights/fc2.weight/values", 2, 0, 0).read_bytes())
    data[10] ^= 0xFF
    chunk(store, "weights/fc2.weight/values", 2, 0, 0).write_bytes(bytes(data))


# Every write of the repair of `damage_two_epochs`, in its order (the last, the second
# un-commit, ends it).
STEPS = [("status", 1), ("analysis", 1), ("uncommit", 1)]


@pytest.fixture(scope="module")
def repaired_reference(tiny_root, tmp_path_factory) -> str:
    """The tiny store damaged by `damage_two_epochs` and repaired without a kill."""
    path = str(tmp_path_factory.mktemp("repaired") / "reference.zarr")
    shutil.copytree(tiny_root[1].parent / "pristine" / STORE, path)
    damage_two_epochs(path)
    repair_module.repair(path)
    return path


@pytest.mark.parametrize("step, call", STEPS, ids=[f"{s}-{c}" for s, c in STEPS])
def test_a_repair_killed_between_two_writes_is_finished_by_the_next(store, repaired_reference,
                                                                    step, call, monkeypatch, capsys):
    damage_two_epochs(store)
    with monkeypatch.context() as patch:
        kill_repair_at(patch, step, call)
        with pytest.raises(Crash):
            repair_module.repair(store)
    # Killed anywhere: marked running (capture resumes it, never skips it as complete), and
    # the damaged epochs are still committed until they are un-committed (so found again).
    assert stores.run_attrs(store)["status"] == "running"
    flags = zarr.open_array(f"{store}/epochs/committed", mode="r")[:]
    assert list(flags[:4]) == [True, step != "uncommit", True, True]
    code, _, err = run(capsys, "repair", store)
    assert code == 0, err
    assert differences(repaired_reference, store) == []


def test_a_complete_store_with_uncommitted_epochs_inside_its_range_is_a_problem(store, capsys):
    """What the old repair left when killed between un-committing and marking the store
    running: marked complete, an epoch missing; capture would skip it for good."""
    chunk(store, "activations/relu1/values", 1, 0, 0).unlink()
    zarr.open_group(store, mode="r+", use_consolidated=False)["epochs/committed"][1] = False
    zarr.consolidate_metadata(store)
    before = digest(store)
    code, out, err = run(capsys, "validate", store)
    assert code == 1 and digest(store) == before
    assert out.splitlines()[0] == (
        "epochs/committed chunk (1,): epoch 1 is not committed in a store marked complete (an "
        "interrupted repair, or data lost): repair marks it running so that resuming the capture "
        "rewrites it")
    # and the epoch coordinates, which still show epoch 1 to a plain xarray reader
    assert sorted(line.split(":")[0] for line in out.splitlines()[1:4]) == [
        "activations/epoch", "metrics/epoch", "weights/epoch"]
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {store}: 4 problem(s);")
    with pytest.raises(StoreError) as info:  # readers do not show a silently shorter run
        slabs.committed_slots(store)
    assert one_line(info) == (f"{store}: marked complete but epoch(s) 1 are not committed (lost "
                              "commit flags or an interrupted repair): run `python -m stores "
                              f"repair {store}`")
    code, out, _ = run(capsys, "repair", store)
    assert code == 0 and f"marked {store} running (so that resuming the capture completes it)" in out
    assert stores.run_attrs(store)["status"] == "running"
    assert run(capsys, "validate", store)[0] == 0


@pytest.mark.slow  # resumes the capture
def test_after_a_killed_repair_repair_and_resume_give_the_uninterrupted_store(
        root, tiny_root, monkeypatch, capsys):
    from capture.run import capture_run

    store = str(root / STORE)
    damage_two_epochs(store)
    with monkeypatch.context() as patch:
        kill_repair_at(patch, "uncommit", 1)
        with pytest.raises(Crash):
            repair_module.repair(store)
    assert run(capsys, "repair", store)[0] == 0
    config = next(c for c in stores.load_pipeline("quickstart", tiny_root[0]).runs()
                  if c.store_path(str(root)) == store)
    assert capture_run(config, str(root), progress=False) == store
    assert differences(tiny_root[1].parent / "pristine" / STORE, store) == []


# ------------------------------------------------------------------ 6. rebuilt from what is left
def repaired_as_captured(store: str, tiny_root, capsys, expect: list[str],
                         validated: bool = False) -> None:
    """validate fails (one line, nothing changed), repair prints `expect`, and the store
    is again the one the capture wrote."""
    if not validated:
        before = digest(store)
        code, out, err = run(capsys, "validate", store)
        assert code == 1 and digest(store) == before and len(err.splitlines()) == 1
    code, out, err = run(capsys, "repair", store)
    assert code == 0, err
    for line in expect:
        assert line in out.splitlines(), out
    assert differences(tiny_root[1].parent / "pristine" / STORE, Path(store).resolve()) == []


@pytest.mark.parametrize("lose", ["array", "chunks"])
def test_lost_commit_flags_are_rebuilt_from_the_complete_epochs(store, tiny_root, capsys, lose):
    shutil.rmtree(Path(store, "epochs/committed") / ("c" if lose == "chunks" else ""))
    with pytest.raises(StoreError, match=r"marked complete but epoch\(s\) 0, 1, 2, 4 are not committed"):
        slabs.committed_slots(store)  # no longer "complete with 0 epochs"
    code, out, err = run(capsys, "ls", str(Path(store).parent))
    assert code == 2 and f"{store:60s} damaged" in out and len(err.splitlines()) == 1
    rebuilt = ["rebuilt the metadata of epochs/committed from the schema"] if lose == "array" else []
    repaired_as_captured(store, tiny_root, capsys, rebuilt + [
        f"committed epoch {e} (slot {s}) again (every chunk of it present and valid)"
        for s, e in enumerate([0, 1, 2, 4])])


def test_one_lost_flag_before_a_committed_epoch(store, tiny_root, capsys):
    chunk(store, "epochs/committed", 2).unlink()
    _, out, _ = run(capsys, "validate", store)
    assert ("epochs/committed chunk (2,): epoch 2 is not committed, though every chunk of it is "
            "present and valid (a lost flag; repair commits it again)") in out.splitlines()
    repaired_as_captured(store, tiny_root, capsys, [("committed epoch 2 (slot 2) again (every "
                                                     "chunk of it present and valid)")])


def test_only_whole_epochs_are_committed_again(store, capsys):
    shutil.rmtree(Path(store, "epochs/committed/c"))
    chunk(store, "activations/relu2/values", 2, 0, 0).unlink()  # epoch 2 is not whole
    code, out, err = run(capsys, "repair", store)
    assert code == 0, err
    assert [line for line in out.splitlines() if line.startswith("committed epoch")] == [
        f"committed epoch {e} (slot {s}) again (every chunk of it present and valid)"
        for s, e in [(0, 0), (1, 1), (3, 4)]]
    assert f"marked {store} running (so that resuming the capture completes it)" in out
    assert list(slabs.committed_slots(store)[1]) == [0, 1, 4]
    assert stores.run_attrs(store)["status"] == "running"  # the capture rewrites epoch 2


def rewrite(path: Path, change) -> None:
    path.write_bytes(change(json.loads(path.read_text())))


UNREADABLE = {  # array -> its zarr.json as found
    "activations/relu1/values": lambda d: b"\x00{not json",
    "weights/head.weight/values": lambda d: b'{"zarr_format": 3, "node_type": "array"}',
    "activations/relu2/values": lambda d: json.dumps({**d, "data_type": "int16"}).encode(),
    "epochs/committed": lambda d: b"",
}


def test_unreadable_array_metadata_is_written_again_from_the_schema(store, tiny_root, capsys):
    for array, change in UNREADABLE.items():
        rewrite(Path(store, array, "zarr.json"), change)
    _, out, _ = run(capsys, "validate", store)
    lines = sorted(line for line in out.splitlines() if not line.startswith("note: "))
    assert "note: the rest of the store is checked once its metadata can be read" in out
    assert len(lines) == 4 and all(": unreadable metadata (" in line for line in lines)
    assert lines[1] == ("activations/relu2/values: unreadable metadata (Invalid type: NaN. "
                        "Expected an integer.)")
    assert lines[3] == "weights/head.weight/values: unreadable metadata ('data_type')"
    repaired_as_captured(store, tiny_root, capsys, [
        f"rebuilt the metadata of {array} from the schema" for array in UNREADABLE])


WRONG = {  # array -> (its zarr.json as found, what validate says)
    "activations/relu2/values": (
        lambda d: json.dumps({**d, "data_type": "int16", "fill_value": 0}).encode(),
        "data_type: expected float16, got int16; fill_value: expected NaN, got 0"),
    "metrics/test_acc": (lambda d: json.dumps({**d, "codecs": d["codecs"][:1]}).encode(),
                         "codecs: expected [bytes, crc32c], got [bytes]"),
    "weights/fc1.weight/values": (  # shards of two inner chunks instead of one
        lambda d: json.dumps({**d, "chunk_grid": {"name": "regular", "configuration":
                                                  {"chunk_shape": [1, 96, 64]}}}).encode(),
        "chunk_grid: expected [1, 48, 64], got [1, 96, 64]"),
}


def test_array_metadata_is_checked_against_the_schema(store, tiny_root, capsys, monkeypatch):
    for array, (change, _) in WRONG.items():
        rewrite(Path(store, array, "zarr.json"), change)
    monkeypatch.chdir(Path(store).parent)  # a relative path, as typed
    _, out, _ = run(capsys, "validate", Path(store).name)
    for array, (_, what) in WRONG.items():
        assert f"{array}: {what} (the schema's; repair writes it again)" in out.splitlines(), out
    repaired_as_captured(Path(store).name, tiny_root, capsys, [
        f"rebuilt the metadata of {array} from the schema" for array in WRONG], validated=True)


def test_a_wrong_consolidated_copy_is_found_and_consolidated_again(store, tiny_root, capsys):
    def spread(doc):  # what consolidating a wrong zarr.json does
        node = doc["consolidated_metadata"]["metadata"]["activations/relu2/values"]
        node.update(data_type="int16", fill_value=0)
        return json.dumps(doc).encode()

    rewrite(Path(store, "zarr.json"), spread)
    _, out, _ = run(capsys, "validate", store)
    assert out.startswith("activations/relu2/values: consolidated metadata: data_type: expected "
                          "float16, got int16"), out
    repaired_as_captured(store, tiny_root, capsys,
                         ["rebuilt the metadata of activations/relu2/values from the schema"])


# ------------------------------------------------------------------ 2. analysis groups
def test_an_empty_or_partial_analysis_group_is_found_and_removed(store, capsys):
    with_analysis(store)
    zarr.open_group(store, mode="r+", use_consolidated=False).create_group("analysis/edit")
    shutil.rmtree(Path(store, "analysis/dynamics/masc_k"))
    before = digest(store)
    code, out, err = run(capsys, "validate", store)
    assert code == 1 and digest(store) == before and len(err.splitlines()) == 1
    assert out.splitlines() == [
        ("analysis/dynamics: partial (no masc_k): an interrupted analysis write (repair removes "
         "it; `python -m analyze` computes it again)"),
        ("analysis/edit: empty: an interrupted analysis write (repair removes it; `python -m "
         "analyze` computes it again)")]
    code, out, err = run(capsys, "repair", store)
    assert code == 0, err
    assert out.splitlines() == [
        "removed analysis/dynamics (broken; `python -m analyze` computes it again)",
        "removed analysis/edit (broken; `python -m analyze` computes it again)"]
    assert not Path(store, "analysis/edit").exists() and run(capsys, "validate", store)[0] == 0


def test_a_whole_analysis_group_validates(store, capsys):
    with_analysis(store)
    assert run(capsys, "validate", store)[0] == 0


def test_unreadable_analysis_or_state_metadata_is_removed_not_refused(store, capsys):
    with_analysis(store)
    Path(store, "analysis/dynamics/accuracy/zarr.json").write_text("garbage")
    Path(store, "state/1/optimizer/0.momentum_buffer/zarr.json").write_text("garbage")
    code, out, err = run(capsys, "repair", store)
    assert code == 0, err
    assert out.splitlines() == [
        "removed analysis/dynamics (broken; `python -m analyze` computes it again)",
        "removed state/1 (unreadable training state; a resume uses the other copy or retrains)"]
    assert run(capsys, "validate", store)[0] == 0
