"""Resume: a capture that crashes anywhere and is started again writes the same store
as one that never crashed, bit for bit on CPU (tests/storecmp.py says what is compared).

Crashes here are exceptions raised inside the capture's own process at chosen points of
the write sequence (the real SIGKILL is in test_kill.py): the writer thread stops at the
failing write, so nothing after it is written, exactly as if the process had died there.
Configurations cover SGD with momentum, AdamW with dropout (the global generator) and
BatchNorm (integer buffers), mini-batches (the data-order generator), a stop rule that
ends training at an unscheduled epoch, and the spare slot.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

import stores
from capture import train
from capture.run import capture_run
from stores import RunWriter, StoreError, load_pipeline, slabs
from stores import layout as layout_module
from stores import state as state_module
from stores.cf import array_attrs
from stores.lock import LockError, StoreLock, lock_path

from .conftest import REPO
from .storecmp import differences

pytestmark = pytest.mark.slow  # builds its own stores end to end: not in `make test-fast`

# name -> changes to the quickstart pipeline (digits, MLP) or a modular one
SETUPS = {
    "sgd": {"model": {"name": "mlp", "widths": [32, 16]},
            "train": {"max_epochs": 5, "stop_train_acc": None},
            "capture": {"points": ["input", "relu1", "relu2"], "schedule": {"epochs": [0, 1, 2], "every": 2}}},
    "adamw-dropout-bn": {
        "data": {"name": "modular", "p": 11, "alpha": 0.5, "split_seed": 0},
        "corruption": {"mode": "fraction"},
        "model": {"name": "modular_mlp", "widths": [24], "dropout": 0.3, "batchnorm": True},
        "train": {"optimizer": "adamw", "lr": 0.01, "betas": [0.9, 0.98], "weight_decay": 1.0,
                  "batch_size": 16, "loss": "mse", "max_epochs": 4, "stop_train_acc": None},
        "capture": {"points": ["square", "bn"], "dtype": "float32", "schedule": {"epochs": [0, 2], "every": 2}},
        "analysis": {"probes": ["masc", "velpic", "ncm"]},
    },
    "adam-stop": {"model": {"name": "mlp", "widths": [32]}, "sweep": {"corruption": [0.0], "seed": [0]},
                  "train": {"optimizer": "adam", "lr": 0.003, "max_epochs": 40, "stop_train_acc": 0.9},
                  "capture": {"points": ["relu1"], "schedule": {"epochs": [0], "every": 50}}},
}


def pipeline_for(tmp: Path, name: str) -> Path:
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())["quickstart"]
    raw["sweep"] = {"corruption": [0.6], "seed": [0]}
    for key, value in SETUPS[name].items():
        if isinstance(value, dict) and key in raw and key not in ("data", "model"):
            raw[key].update(value)
        else:
            raw[key] = value
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({name: raw}))
    return path


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[str, tuple[object, str]]:
    """Each setup's config and its uninterrupted store."""
    base = tmp_path_factory.mktemp("resume-ref")
    out = {}
    for name in SETUPS:
        config = load_pipeline(name, pipeline_for(base, name)).runs()[0]
        out[name] = (config, capture_run(config, str(base / "runs"), progress=False))
    return out


class Crash(RuntimeError):
    """The simulated death of the process."""


def crash_at(monkeypatch, owner, name: str, call: int) -> None:
    """Make `owner.name` fail on its `call`-th call (counting from 1)."""
    original = getattr(owner, name)
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise Crash(f"{name} call {call}")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing)


CRASHES = [
    # (setup, what fails, on which call): where the capture dies
    ("sgd", (RunWriter, "write_activations"), 1),  # before anything of epoch 0 is written
    ("sgd", (RunWriter, "commit"), 3),  # slot 2 written, its flag not
    ("sgd", (state_module, "_write_array"), 5),  # halfway through the state copy of slot 1
    ("sgd", (RunWriter, "write_weights"), 5),  # the spare slot (stop epoch 5) half written
    ("sgd", (train, "train_epoch"), 3),  # in the training thread, mid-run
    ("adamw-dropout-bn", (RunWriter, "commit"), 2),
    ("adamw-dropout-bn", (state_module, "_write_array"), 18),  # the last array of slot 1's copy
    ("adamw-dropout-bn", (train, "train_epoch"), 4),  # during the last epoch
    ("adam-stop", (RunWriter, "write_state"), 2),  # the stop epoch's state
    ("adam-stop", (RunWriter, "finish"), 1),  # all committed, never marked complete
]


@pytest.mark.parametrize("setup, target, call", CRASHES,
                         ids=[f"{s}-{t[1]}-{c}" for s, t, c in CRASHES])
