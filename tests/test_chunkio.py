"""Direct whole-chunk (and whole-shard) writes produce exactly the files zarr-python writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from stores.chunkio import write_chunk

from .storecmp import inner_chunks


def _array(path: Path, shape, chunks, dtype="float16", compressors=None):
    return zarr.create_array(
        str(path), shape=shape, chunks=chunks, dtype=dtype, fill_value=np.nan,
        compressors=compressors or [Crc32cCodec()], zarr_format=3,
    ).with_config({"write_empty_chunks": True})


def _chunk_files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*")
            if p.is_file() and p.name != "zarr.json"}


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_direct_chunks_equal_zarr_chunks(tmp_path, dtype):
    """Every chunk, the padded edge chunk included, is byte-identical to zarr's."""
    values = np.random.default_rng(0).standard_normal((2, 10, 3)).astype(dtype)
    ours, theirs = _array(tmp_path / "ours", (2, 10, 3), (1, 4, 3), dtype), \
        _array(tmp_path / "theirs", (2, 10, 3), (1, 4, 3), dtype)
    for slot in range(2):
        for j, start in enumerate(range(0, 10, 4)):
            block = values[slot : slot + 1, start : start + 4]
            assert write_chunk(ours, (slot, j, 0), block)
            theirs[slot, start : start + 4] = block[0]
    assert _chunk_files(tmp_path / "ours") == _chunk_files(tmp_path / "theirs")
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "ours"))[:], values)
    assert not list((tmp_path / "ours").rglob("*.partial"))


def test_whole_array_chunk_of_weights(tmp_path):
    w = np.arange(20, dtype=np.float32).reshape(5, 4)
    ours, theirs = _array(tmp_path / "ours", (3, 5, 4), (1, 5, 4), "float32"), \
        _array(tmp_path / "theirs", (3, 5, 4), (1, 5, 4), "float32")
    assert write_chunk(ours, (1, 0, 0), w[None])
    theirs[1] = w
    assert _chunk_files(tmp_path / "ours") == _chunk_files(tmp_path / "theirs")


def test_other_layouts_are_left_to_zarr(tmp_path):
    plain = _array(tmp_path / "plain", (2, 10, 3), (1, 4, 3))
    zstd = _array(tmp_path / "zstd", (2, 10, 3), (1, 4, 3),
                  compressors=[ZstdCodec(level=1), Crc32cCodec()])
    block = np.ones((1, 4, 3), dtype=np.float16)
    assert not write_chunk(zstd, (0, 0, 0), block)  # compressed
    assert not write_chunk(plain, (0, 0, 0), block.astype(np.float32))  # another dtype
    assert not write_chunk(plain, (0, 0, 0), block[:, :3])  # part of a chunk
    assert not write_chunk(plain, (0, 2, 0), block)  # the edge chunk holds 2 rows
    assert _chunk_files(tmp_path / "plain") == {} and _chunk_files(tmp_path / "zstd") == {}


def test_chunk_and_shard_directories_are_made_by_the_first_write(tmp_path):
    from stores.shardio import ShardWriter

    array = _array(tmp_path / "a", (3, 10, 3), (1, 4, 3))
    assert not (tmp_path / "a" / "c").exists()
    assert write_chunk(array, (2, 1, 0), np.ones((1, 4, 3), np.float16))
    np.testing.assert_array_equal(array[2, 4:8], 1)
    sharded = zarr.create_array(str(tmp_path / "s"), shape=(3, 10, 3), shards=(1, 12, 3),
                                chunks=(1, 4, 3), dtype="float16", fill_value=np.nan)
    assert ShardWriter("s").write("s", sharded, 1, 0, np.ones((10, 3), np.float16))
    assert sorted(str(p.relative_to(tmp_path / "s")) for p in (tmp_path / "s/c").rglob("*")) == [
        "c/1", "c/1/0", "c/1/0/0"]
    np.testing.assert_array_equal(sharded[1], 1)


