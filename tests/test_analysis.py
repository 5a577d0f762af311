"""The analysis grid: Dask equals eager, the edit equals VeLPIC, results land in stores."""

from __future__ import annotations

from pathlib import Path
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
import xarray as xr
import yaml
import zarr
from threadpoolctl import threadpool_limits

import stores
from analyze import grid
from analyze.__main__ import main as analyze_main
from analyze.crosscheck import crosscheck_edit
from analyze.edit import edit_state_dict, velpic_weight
from analyze.pipeline import analyse
from analyze.probes import VeLPIC
from analyze.tasks import BLAS_THREADS, run_task
from stores import cf, load_pipeline, location, slabs
from stores.config import AnalysisConfig
from stores.groups import walk_arrays

from .conftest import REPO, tiny_pipeline_yaml
from .tolerance import clear_argmax, relu_mlp_atol, unit_roundoff
from .tolerance import gamma as gamma_n

SETTINGS = AnalysisConfig(probes=("masc", "velpic", "ncm", "knn", "logreg"))


def _same(a, b):
    # Exact throughout: both paths call run_task on the same stores, and run_task caps
    # BLAS to BLAS_THREADS (1) inside the task on either path (threadpoolctl),
    # so the eager process and the worker processes run the same code with the same
    # thread count on the same machine: the same sums in the same order.
    assert a.task == b.task
    assert a.accuracy == b.accuracy
    np.testing.assert_array_equal(a.masc_k, b.masc_k)
    assert a.edit_accuracy == b.edit_accuracy
    if a.edit_weight is not None:
        np.testing.assert_array_equal(a.edit_weight, b.edit_weight)


def _near_ties(store, slot, weight, bias, hidden, cast=False):
    """Rows (all samples) whose label, from logits hidden·Wᵀ (+ b) computed in float64
    on the float16-stored penultimate `hidden` (the store path), a float32 torch forward
    from the stored input through the stored weights of `slot` and then W (+ b) may
    label otherwise: the complement of clear_argmax on the store path's logits.

    Against the exact head applied to the capture's float32 hidden h: the stored one is
    within dh = u16·|h| + 2^-25 (half the subnormal spacing) of h; another float32
    forward's hidden within e = relu_mlp_atol of the layers below (two float32 paths);
    the float32 head adds γ_(N+1)(float32) of its magnitudes, the float64 one
    γ_(N+1)(float64). With `cast`, the float32 side has `weight` rounded to float32
    (the edit's float64 VeLPIC weight as stored): u32·|W| more."""
    state = {n: slabs.weight_slab(store, n, slot) for n in stores.param_names(store)}
    fcs = sorted({n.split(".")[0] for n in state if n.startswith("fc")}, key=lambda n: int(n[2:]))
    x = slabs.slab(store, "input", slot).astype(np.float64)  # pixels k/16: exact in float16
    e = relu_mlp_atol(x, [(state[f"{n}.weight"], state.get(f"{n}.bias")) for n in fcs], np.float32)
    h = hidden.astype(np.float64)
    u16, tiny = unit_roundoff(np.float16), 2.0 ** -25
    dh = u16 * (np.abs(h) + tiny) / (1 - u16) + tiny
    w = np.abs(np.asarray(weight, dtype=np.float64))
    b = np.zeros(len(w)) if bias is None else np.abs(np.asarray(bias, dtype=np.float64))
    n = w.shape[1] + 1
    atol = ((dh + e) @ w.T + gamma_n(np.float32, n) * ((np.abs(h) + dh + e) @ w.T + b)
            + gamma_n(np.float64, n) * (np.abs(h) @ w.T + b))
    if cast:
        atol += unit_roundoff(np.float32) * ((np.abs(h) + dh + e) @ w.T)
    from analyze.edit import edited_logits

    return ~clear_argmax(edited_logits(hidden, weight, bias), atol)


