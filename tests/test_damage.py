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
from stores import StoreError
from stores import validate as validate_module
from stores.__main__ import main as stores_main

from .conftest import fresh_tiny_root
from .storecmp import differences, digest

STORE = "quickstart/corruption=0.6,seed=0.zarr"  # slots 0..3 = epochs 0, 1, 2, 4; slot 4 spare
OTHER = "quickstart/corruption=0.0,seed=0.zarr"


@pytest.fixture
def root(tiny_root, tmp_path) -> Path:
    return fresh_tiny_root(tiny_root, tmp_path / "runs")


@pytest.fixture
def store(root) -> str:
    return str(root / STORE)


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
    from analyze.grid import write

    write(path, {"dynamics": xr.Dataset({"accuracy": ("epoch", [0.5, 0.25, 0.75, 0.5]),
                                         "masc_k": ("epoch", [1, 2, 3, 4])},
                                        coords={"epoch": [0, 1, 2, 4]})})


# ------------------------------------------------------------------ 1. missing chunks
MISSING = [
    # (array, chunk index, a read of it through the library)
    ("weights/head.weight/values", (2, 0, 0), lambda p: stores.weight_slab(p, "head.weight", 2)),
    ("weights/head.weight/values", (2, 0, 0), lambda p: stores.weights(p, "head.weight").values),
    ("weights/head.weight/values", (2, 0, 0), lambda p: stores.weight_slabs(p, "head.weight", [0, 2])),
    ("activations/relu1/values", (1, 0, 0), lambda p: stores.slab(p, "relu1", 1)),
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
    assert stores.slab(store, "relu1", 2).shape == (1797, 48)  # another epoch
    assert stores.slab(store, "relu2", 1).shape == (1797, 32)  # another layer
    assert list(stores.open_run(store).epoch.values) == [0, 1, 2, 4]  # lazily: nothing read yet
    # The spare slot was never written and is not committed: nobody's data, reads as fill.
    assert np.isnan(stores.slab(store, "relu1", 4)).all()


def test_a_missing_probe_set_chunk_is_damage(store):
    chunk(store, "samples/label_observed", 0).unlink()
    with pytest.raises(StoreError) as err:
        stores.sample_table(store)
    assert one_line(err).startswith(f"{store}: samples/label_observed chunk (0,) is missing (the "
                                    "probe set is damaged)")


def test_analyze_names_store_layer_and_epoch(root, tiny_root, capsys):
    from analyze.__main__ import main as analyze_main

    store = str(root / STORE)
    chunk(store, "activations/relu2/values", 2, 0, 0).unlink()
    before = digest(root / OTHER)
    code = analyze_main(["quickstart", "--pipelines", str(tiny_root[0]), "--root", str(root),
                         "--eager", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {store}: activations/relu2/values chunk (2, 0, 0) of committed "
                          "epoch 2 (slot 2) is missing"), err
    assert "NaN" not in err and digest(root / OTHER) == before


def test_repair_of_a_missing_chunk_drops_the_analysis(store, capsys):
    with_analysis(store)
    chunk(store, "weights/head.weight/values", 3, 0, 0).unlink()
    code, out, err = run(capsys, "repair", store)
    assert code == 0, err
    assert "un-committed epoch 4 (slot 3)" in out.splitlines()
    assert ("removed analysis (it covered the epochs that are no longer committed; "
            "`python -m analyze` computes it again)") in out.splitlines()
    assert not Path(store, "analysis").exists()
    assert list(stores.committed_slots(store)[1]) == [0, 1, 2]
    assert stores.run_attrs(store)["status"] == "running"