def test_state_copy_rewritten_in_place_equals_a_fresh_copy(tmp_path):
    """A state copy written again with the same layout has its chunk files replaced
    directly; the result is the store a fresh copy gives, and it reads back."""
    from stores.state import TrainingState, read_state, write_state

    rng = np.random.default_rng(0)

    def state(slot):
        arrays = {"model": {"w": rng.standard_normal((3, 4)).astype(np.float32),
                            "n": np.array(slot, dtype=np.int64)},
                  "optimizer": {"0.momentum_buffer": rng.standard_normal(4).astype(np.float32)},
                  "rng": {"torch": rng.integers(0, 255, 16).astype(np.uint8)}}
        return TrainingState(slot, slot, False, arrays, {"note": slot})

    first, second = state(0), state(2)
    again = zarr.open_group(str(tmp_path / "again"), mode="w")
    write_state(again, first)
    write_state(again, second)  # same copy (slot parity), same layout: rewritten in place
    fresh = zarr.open_group(str(tmp_path / "fresh"), mode="w")
    write_state(fresh, second)
    assert _chunk_files(tmp_path / "again") == _chunk_files(tmp_path / "fresh")
    back = read_state(again, 2)
    for section, arrays in second.arrays.items():
        for key, value in arrays.items():
            np.testing.assert_array_equal(back.arrays[section][key], value)
    assert back.meta == {"note": 2}
    changed = state(4)
    changed.arrays["optimizer"]["1.momentum_buffer"] = np.ones(2, dtype=np.float32)
    write_state(again, changed)  # another layout: laid out again
    assert set(read_state(again, 4).arrays["optimizer"]) == {"0.momentum_buffer", "1.momentum_buffer"}


def test_the_store_layout_takes_the_direct_path(tmp_path):
    """The layouts `stores` gives activations and weights (bytes + crc32c, uncompressed:
    version 1's chunks, version 2's shards) are written directly and read back through
    zarr: if zarr-python's internals that chunkio and shardio rely on change, this fails
    here instead of a store quietly going slow or wrong (pyproject pins zarr to the range
    this was tested with)."""
    from stores import schema
    from stores.metadata import activation_chunks, weight_chunks
    from stores.shardio import ShardWriter, geometry

    for name, (shards, chunks), shape, dtype in [
            ("acts", activation_chunks(3000, 700, "float16"), (2, 3000, 700), "float16"),
            ("weights", weight_chunks((600, 1000)), (2, 600, 1000), "float32")]:
        arrays = [zarr.create_array(
            str(tmp_path / side / name), shape=shape, shards=shards, chunks=chunks, dtype=dtype,
            fill_value=np.nan, compressors=schema.compressors(schema.PLAIN), zarr_format=3,
        ).with_config({"write_empty_chunks": True}) for side in ("ours", "theirs")]
        cut = geometry(arrays[0])
        assert cut is not None and cut.directory is not None and cut.plain and cut.n_inner > 1
        assert not write_chunk(arrays[0], (1, 0, 0), np.zeros((1, *chunks[1:]), dtype))  # not a chunk
        values = np.random.default_rng(2).standard_normal(shape[1:]).astype(dtype)
        assert ShardWriter("x").write(name, arrays[0], 1, 0, values)
        arrays[1][1] = values
        ours, theirs = (_chunk_files(tmp_path / side / name) for side in ("ours", "theirs"))
        assert ours.keys() == theirs.keys()  # the inner chunks as zarr's (they may sit apart)
        assert [inner_chunks(ours[k], cut.n_inner) for k in ours] == \
            [inner_chunks(theirs[k], cut.n_inner) for k in ours]
        np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "ours" / name))[1], values)

    values = np.random.default_rng(1).standard_normal((1, 4, 3)).astype(np.float16)
    ours = _array(tmp_path / "ours1", (2, 8, 3), (1, 4, 3), compressors=schema.compressors(schema.PLAIN))
    theirs = _array(tmp_path / "theirs1", (2, 8, 3), (1, 4, 3), compressors=schema.compressors(schema.PLAIN))
    assert write_chunk(ours, (1, 1, 0), values)
    theirs[1, 4:8] = values[0]
    assert _chunk_files(tmp_path / "ours1") == _chunk_files(tmp_path / "theirs1")
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "ours1"))[1, 4:8], values[0])