@pytest.mark.slow  # two Dask worker processes
def test_dask_path_equals_eager_path(tiny_store):
    from distributed import Client, LocalCluster

    tasks = grid.list_tasks([tiny_store])
    assert len(tasks) == 3 * 4  # layers x committed epochs
    eager = grid.run_eager(tasks, SETTINGS)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        parallel = grid.run_dask(tasks, SETTINGS, client)
        with urllib.request.urlopen(client.dashboard_link, timeout=30) as page:
            dashboard = page.read().decode()
    assert "needs bokeh" not in dashboard  # what distributed serves there without bokeh
    for a, b in zip(eager, parallel):
        _same(a, b)


def test_zero_bias_edit_predicts_exactly_as_velpic(tiny_store):
    task = next(t for t in grid.list_tasks([tiny_store]) if t.penultimate and t.epoch == 4)
    result = run_task(task, SETTINGS)
    table = slabs.sample_table(tiny_store)
    x = slabs.slab(tiny_store, task.layer, task.slot).astype(np.float32)
    train = table["split"] == "train"
    # Exact: the tiny store's layers are narrower than spectral.EXACT_BELOW, so the task's
    # fast path fits VeLPIC by the same float64 code as VeLPIC().fit, and the zero-bias
    # edit's logits are the same float64 product x @ coefᵀ; BLAS is held to the task's
    # one thread here too, so both compute the same sums in the same order.
    with threadpool_limits(BLAS_THREADS):
        probe = VeLPIC().fit(x[train], table["label_observed"][train])
        np.testing.assert_array_equal(result.edit_predictions, probe.predict(x))
    assert result.edit_accuracy["edit_zero_bias"] == result.accuracy["velpic"]
    # The unedited variant reproduces the model's own stored test accuracy.
    # The stored test_acc came from the capture's float32 forward, ours from the float16
    # slab in float64: they differ by the near-tie test rows at most (_near_ties), plus
    # the rounding of the stored float32 mean (2·u32), as in tests/test_capture.py.
    metrics = stores.metrics(stores.open_run(tiny_store))
    stored = float(metrics["test_acc"].sel(epoch=4))
    head = stores.run_attrs(tiny_store).get("head", "head")
    w, b = (slabs.weight_slab(tiny_store, f"{head}.{p}", task.slot) for p in ("weight", "bias"))
    ties = _near_ties(tiny_store, task.slot, w, b, x)
    test = ~train
    assert abs(result.edit_accuracy["unedited"]["test"] - stored) <= (
        ties[test].sum() / test.sum() + 2 * unit_roundoff(np.float32))
    # The model rebuilt from stored weights with the edit applied agrees but on the rows
    # whose zero-bias edited label rounding can decide (the agreement a float64 mean).
    check = crosscheck_edit(tiny_store, task.slot, result.edit_weight, result.edit_predictions)
    ties = _near_ties(tiny_store, task.slot, result.edit_weight, None, x, cast=True)
    assert check["crosscheck_agreement"] >= 1 - ties.mean() - unit_roundoff(np.float64)


def test_edit_is_out_of_place():
    state = {"head.weight": np.ones((3, 2)), "head.bias": np.ones(3), "fc.weight": np.ones((2, 2))}
    new = edit_state_dict(state, "head", np.full((3, 2), 5.0))
    assert (state["head.weight"] == 1).all() and (state["head.bias"] == 1).all()
    assert (new["head.weight"] == 5).all() and (new["head.bias"] == 0).all()
    assert (edit_state_dict(state, "head", np.zeros((3, 2)), keep_bias=True)["head.bias"] == 1).all()
    with pytest.raises(ValueError, match="expected shape"):
        edit_state_dict(state, "head", np.zeros((2, 2)))


def test_velpic_weight_puts_rows_at_class_indices():
    x = np.abs(np.random.default_rng(0).normal(size=(40, 5)))
    y = np.repeat([0, 2, 3, 5], 10)
    w = velpic_weight(VeLPIC().fit(x, y), 7)
    assert w.shape == (7, 5)
    assert not w[[1, 4, 6]].any() and np.allclose(np.linalg.norm(w[[0, 2, 3, 5]], axis=1), 1)


