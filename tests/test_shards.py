"""Version-2 stores shard activations and weights (one file per epoch slot and node):
plain zarr-python and xarray read what the writer wrote, the shards are byte for byte
the ones zarr-python writes itself, `validate` names a damaged inner chunk by epoch,
node and sample block, and `repair` plus a rewrite give back the undamaged store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from stores import LayerSpec, RunWriter, StoreError, schema, shards
from stores.repair import repair
from stores.shardio import ShardWriter, geometry, handover_rows
from stores.validate import validate

from .storecmp import differences, inner_chunks

N = 3000
UNITS = {"wide": 700, "narrow": 5}  # wide: 3 inner chunks of 1000 samples (float16)
PARAMS = {"fc.weight": (600, 1000), "fc.bias": (10,), "step": ()}
EPOCHS = [0, 2, 4]


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    acts = {(s, name): rng.standard_normal((N, u)).astype(np.float16)
            for s in range(len(EPOCHS)) for name, u in UNITS.items()}
    weights = {s: {"fc.weight": rng.standard_normal((600, 1000)).astype(np.float32),
                   "fc.bias": rng.standard_normal(10).astype(np.float32),
                   "step": np.float32(s)} for s in range(len(EPOCHS))}
    return acts, weights


def _create(path: Path, compressor=None) -> RunWriter:
    samples = {"split": np.array(["train"] * (N - 500) + ["test"] * 500), "index": np.arange(N),
               "label_true": np.arange(N) % 10, "label_observed": np.arange(N) % 10,
               "corrupted": np.zeros(N, bool)}
    return RunWriter.create(
        str(path), attrs={}, schedule=EPOCHS, samples=samples, compressor=compressor,
        layers=[LayerSpec(name, u, (u,)) for name, u in UNITS.items()], params=PARAMS)


def _write_slot(writer: RunWriter, slot: int, acts, weights, block=None) -> None:
    for name in UNITS:
        b = block or writer.sample_block(name)
        for start in range(0, N, b):
            writer.write_activations(slot, name, start, acts[(slot, name)][start : start + b])
    writer.write_weights(slot, weights[slot])
    writer.write_metrics(slot, {"test_acc": 0.25 * slot})
    writer.commit(slot, EPOCHS[slot])


def _store(path: Path, compressor=None, block=None) -> tuple:
    acts, weights = _data()
    writer = _create(path, compressor)
    for slot in range(len(EPOCHS)):
        _write_slot(writer, slot, acts, weights, block)
    writer.finish()
    return acts, weights


def _shard_files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*")
            if p.is_file() and p.name != "zarr.json"}


@pytest.mark.parametrize("compressor", [None, "zstd"])
def test_plain_zarr_and_xarray_read_what_was_written(tmp_path, compressor):
    path = tmp_path / "s.zarr"
    acts, weights = _store(path, compressor)
    root = zarr.open_group(str(path), mode="r")
    for (slot, name), values in acts.items():
        array = root[f"activations/{name}/values"]
        assert array.shards[:2] == (1, array.shards[1]) and array.shards[1] >= N
        np.testing.assert_array_equal(array[slot], values)
    for slot, state in weights.items():
        for name, values in state.items():
            np.testing.assert_array_equal(root[f"weights/{name}/values"][slot], values)
    tree = xr.open_datatree(str(path), engine="zarr")
    np.testing.assert_array_equal(tree["activations/wide/values"].values[1], acts[(1, "wide")])
    np.testing.assert_array_equal(tree["weights/fc.weight/values"].values[2], weights[2]["fc.weight"])
    # One file per slot and node: the file count grows with epochs x nodes.
    assert sorted(p.name for p in (path / "activations/wide/values/c").rglob("*") if p.is_file()) \
        == ["0", "0", "0"]


@pytest.mark.parametrize("compressor", [None, "zstd"])
@pytest.mark.parametrize("block", [None, 700])  # capture's hand-overs; odd ones, kept until whole
def test_shards_are_the_bytes_zarr_writes(tmp_path, compressor, block):
    """The same arrays written through zarr-python into arrays of the same metadata give
    the same inner chunks, checksums included, and the same files wherever the writer
    does not align inner chunks to pages (where it does, they start on one)."""
    path = tmp_path / "s.zarr"
    acts, weights = _store(path, compressor, block)
    for node in [f"activations/{n}/values" for n in UNITS] + [f"weights/{p}/values" for p in PARAMS]:
        theirs = tmp_path / "zarr" / node
        theirs.mkdir(parents=True)
        shutil.copy(path / node / "zarr.json", theirs / "zarr.json")
        array = zarr.open_array(str(theirs), mode="r+").with_config({"write_empty_chunks": True})
        for slot in range(len(EPOCHS)):
            top, name = node.split("/")[:2]
            array[slot] = acts[(slot, name)] if top == "activations" else weights[slot][name]
        ours, zarrs = _shard_files(path / node), _shard_files(theirs)
        assert ours.keys() == zarrs.keys(), node
        cut = geometry(zarr.open_array(str(path / node)))
        for key, raw in ours.items():
            encoded = len(inner_chunks(zarrs[key], cut.n_inner)[0])
            if compressor or shards.stride(encoded) == encoded:
                assert raw == zarrs[key], (node, key)
            else:
                assert inner_chunks(raw, cut.n_inner) == inner_chunks(zarrs[key], cut.n_inner)
                assert all(o % shards.PAGE == 0 for o, _ in
                           shards.decode_index(raw, cut.n_inner).tolist()), (node, key)


def test_the_index_is_zarrs(tmp_path):
    array = zarr.create_array(str(tmp_path / "a"), shape=(1, 10, 3), shards=(1, 12, 3),
                              chunks=(1, 4, 3), dtype="float32", fill_value=np.nan,
                              compressors=schema.compressors(schema.PLAIN))
    array[0] = np.ones((10, 3), np.float32)
    raw = (tmp_path / "a/c/0/0/0").read_bytes()
    assert raw[-shards.index_nbytes(3):] == shards.dense_index(3, 4 * 3 * 4 + 4)
    assert shards.inner_damage(raw, 3, 52) == []


def test_capture_hands_over_whole_inner_chunks_of_about_a_chunk(tmp_path):
    writer = _create(tmp_path / "s.zarr")
    array = zarr.open_array(str(tmp_path / "s.zarr/activations/wide/values"))
    cut = geometry(array)
    assert cut.block * 700 * 2 <= schema.INNER_BYTES and cut.n_inner == 3
    assert writer.sample_block("wide") == handover_rows(array) == N  # all 3 inner chunks fit 8 MiB
    assert writer.sample_block("wide") % cut.block == 0 or writer.sample_block("wide") == N


def test_an_incomplete_shard_is_never_committed(tmp_path):
    path = tmp_path / "s.zarr"
    acts, weights = _data()
    writer = _create(path)
    writer.write_activations(0, "wide", 0, acts[(0, "wide")][:1000])  # 1 of 3 inner chunks
    writer.write_weights(0, weights[0])
    with pytest.raises(StoreError) as err:
        writer.commit(0, 0)
    assert str(err.value) == (f"{path}: activations/wide/values of epoch slot 0 is incomplete at "
                              "its commit (rows 1000-1999, 2000-2999 never written): the slot is "
                              "not committed")
    assert not zarr.open_array(str(path / "epochs/committed"))[0]
    assert not (path / "activations/wide/values/c/0/0/0").exists()  # never half a shard
    assert len(list(path.rglob("*.partial"))) == 1
    report = validate(str(path))
    assert report.ok and any("leftover temporary file" in note for note in report.notes)
    # Written again whole (as a resumed capture does), it is committed.
    _write_slot(RunWriter.open(str(path)), 0, acts, weights)
    np.testing.assert_array_equal(zarr.open_array(str(path / "activations/wide/values"))[0],
                                  acts[(0, "wide")])


def _flip(file: Path, at: int) -> None:
    data = bytearray(file.read_bytes())
    data[at] ^= 0xFF
    file.write_bytes(bytes(data))


def test_a_flipped_byte_is_named_by_epoch_node_and_block_and_repaired(tmp_path):
    reference, damaged = tmp_path / "ref.zarr", tmp_path / "damaged.zarr"
    acts, weights = _store(reference)
    shutil.copytree(reference, damaged)
    inner = shards.stride(1000 * 700 * 2 + 4)  # where `wide`'s second inner chunk starts
    _flip(damaged / "activations/wide/values/c/1/0/0", inner + 10)  # slot 1, samples 1000-1999
    _flip(damaged / "weights/fc.weight/values/c/2/0/0", 20)  # slot 2, rows 0-299
    report = validate(str(damaged))
    assert sorted(map(str, report.problems)) == [
        "activations/wide/values epoch 2 (slot 1), samples 1000-1999: damaged (checksum mismatch)",
        "weights/fc.weight/values epoch 4 (slot 2), rows 0-299: damaged (checksum mismatch)"]
    found, result = repair(str(damaged))
    assert sorted(result.uncommitted) == [(1, 2), (2, 4)]
    writer = RunWriter.open(str(damaged))  # what a resumed capture writes
    for slot in (1, 2):
        _write_slot(writer, slot, acts, weights)
    writer.finish()
    assert validate(str(damaged)).ok
    assert differences(reference, damaged) == []


def test_a_damaged_index_names_the_shard(tmp_path):
    path = tmp_path / "s.zarr"
    _store(path)
    file = path / "activations/narrow/values/c/0/0/0"
    _flip(file, len(file.read_bytes()) - 6)
    assert [str(p) for p in validate(str(path)).problems] == [
        "activations/narrow/values epoch 0 (slot 0): damaged (shard index checksum mismatch)"]


def test_a_version_1_array_is_written_one_file_per_chunk(tmp_path):
    """Decided by the array's metadata: an unsharded array (a version-1 store resumed)
    is left to the chunk path."""
    array = zarr.create_array(str(tmp_path / "a"), shape=(2, 10, 3), chunks=(1, 5, 3),
                              dtype="float16", fill_value=np.nan,
                              compressors=schema.compressors(schema.PLAIN))
    assert geometry(array) is None and handover_rows(array) == 5
    assert not ShardWriter("x").write("a", array, 0, 0, np.ones((5, 3), np.float16))
    v1 = json.loads((Path(__file__).parent / "fixtures/v1_store.zarr/activations/fc1/values/zarr.json")
                    .read_text())
    assert v1["codecs"][0]["name"] == "bytes"  # the fixture's layout: no sharding


KILLED = """
import sys, time
from pathlib import Path
from tests.test_shards import _create, _data, _write_slot
acts, weights = _data()
writer = _create(Path(sys.argv[1]))
_write_slot(writer, 0, acts, weights)
for start in (0, 1000, 2000):  # slot 1 of `wide`, one inner chunk at a time
    writer.write_activations(1, "wide", start, acts[(1, "wide")][start : start + 1000])
    time.sleep(60)
