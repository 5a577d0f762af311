"""The store format follows a recorder (issue 17): metrics under any name, laid out when
first reported; `stores validate` judging what a store claims to hold (no false alarm
on a store written the way a user's own loop writes one, and still finding damage in
it); stores without a run config opened, listed and analysed like a pipeline's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import stores
from stores import LayerSpec, RunWriter, StoreError, schema
from stores.__main__ import main as stores_main
from stores.repair import repair
from stores.validate import validate

from .conftest import REPO

N_TRAIN, N_TEST, HIDDEN = 96, 64, 16


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def probe_samples(seed: int = 0, corrupt: float = 0.5) -> tuple[torch.Tensor, dict]:
    """Digits: a training part with a fraction of labels redrawn, and a test part."""
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))[: N_TRAIN + N_TEST]
    x, y = x[order] / 16.0, y[order]
    observed = y.copy()
    flipped = rng.random(N_TRAIN) < corrupt
    observed[:N_TRAIN][flipped] = rng.integers(0, 10, int(flipped.sum()))
    samples = {"split": np.array(["train"] * N_TRAIN + ["test"] * N_TEST), "index": order,
               "label_true": y, "label_observed": observed, "corrupted": observed != y}
    return torch.tensor(x, dtype=torch.float32), samples


def user_store(path, schedule=(0, 1, 2, 3), recorded=(0, 1, 2, 3), declared=("train_loss",),
               seed: int = 0) -> str:
    """A store as a user's own loop writes one through RunWriter: its own model, a metric
    first reported at epoch 1 (`grad_norm`), only some scheduled epochs recorded."""
    torch.manual_seed(seed)
    x, samples = probe_samples(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 10))
    params = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    writer = RunWriter.create_atomic(
        str(path), attrs={"head": "2"}, schedule=list(schedule), samples=samples,
        layers=[LayerSpec("input", 64, (64,)), LayerSpec("1", HIDDEN, (HIDDEN,), penultimate=True)],
        params=params, metrics=declared)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    labels = torch.as_tensor(samples["label_observed"][:N_TRAIN])
    for slot, epoch in enumerate(schedule):
        if epoch in recorded:
            with torch.no_grad():
                hidden = model[1](model[0](x))
            writer.write_activations(slot, "input", 0, x.numpy().astype("float16"))
            writer.write_activations(slot, "1", 0, hidden.numpy().astype("float16"))
            writer.write_weights(slot, {k: v.numpy() for k, v in model.state_dict().items()})
            loss = torch.nn.functional.cross_entropy(model(x[:N_TRAIN]), labels)
            metrics = {"train_loss": loss.item()}
            if epoch >= 1:
                metrics["grad_norm"] = float(sum(p.grad.norm() ** 2 for p in model.parameters()) ** 0.5)
            writer.write_metrics(slot, metrics)
            writer.commit(slot, epoch)
        for _ in range(5):  # train on
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[:N_TRAIN]), labels).backward()
            optimizer.step()
    writer.finish()
    return str(path)


def validate_cli(capsys, path: str) -> tuple[int, str]:
    code = stores_main(["validate", path])
    out = capsys.readouterr()
    return code, out.out + out.err


# ------------------------------------------------------------------ writing metrics
def test_any_name_round_trips_and_a_later_metric_reads_nan_before(tmp_path):
    path = user_store(tmp_path / "run.zarr")
    m = stores.metrics(path).load()
    assert sorted(m.data_vars) == ["grad_norm", "train_loss"]
    assert np.isnan(m["grad_norm"].values[0]) and np.isfinite(m["grad_norm"].values[1:]).all()
    assert (np.diff(m["train_loss"].values) < 0).all()  # it trains
    assert list(m.epoch.values) == [0, 1, 2, 3]


def test_values_stored_as_floats_like_nan(tmp_path):
    path = user_store(tmp_path / "run.zarr", schedule=(0, 1), recorded=())
    writer = RunWriter.open(path)
    writer.update_attrs({"status": schema.STATUS_RUNNING})  # as a resumed capture does
    writer.write_metrics(0, {"a": float("inf"), "b": None, "c": np.float32(0.5), "d": torch.tensor(2.0),
                             "e": float("nan"), "f": True})
    writer.commit(0, 0)
    writer.finish()
    values = {k: float(v) for k, v in stores.metrics(path).isel(epoch=0).load().items()}
    assert values["a"] == np.inf and np.isnan(values["b"]) and values["c"] == 0.5
    assert values["d"] == 2.0 and np.isnan(values["e"]) and values["f"] == 1.0


@pytest.mark.parametrize("name", ["grad-norm", "1st", "", "loss rate", "ü", 3])
def test_bad_names_are_refused_naming_the_pattern_and_nothing_is_written(tmp_path, name):
    path = user_store(tmp_path / "run.zarr", schedule=(0, 1), recorded=())
    writer = RunWriter.open(path)
    with pytest.raises(StoreError, match=r"metrics: expected names matching \[A-Za-z_\]\[A-Za-z0-9_\]\*, got "):
        writer.write_metrics(0, {"fine": 1.0, name: 2.0})
    assert not Path(path, "metrics", "fine").exists()
    with pytest.raises(StoreError, match=r"metrics/x: expected a number, got 'high'"):
        writer.write_metrics(0, {"x": "high"})
    with pytest.raises(StoreError, match="expected names matching"):
        RunWriter.create(str(tmp_path / "other.zarr"), attrs={}, schedule=[0], samples=probe_samples()[1],
                         layers=[], params={}, metrics=("ok", "not ok"))


@pytest.mark.parametrize("compressor", [None, "zstd"])
def test_a_metric_laid_out_at_its_first_write_is_laid_out_like_a_declared_one(tmp_path, compressor):
    samples = probe_samples()[1]
    writer = RunWriter.create_atomic(str(tmp_path / "run.zarr"), attrs={}, schedule=[0, 1, 2],
                                     samples=samples, layers=[], params={}, compressor=compressor,
                                     metrics=("declared",))
    assert not Path(tmp_path, "run.zarr", "metrics", "later").exists()
    writer.write_metrics(1, {"later": 0.25})
    doc = lambda name: json.loads(Path(tmp_path, "run.zarr", "metrics", name, "zarr.json").read_text())  # noqa: E731
    later, declared = doc("later"), doc("declared")
    assert later.pop("attributes")["long_name"] == "metric later"  # named after itself
    assert declared.pop("attributes")["long_name"] == "metric declared"
    assert later == declared
    assert validate(str(tmp_path / "run.zarr")).ok


def test_the_built_in_layout_declares_every_metric_up_front(tmp_path):
    writer = RunWriter.create(str(tmp_path / "run.zarr"), attrs={}, schedule=[0, 1], samples=probe_samples()[1],
                              layers=[], params={}, metrics=schema.METRIC_NAMES)
    arrays = sorted(p.name for p in Path(writer.path, "metrics").iterdir() if p.is_dir())
    assert arrays == sorted([*schema.METRIC_NAMES, schema.EPOCH_COORD])  # and the epoch coordinate


# ------------------------------------------------------------------ validate
def test_a_users_store_validates_without_false_alarms(tmp_path, capsys):
    # epochs 0..5 scheduled, 2 and 4 skipped, 5 never reached; `grad_norm` from epoch 1 on
    path = user_store(tmp_path / "run.zarr", schedule=(0, 1, 2, 3, 4, 5), recorded=(0, 1, 3), declared=())
    code, out = validate_cli(capsys, path)
    assert code == 0, out
    assert f"ok (schema_version {schema.SCHEMA_VERSION}" in out and "3 epochs committed" in out
    assert list(stores.open_run(path).epoch.values) == [0, 1, 3]


def test_damage_in_a_users_store_is_still_found_and_repaired(tmp_path, capsys):
    path = user_store(tmp_path / "run.zarr")
    flip(Path(path, "activations", "1", "values", "c", "2", "0", "0"))
    Path(path, "metrics", "grad_norm", "c", "3").unlink()  # reported from epoch 1 on: damage
    code, out = validate_cli(capsys, path)
    assert code == 1
    assert "activations/1/values epoch 2 (slot 2), samples 0-159: damaged (checksum mismatch)" in out
    assert "metrics/grad_norm chunk (3,): missing (slot 3 is committed)" in out
    with pytest.raises(StoreError, match=r"metrics/grad_norm chunk \(3,\) of committed epoch 3"):
        stores.metrics(path).load()
    found, result = repair(path)
    assert not found.ok and [slot for slot, _ in result.uncommitted] == [2, 3]
    assert validate(path).ok
    assert list(stores.open_run(path).epoch.values) == [0, 1]
    code, out = validate_cli(capsys, path)
    assert code == 0, out


# ------------------------------------------------------------------ reading
def test_stores_without_a_config_open_together_by_store_name(tmp_path, capsys):
    a = user_store(tmp_path / "a.zarr", seed=0)
    b = user_store(tmp_path / "b.zarr", seed=1)
    tree = stores.open_runs([a, b])
    assert list(tree.indexes["run"].names) == ["store"]
    assert list(tree["metrics"]["run_name"].values) == ["a", "b"]
    one = tree.runs.sel(store="b")["metrics"].to_dataset().load()
    assert one["train_loss"].values.tolist() == [stores.metrics(b)["train_loss"].values.tolist()]
    assert stores.list_runs(tmp_path) == [a, b]
    assert stores_main(["ls", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert a in listed and b in listed and "complete" in listed


# ------------------------------------------------------------------ python -m analyze --stores
def analyze(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analyze", *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})


@pytest.mark.slow  # a subprocess: the command line as a user runs it
def test_analyze_stores_end_to_end(tmp_path):
    a = user_store(tmp_path / "runs" / "a.zarr", schedule=(0, 1, 2), recorded=(0, 2))
    out = tmp_path / "report"
    done = analyze("--stores", a, "--out", str(out), "--eager", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{out / 'report.md'}  (")
    assert "| store = a (1 seed) | 2 |" in (out / "report.md").read_text()
    table = stores.analysis_table(a)
    assert (out / "analysis.csv").read_text().splitlines()[0] == ",".join(table.columns)
    assert set(table["run"]) == {"a"} and set(table["epoch"]) == {0, 2}
    assert set(table["layer"]) == {"input", "1"} and table["accuracy"].between(0, 1).all()
    assert validate(a).ok


def test_analyze_stores_errors_are_one_line(tmp_path, capsys):
    from analyze.__main__ import main as analyze_main

    a = user_store(tmp_path / "a.zarr")
    (tmp_path / "plain").mkdir()
    cases = [(["--stores", str(tmp_path / "nope.zarr")], f"{tmp_path / 'nope.zarr'}: no such file or directory"),
             (["--stores", str(tmp_path / "plain")], f"{tmp_path / 'plain'} is not a run store (no zarr.json)"),
             (["quickstart", "--stores", a], "give a PIPELINE or --stores PATH..., not both"),
             ([], "give a PIPELINE (from --pipelines) or --stores PATH...")]
    for argv, message in cases:
        assert analyze_main([*argv, "--eager", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.strip() == f"error: {message}", err