def test_analyse_writes_results_readable_by_plain_xarray(tiny_root):
    pipelines, root = tiny_root
    report = Path(analyse(load_pipeline("quickstart", pipelines), str(root), client=None, progress=False))
    assert report.exists() and (report.parent / "figures" / "dynamics.png").stat().st_size > 10_000
    text = report.read_text()
    assert "| corruption = 0.6 (1 seed) |" in text and "figures/dynamics.png" in text
    path = str(root / "quickstart" / "corruption=0.6,seed=0.zarr")
    tree = xr.open_datatree(path, engine="zarr")
    acc = tree["analysis/dynamics"]["accuracy"]
    assert acc.dims == ("probe", "layer", "epoch", "score")
    assert list(acc.layer.values) == ["input", "relu1", "relu2"]
    assert ((acc >= 0) & (acc <= 1)).all()
    assert tree["analysis/edit"]["weight"].dims == ("epoch", "out", "in")
    # the rebuilt model's float32 forward against the store path: all but near ties
    edit_attrs = tree["analysis/edit"].attrs
    task = next(t for t in grid.list_tasks([path]) if t.penultimate and t.slot == edit_attrs["crosscheck_slot"])
    ties = _near_ties(path, task.slot, tree["analysis/edit"]["weight"].sel(epoch=task.epoch).values,
                      None, slabs.slab(path, task.layer, task.slot), cast=True)
    assert edit_attrs["crosscheck_agreement"] >= 1 - ties.mean() - unit_roundoff(np.float64)
    run = stores.open_run(path)  # the analysis groups line up with the committed epochs
    assert run["analysis/dynamics"]["accuracy"].sizes["epoch"] == 4
    # Schema version 2: every array, captured, training state or analysis, says what it is,
    # and plain xarray selects an epoch by its number.
    root = zarr.open_group(path, mode="r")
    named = [(name, a) for name, a in walk_arrays(root)]
    assert {n.split("/")[0] for n, _ in named} >= {"activations", "weights", "metrics", "state", "analysis"}
    assert [n for n, a in named if cf.missing(dict(a.attrs))] == []
    h = stores.activations(run, "relu2")
    np.testing.assert_array_equal(tree["activations/relu2/values"].sel(epoch=int(h.epoch[-1])).values,
                                  h.isel(epoch=-1).values)
    import pandas as pd
    table = pd.read_csv(report.parent / "analysis.csv")
    assert {"run", "corruption", "seed", "probe", "layer", "epoch", "score", "accuracy"} <= set(table)
    assert set(table["probe"]) >= {"masc", "velpic", "edit_zero_bias"}