def test_resume_after_a_crash_gives_the_uninterrupted_store(setup, target, call, references,
                                                            tmp_path, monkeypatch):
    config, reference = references[setup]
    with monkeypatch.context() as patch:
        crash_at(patch, *target, call)
        with pytest.raises(Exception) as info:
            capture_run(config, str(tmp_path), progress=False)
    assert "Crash" in repr(info.value) or isinstance(info.value, Crash)
    path = config.store_path(str(tmp_path))
    assert not Path(lock_path(path)).exists()  # released on the way out
    before = stores.run_attrs(path) if (Path(path) / "zarr.json").exists() else {}
    assert before.get("status") != "complete"
    assert capture_run(config, str(tmp_path), progress=False) == path  # resumes
    assert differences(reference, path) == []
    if before:
        assert len(stores.run_attrs(path)["resumes"]) == 1


def test_two_crashes_in_a_row(references, tmp_path, monkeypatch):
    config, reference = references["adamw-dropout-bn"]
    for target, call in (((RunWriter, "commit"), 2), ((state_module, "_write_array"), 11)):
        with monkeypatch.context() as patch:
            crash_at(patch, *target, call)
            with pytest.raises(Exception):
                capture_run(config, str(tmp_path), progress=False)
    path = capture_run(config, str(tmp_path), progress=False)
    assert differences(reference, path) == []
    assert [r["committed"] for r in stores.run_attrs(path)["resumes"]] == [1, 1]


def test_replay_recomputes_committed_epochs_without_rewriting_them(references, tmp_path):
    """With no usable training state (as after `stores repair` of an early epoch), training
    replays from initialization: committed epochs are recomputed, never rewritten."""
    config, reference = references["sgd"]
    path = config.store_path(str(tmp_path))
    shutil.copytree(reference, path)
    group = zarr.open_group(path, mode="r+", use_consolidated=False)
    group["epochs/committed"][2] = False
    group.attrs["status"] = "running"
    for copy in ("0", "1"):
        group[f"state/{copy}"].attrs.put({"valid": False})
    kept = {p: p.stat().st_ino for p in Path(path, "activations").rglob("c/[0134]/*/*")}
    capture_run(config, str(tmp_path), progress=False)
    assert differences(reference, path) == []
    assert {p: p.stat().st_ino for p in kept} == kept  # the same files, not rewritten copies


def test_state_holds_what_training_needs(references):
    config, reference = references["adamw-dropout-bn"]
    root = zarr.open_group(reference, mode="r")
    copies = state_module.candidates(root)
    assert [c["slot"] for c in copies] == [2, 1] and copies[0]["final"]
    state = state_module.read_state(root, 2)
    assert state.epoch == 4
    assert state.arrays["model"]["bn.num_batches_tracked"].dtype == np.int64  # native dtypes
    assert {k.split(".", 1)[1] for k in state.arrays["optimizer"]} == {"step", "exp_avg", "exp_avg_sq"}
    assert {"torch", "generator"} <= set(state.arrays["rng"])
    assert state.meta["param_groups"][0]["betas"] == [0.9, 0.98]
    # The stored weights of the last slot are the state's model, cast to float32.
    np.testing.assert_array_equal(slabs.weight_slab(reference, "embed.weight", 2),
                                  state.arrays["model"]["embed.weight"])
    # Readers do not see it.
    assert "state" not in stores.open_run(reference).children


def test_state_refers_to_the_weights_instead_of_copying_them(references):
    """A copy holds only what `weights/` lacks (here the integer BatchNorm counter); the
    float32 tensors are named, with their slot and CRC-32C, and read back from there."""
    config, reference = references["adamw-dropout-bn"]
    root = zarr.open_group(reference, mode="r")
    for copy in ("0", "1"):
        group = root[f"state/{copy}"]
        assert [k for k, _ in group["model"].arrays()] == ["bn.num_batches_tracked"]
        refs = group.attrs["weights"]
        assert refs["slot"] == group.attrs["slot"]
        assert set(refs["crc32c"]) == {"embed.weight", "bn.weight", "bn.bias", "bn.running_mean",
                                       "bn.running_var", "head.weight"}
        state = state_module.read_state(root, refs["slot"])
        assert set(state.arrays["model"]) == {*refs["crc32c"], "bn.num_batches_tracked"}
        for name in refs["crc32c"]:
            np.testing.assert_array_equal(slabs.weight_slab(reference, name, refs["slot"]),
                                          state.arrays["model"][name])
            assert state.arrays["model"][name].dtype == np.float32