"""


@pytest.mark.slow  # a process killed in the middle of a shard
def test_a_kill_in_the_middle_of_a_shard_then_resume_gives_the_uninterrupted_store(tmp_path):
    import subprocess
    import sys
    import time

    from stores.location import remove_partial_files

    reference, path = tmp_path / "ref.zarr", tmp_path / "killed.zarr"
    acts, weights = _store(reference)
    process = subprocess.Popen([sys.executable, "-c", KILLED, str(path)],
                               cwd=Path(__file__).resolve().parents[1])
    shard = path / "activations/wide/values/c/1/0"
    deadline = time.monotonic() + 120
    while not list(shard.glob("0.*.partial")) and time.monotonic() < deadline:
        assert process.poll() is None, "the writer died before it wrote a shard's first inner chunk"
        time.sleep(0.01)
    process.kill()
    process.wait()
    assert list(shard.glob("0.*.partial")) and not (shard / "0").exists()  # half a shard, aside
    report = validate(str(path))
    assert report.ok and list(report.committed[:2]) == [True, False]
    assert remove_partial_files(str(path)) == 1  # what a resumed capture does first
    writer = RunWriter.open(str(path))
    for slot in (1, 2):
        _write_slot(writer, slot, acts, weights)
    writer.finish()
    assert differences(reference, path) == []


def test_the_estimate_counts_the_files_of_a_real_store(tiny_root, tiny_store):
    from capture.estimate import estimate_run
    from stores import load_pipeline

    config = load_pipeline("quickstart", tiny_root[0]).run({"corruption": 0.6, "seed": 0})
    files = [p for p in Path(tiny_store).rglob("*")
             if p.is_file() and p.relative_to(tiny_store).parts[0] != "analysis"]
    assert estimate_run(config).files == len(files)


def test_a_version_1_store_is_written_on_one_file_per_chunk(tmp_path):
    """What a resumed capture of a version-1 store writes: its own layout, read off its
    arrays' metadata (no shards, whole chunks straight to their files)."""
    path = tmp_path / "v1.zarr"
    shutil.copytree(Path(__file__).parent / "fixtures/v1_store.zarr", path)
    values = np.random.default_rng(3).standard_normal((60, 12)).astype(np.float16)
    weight = np.ones((12, 64), np.float32)
    writer = RunWriter.open(str(path))
    writer.write_activations(3, "fc1", 0, values)
    writer.write_weights(3, {"fc1.weight": weight})
    chunk = (path / "activations/fc1/values/c/3/0/0").read_bytes()
    assert chunk == values.tobytes() + shards.crc32c([values.tobytes()])  # a v1 chunk file
    assert (path / "weights/fc1.weight/values/c/3/0/0").read_bytes()[:-4] == weight.tobytes()
    root = zarr.open_group(str(path), mode="r", use_consolidated=False)
    np.testing.assert_array_equal(root["activations/fc1/values"][3], values)
    assert root["activations/fc1/values"].shards is None


def test_a_failed_write_leaves_its_inner_chunks_missing(tmp_path, monkeypatch):
    shard = shards.ShardFile(str(tmp_path / "c" / "0"), 2, 8)
    chunk = [np.arange(2, dtype=np.float32)]

    def full(*args):
        raise OSError("No space left on device")

    monkeypatch.setattr(shards, "_pwritev_all", full)
    with pytest.raises(OSError):
        shard.write(0, [chunk, chunk])
    assert shard.missing() == [0, 1] and not shard.complete
    monkeypatch.undo()
    assert shard.write(0, [chunk, chunk]) and (tmp_path / "c" / "0").is_file()