@pytest.mark.slow
def test_quickstart_end_to_end_cli(tmp_path):
    """`python -m capture`, `python -m analyze` (two Dask worker processes) and `python -m
    stores` as real processes, on quickstart cut to a few epochs and two probes, with the
    root given as a file:// URL (which every command line must take as the folder it
    names)."""
    pipelines = tiny_pipeline_yaml(tmp_path / "p.yaml", max_epochs=2)
    raw = yaml.safe_load(pipelines.read_text())
    raw["quickstart"]["analysis"]["probes"] = ["masc", "velpic"]
    pipelines.write_text(yaml.safe_dump(raw))
    root, url = tmp_path / "runs", f"file://{tmp_path}/runs"
    common = ["quickstart", "--pipelines", str(pipelines), "--root", url, "--quiet"]
    for module, extra in (("capture", []), ("analyze", ["--workers", "2"])):
        done = subprocess.run([sys.executable, "-m", module, *common, *extra], cwd=REPO,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert (root / "quickstart" / "report.md").is_file()
    assert location.find_stores(url) == [str(root / "quickstart" / f"corruption={c},seed=0.zarr")
                                         for c in ("0.0", "0.6")]
    listing = subprocess.run([sys.executable, "-m", "stores", "ls", url], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
    for name in ("corruption=0.0,seed=0.zarr", "corruption=0.6,seed=0.zarr"):
        assert any(name in line and "complete" in line for line in listing.splitlines()), listing
    show = subprocess.run([sys.executable, "-m", "stores", "show",
                           str(root / "quickstart" / "corruption=0.6,seed=0.zarr")],
                          cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "relu2" in show and "(penultimate)" in show and "analysis   dynamics, edit" in show


def test_analyze_reports_missing_stores(tmp_path, capsys):
    """The real quickstart pipeline on an empty root: one line, exit 2 (in this process;
    tests/test_bad_inputs.py runs such lines as real processes)."""
    assert analyze_main(["quickstart", "--pipelines", str(REPO / "pipelines.yaml"),
                         "--root", str(tmp_path), "--eager"]) == 2
    assert capsys.readouterr().err.startswith("error: run corruption=0.0,seed=0 has no store")


@pytest.mark.slow  # captures a run of its own
def test_edit_then_train_starts_from_the_edited_checkpoint(tiny_root, tmp_path):
    import yaml

    from capture.run import capture_run

    pipelines, root = tiny_root
    analyse(load_pipeline("quickstart", pipelines), str(root), client=None, progress=False)
    raw = yaml.safe_load(pipelines.read_text())["quickstart"]
    raw["sweep"] = {"corruption": [0.6], "seed": [0]}
    raw["init"] = {"source": "quickstart/corruption=0.6,seed=0", "epoch": 2}
    raw["train"].update({"max_epochs": 2, "stop_train_acc": None})
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"edit-train": raw}))
    path = capture_run(load_pipeline("edit-train", tmp_path / "p.yaml").runs()[0], str(root), progress=False)

    source = str(root / "quickstart" / "corruption=0.6,seed=0.zarr")
    src = stores.open_run(source)
    new = stores.open_run(path)
    assert new.attrs["init"] == {"source": source, "epoch": 2, "edit": "velpic", "labels": "observed",
                                 "epochs": "restart"}
    for name in stores.param_names(source):
        got = stores.weights(new, name).sel(epoch=0).values
        if name == "head.weight":
            want = src["analysis/edit"]["weight"].sel(epoch=2).values
        elif name == "head.bias":
            want = np.zeros_like(got)
        else:
            want = stores.weights(src, name).sel(epoch=2).values
        np.testing.assert_array_equal(got, want, err_msg=name)
    edited = float(src["analysis/edit"]["accuracy"].sel(variant="edit_zero_bias", epoch=2, score="test"))
    # The new run's first test_acc is the edited model's float32 forward; `edited` came
    # from the float16 slab in float64: apart by the near-tie test rows (_near_ties)
    # and the stored float32 mean's rounding at most.
    slot = next(t.slot for t in grid.list_tasks([source]) if t.penultimate and t.epoch == 2)
    hidden = slabs.slab(source, stores.penultimate_layer(source), slot)
    ties = _near_ties(source, slot, src["analysis/edit"]["weight"].sel(epoch=2).values, None, hidden,
                      cast=True)
    test = slabs.sample_table(source)["split"] == "test"
    assert abs(float(stores.metrics(new)["test_acc"].sel(epoch=0)) - edited) <= (
        ties[test].sum() / test.sum() + 2 * unit_roundoff(np.float32))
    assert list(new.epoch.values) == [0, 1, 2]  # then it trains on