def test_weights_that_no_longer_hold_the_state_make_it_unusable(references, tmp_path):
    """A copy whose weights slot was rewritten (or lost its chunk) is refused like a
    damaged copy, and the resume takes the other one."""
    from capture.resume import resume_point

    config, reference = references["sgd"]
    path = config.store_path(str(tmp_path))
    shutil.copytree(reference, path)
    group = zarr.open_group(path, mode="r+", use_consolidated=False)
    latest = state_module.candidates(group)[0]["slot"]
    weights = group["weights/fc1.weight/values"]
    changed = weights[latest]
    changed[0, 0] = np.nextafter(changed[0, 0], np.float32(np.inf))
    weights[latest] = changed  # a valid chunk (its crc32c matches), other bytes
    with pytest.raises(StoreError, match=r"weights/fc1\.weight/values at slot \d+ does not hold"):
        state_module.read_state(group, latest)
    group.attrs["status"] = "running"
    assert resume_point(path).state.slot == latest - 1


def test_a_state_refreshed_over_other_weights_keeps_its_own_copy(tmp_path):
    """A committed slot's state refreshed (`written=False`) refers only to the tensors
    whose stored weights hold its bytes; another is written into the copy."""
    rng = np.random.default_rng(0)
    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    weights = {name: root.create_array(f"weights/{name}/values", shape=(3, 4), chunks=(1, 4),
                                       dtype="float32", fill_value=np.nan)
               for name in ("a", "b")}
    model = {name: rng.standard_normal(4).astype(np.float32) for name in ("a", "b")}
    weights["a"][1], weights["b"][1] = model["a"], model["b"] + 1
    arrays = {"model": {**model, "n": np.array(7)}, "optimizer": {}, "rng": {}}
    state = state_module.TrainingState(1, 1, False, arrays, {})
    state_module.write_state(root, state, weights, written=False)
    group = root["state/1"]
    assert set(group.attrs["weights"]["crc32c"]) == {"a"}
    assert sorted(k for k, _ in group["model"].arrays()) == ["b", "n"]
    back = state_module.read_state(root, 1)
    for name, value in arrays["model"].items():
        np.testing.assert_array_equal(back.arrays["model"][name], value)
    assert dict(group["model/b"].attrs) == array_attrs("state/1/model/b")  # CF-style, like every array


def test_a_state_written_with_every_model_tensor_in_it_still_resumes(references, tmp_path,
                                                                     monkeypatch):
    """Copies as stores written before the weights were referenced hold them (every model
    tensor in the copy, no `weights` attribute): such a store resumes, and the copies the
    resumed capture writes are the uninterrupted run's."""
    config, reference = references["sgd"]
    with monkeypatch.context() as patch:
        crash_at(patch, RunWriter, "commit", 3)  # slots 0 and 1 committed
        with pytest.raises(Exception):
            capture_run(config, str(tmp_path), progress=False)
    path = config.store_path(str(tmp_path))
    root = zarr.open_group(path, mode="r+", use_consolidated=False)
    for cand in state_module.candidates(root):
        state = state_module.read_state(root, cand["slot"])
        state_module.write_state(root, state, weights={})  # the older layout
        copy = root[f"state/{cand['copy']}"]
        assert "weights" not in copy.attrs
        assert {k for k, _ in copy["model"].arrays()} == set(state.arrays["model"])
    capture_run(config, str(tmp_path), progress=False)
    assert differences(reference, path) == []


def test_a_second_writer_is_refused_and_a_released_lock_is_taken(references, tmp_path):
    config, _ = references["sgd"]
    path = config.store_path(str(tmp_path))
    Path(path).parent.mkdir(parents=True)
    with StoreLock(path):
        with pytest.raises(LockError, match=r"being written by another process \(capture, pid \d+"):
            capture_run(config, str(tmp_path), progress=False)
        assert not Path(path).exists()  # refused before anything was written
    capture_run(config, str(tmp_path), progress=False)
    assert stores.run_attrs(path)["status"] == "complete"


def test_other_config_is_refused_naming_the_keys_and_overwrite_replaces(references, tmp_path):
    import dataclasses

    config, reference = references["sgd"]
    path = config.store_path(str(tmp_path))
    shutil.copytree(reference, path)
    other = dataclasses.replace(config, seed=1, train=dataclasses.replace(config.train, momentum=0.5))
    with pytest.raises(StoreError, match=r"differs in: seed, train\.momentum\); pass --overwrite"):
        capture_run(other, str(tmp_path), progress=False)
    assert differences(reference, path) == []
    capture_run(other, str(tmp_path), overwrite=True, progress=False)
    assert stores.run_attrs(path)["config_hash"] == other.hash()
    assert not Path(f"{path}.creating").exists()


def test_an_interrupted_creation_leaves_no_store(references, tmp_path, monkeypatch):
    config, reference = references["sgd"]
    with monkeypatch.context() as patch:
        crash_at(patch, layout_module, "_create_layer", 2)
        with pytest.raises(Crash):
            capture_run(config, str(tmp_path), progress=False)
    path = config.store_path(str(tmp_path))
    assert not Path(path).exists() and Path(f"{path}.creating").exists()
    capture_run(config, str(tmp_path), progress=False)
    assert differences(reference, path) == [] and not Path(f"{path}.creating").exists()