def test_edit_then_train_refuses_an_uncommitted_epoch(tiny_root):
    import dataclasses

    from capture.warmstart import initial_state
    from stores.config import InitConfig

    pipelines, root = tiny_root
    config = load_pipeline("quickstart", pipelines).run({"corruption": 0.6})
    bad = dataclasses.replace(config, init=InitConfig(source="quickstart/corruption=0.6,seed=0", epoch=3))
    samples = slabs.sample_table(str(root / "quickstart" / "corruption=0.6,seed=0.zarr"))
    with pytest.raises(stores.StoreError, match=r"init.epoch: expected one of the committed epochs"):
        initial_state(bad, str(root), samples)


def test_an_unconverged_solver_is_counted_once_not_warned_per_task(tiny_store, monkeypatch, caplog):
    """lbfgs stopping at its iteration limit (forced here with max_iter=1) is scored as
    fitted, recorded in the task's result, and reported in one line by the pipeline."""
    import warnings

    from sklearn.linear_model import LogisticRegression

    from analyze import pipeline, tasks

    monkeypatch.setattr(tasks, "make_probe", lambda name, **kw: LogisticRegression(max_iter=1))
    task = grid.list_tasks([tiny_store])[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning escaping the task fails the test
        result = run_task(task, AnalysisConfig(probes=("logreg",)))
    assert result.not_converged == ("logreg",)
    assert 0.0 <= result.accuracy["logreg"]["test"] <= 1.0
    converged = run_task(task, AnalysisConfig(probes=("masc",)))
    assert converged.not_converged == ()
    with caplog.at_level("WARNING", logger="analyze.pipeline"):
        pipeline._report_unconverged([result, result, converged])
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["logreg: the solver stopped at its iteration limit in 2 of 3 fits (not "
                     "converged); those accuracies are reported as fitted"]


def test_spectral_setting_reaches_the_tasks_and_decides_what_is_recomputed(tiny_store, tmp_path):
    """analysis.spectral: exact fits MASC and VeLPIC as the float64 estimators do; results
    stored under one setting are not reused under the other."""
    import dataclasses

    import yaml

    from analyze import incremental
    from analyze.pipeline import settings_for
    from analyze.probes import MASC

    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    raw["quickstart"]["analysis"].update({"spectral": "exact", "device": "cpu"})
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    settings = settings_for(load_pipeline("quickstart", tmp_path / "p.yaml"))
    assert (settings.spectral, settings.device) == ("exact", "cpu")

    task = grid.list_tasks([tiny_store])[-1]
    exact = run_task(task, dataclasses.replace(settings, probes=("masc",), device=None))
    table = slabs.sample_table(tiny_store)
    x = slabs.slab(tiny_store, task.layer, task.slot).astype(np.float32)
    train = table["split"] == "train"
    # Exact: spectral "exact" runs MASC's own float64 fit on the same slab; BLAS held to
    # the task's thread count here too, so the same sums in the same order.
    with threadpool_limits(BLAS_THREADS):
        masc = MASC(settings.primary_n).fit(x[train], table["label_observed"][train])
        test = ~train
        assert exact.accuracy["masc"]["test"] == np.mean(masc.predict(x[test]) == table["label_true"][test])
    np.testing.assert_array_equal(exact.masc_k, masc.n_components_)

    fast = AnalysisConfig(probes=("masc",))
    stored = grid.collect([run_task(task, fast)], fast)[tiny_store]
    assert incremental.usable(stored, fast)
    assert not incremental.usable(stored, dataclasses.replace(fast, spectral="exact"))


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA device is present")
def test_cuda_analysis_without_a_gpu_is_one_line(tiny_root, tmp_path, capsys):
    import shutil

    from analyze.__main__ import main

    pipelines, root = tiny_root
    shutil.copytree(root / "quickstart", tmp_path / "quickstart")  # nothing analysed yet there
    for store in (tmp_path / "quickstart").glob("*.zarr"):
        shutil.rmtree(store / "analysis", ignore_errors=True)
    code = main(["quickstart", "--pipelines", str(pipelines), "--root", str(tmp_path), "--eager",
                 "--quiet", "--device", "cuda"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: analysis.device: 'cuda' asked for, but torch sees no CUDA device")
