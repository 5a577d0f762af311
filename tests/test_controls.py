"""P1's controls and breakdowns (issue 15): the true-label MASC, LDA and QDA, per-class
and flipped/unflipped accuracies, the n ablation, the cross-run control and the
relabelling, each checked against an independent computation on the stored slab."""

from __future__ import annotations


import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis, QuadraticDiscriminantAnalysis
from threadpoolctl import threadpool_limits

import stores
from analyze import grid
from analyze.cross import cross_sources
from analyze.pipeline import analyse
from analyze.probes import MASC, QDA, fit_masc_family, fit_spectral_probes
from analyze.relabel import holdout_mask, relabel
from analyze.spectral import EXACT_BELOW, fast_class_spectra_multi
from analyze.samples import SCORES, Samples, breakdown
from analyze.tasks import run_task, score_probes
from stores import load_pipeline, slabs
from stores.config import PROBES, AnalysisConfig

from .test_probes import ref_masc_predict
from .tolerance import clear_argmax, eigenspace_atol, gamma

SETTINGS = AnalysisConfig(probes=("masc", "masc_true", "lda", "qda"), spectral="exact",
                          masc_components=(0.99, 1.0, 0.5))


def _slab(store: str, task) -> tuple[np.ndarray, dict]:
    return slabs.slab(store, task.layer, task.slot).astype(np.float32), slabs.sample_table(store)


def _task(store: str, layer: str = "relu1", epoch: int = 4):
    return next(t for t in grid.list_tasks([store]) if t.layer == layer and t.epoch == epoch)


def _unsure(X, y, Xte, n) -> np.ndarray:
    """Rows whose reference MASC label two float64 eigensolvers may decide otherwise
    (test_probes.test_masc_matches_reference's bound: Davis-Kahan on each class's gap)."""
    masc = MASC(n).fit(X, y)
    bounds = [eigenspace_atol(X[y == c], k) for c, k in zip(masc.classes_, masc.n_components_)]
    atol = 2 * (np.asarray(bounds) + gamma(np.float64, X.shape[1] + max(masc.n_components_) + 3))
    return ~clear_argmax(masc.decision_function(Xte), atol)


def test_true_label_masc_equals_the_float64_reference(tiny_store):
    """masc_true: subspaces from the TRUE training labels, by the same rule as MASC —
    checked against an explicit eigendecomposition of [X_c; −X_c]ᵀ[X_c; −X_c] per
    class; accuracies agree up to the rows that are near ties between two solvers."""
    task = _task(tiny_store)
    result = run_task(task, SETTINGS)
    x, table = _slab(tiny_store, task)
    samples = Samples.of(table)
    x64 = x.astype(np.float64)
    y_true = table["label_true"]
    want = ref_masc_predict(x64[samples.train], y_true[samples.train], x64, 0.99)
    unsure = _unsure(x64[samples.train], y_true[samples.train], x64, 0.99)
    for score, (rows, labels) in samples.masks().items():
        if not rows.any():
            continue
        ref = np.mean(want[rows] == labels[rows])
        slack = np.sum(unsure & rows) / np.sum(rows)
        assert abs(result.accuracy["masc_true"][score] - ref) <= slack, score
    # and it differs from the observed-label MASC on this corrupted run (a real control)
    assert result.accuracy["masc_true"]["test"] != result.accuracy["masc"]["test"]


def test_lda_and_qda_equal_scikit_learns_on_the_same_slab(tiny_store):
    task = _task(tiny_store, "input")
    result = run_task(task, SETTINGS)
    x, table = _slab(tiny_store, task)
    samples = Samples.of(table)
    with threadpool_limits(1):  # the task's thread count: the same sums
        lda = LinearDiscriminantAnalysis().fit(x[samples.train], samples.observed[samples.train])
        assert result.accuracy["lda"] == breakdown(lda.predict(x), samples).scores
        # digits' corner pixels are constant: scikit-learn's default QDA refuses the
        # singular covariance, and the probe takes the remedy it names (shrinkage)
        with pytest.raises(np.linalg.LinAlgError):
            QuadraticDiscriminantAnalysis().fit(x[samples.train], samples.observed[samples.train])
        probe = QDA().fit(x[samples.train], samples.observed[samples.train])
        assert probe.shrunk_ is not None and "qda" in result.shrunk
        shrunk = QuadraticDiscriminantAnalysis(solver="eigen", shrinkage=probe.shrunk_).fit(
            x[samples.train], samples.observed[samples.train])
        assert result.accuracy["qda"] == breakdown(shrunk.predict(x), samples).scores


def test_qda_takes_scikit_learns_defaults_where_they_are_defined():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5)) + np.repeat(np.eye(3, 5) * 3, 100, axis=0)
    y = np.repeat(np.arange(3), 100)
    probe = QDA().fit(X, y)
    assert probe.shrunk_ is None
    np.testing.assert_array_equal(probe.predict(X), QuadraticDiscriminantAnalysis().fit(X, y).predict(X))


def test_per_class_and_flipped_accuracies_recombine_to_the_overall_ones(tiny_store):
    """Per-class test accuracies weighted by their test rows give the test accuracy;
    flipped and unflipped rows partition the training split and recombine to both
    training accuracies — for every probe and every edit variant (the model too)."""
    task = _task(tiny_store, "relu2")  # the penultimate layer: the edit too
    result = run_task(task, SETTINGS)
    samples = Samples.of(slabs.sample_table(tiny_store))
    counts, per_class = samples.counts(), samples.class_counts()
    assert counts["flipped_observed"] + counts["unflipped"] == counts["train_observed"]
    assert counts["flipped_observed"] > 0  # corruption 0.6: there are flipped rows
    n = counts["train_observed"]
    # float64 sums of at most n_samples terms of size <= 1: within γ_N of the exact sum
    atol = 2 * gamma(np.float64, len(samples.train))
    groups = [(result.accuracy, result.class_accuracy), (result.edit_accuracy, result.edit_class_accuracy)]
    for accuracy, class_accuracy in groups:
        for name, scores in accuracy.items():
            assert np.nansum(class_accuracy[name] * per_class) / per_class.sum() == pytest.approx(
                scores["test"], abs=atol)
            for which in ("observed", "true"):
                mix = (counts["flipped_observed"] * scores[f"flipped_{which}"]
                       + counts["unflipped"] * scores["unflipped"]) / n
                assert mix == pytest.approx(scores[f"train_{which}"], abs=atol), (name, which)
    assert set(result.edit_accuracy) == {"unedited", "edit_zero_bias", "edit_keep_bias"}
    assert list(result.accuracy["masc"]) == list(SCORES)


def test_the_training_rows_are_a_view_where_they_come_first_and_no_probe_writes_them(tiny_store):
    """A captured probe set lists its training rows first: the task reads them as a view
    of the slab (no training copy), and every probe leaves them as they were (the slab is
    read-only here, so a write into it raises); scattered training rows are copied."""
    x = slabs.slab(tiny_store, "relu2", 0).astype(np.float32)
    samples = Samples.of(slabs.sample_table(tiny_store))
    assert samples.train[: samples.train.sum()].all()  # capture's order: train, then test
    view = samples.train_rows(x)
    assert np.shares_memory(view, x)
    np.testing.assert_array_equal(view, x[samples.train])
    x.flags.writeable = False
    scored = score_probes(x, samples, AnalysisConfig())  # every probe (the default)
    assert set(scored.found) == set(PROBES)
    order = np.random.default_rng(0).permutation(len(x))
    shuffled = Samples(samples.train[order], samples.test[order], samples.observed[order],
                       samples.true[order], samples.n_classes)
    x_shuffled = x[order]
    rows = shuffled.train_rows(x_shuffled)
    assert not np.shares_memory(rows, x_shuffled)
    np.testing.assert_array_equal(rows, x_shuffled[shuffled.train])


def test_the_n_ablation_shares_one_decomposition_and_equals_separate_fits(tiny_store):
    x, table = _slab(tiny_store, _task(tiny_store))
    train = table["split"] == "train"
    X, y = x[train], table["label_observed"][train]
    ns = (0.99, 1.0, 0.25, 0.5, 0.75, 3.0)
    # Exact: this layer is narrower than spectral.EXACT_BELOW, so both methods take the
    # float64 reference decomposition, and each MASC keeps the first k rows of the same V.
    assert X.shape[1] < EXACT_BELOW
    for method in ("exact", "fast"):
        family, _ = fit_masc_family(X, y, ns, method=method)
        for n, masc in zip(ns, family):
            alone = fit_spectral_probes(X, y, n, method=method)[0]
            np.testing.assert_array_equal(masc.n_components_, alone.n_components_)
            for a, b in zip(masc.components_, alone.components_):
                np.testing.assert_array_equal(a, b)


def test_relabel_chooses_the_best_layer_on_a_seeded_holdout():
    split = np.array(["train"] * 6 + ["test"] * 10)
    true = np.array([0, 1, 0, 1, 0, 1] + [0, 1] * 5)
    observed = np.array([1, 1, 0, 0, 0, 1] + [0, 1] * 5)
    table = {"split": split, "label_true": true, "label_observed": observed}
    hold = holdout_mask(split, seed=3)
    assert hold.sum() == 2 and not hold[:6].any()
    np.testing.assert_array_equal(hold, holdout_mask(split, seed=3))  # seeded
    good = true.copy()  # right everywhere
    bad = np.where(hold, 1 - true, true)  # wrong exactly on the holdout
    ds = relabel(table, {"a": bad, "b": good}, model=observed, seed=3, epoch=7, n_components=0.99)
    assert ds.attrs["layer"] == "b" and ds.attrs["epoch"] == 7
    np.testing.assert_array_equal(ds["label"].values, good)
    np.testing.assert_array_equal(ds["holdout"].values, hold)
    assert ds["layer_accuracy"].sel(layer="a", part="holdout") == 0.0
    assert ds["layer_accuracy"].sel(layer="a", part="rest") == 1.0
    tie = relabel(table, {"a": good, "b": good}, model=None, seed=3, epoch=7, n_components=0.99)
    assert tie.attrs["layer"] == "a"  # ties: the earlier layer


def test_analysis_stores_the_controls_and_a_new_n_adds_results(tiny_root, tmp_path):
    """End to end on the tiny stores: analysis/masc_n keyed by n (a later analysis with
    another n adds it, keeping the others), analysis/cross on the clean run equal to MASC
    fitted there with the corrupted run's labels, analysis/relabel on the corrupted run."""
    import yaml

    pipelines, root = tiny_root
    analyse(load_pipeline("quickstart", pipelines), str(root), client=None, progress=False)
    clean = str(root / "quickstart" / "corruption=0.0,seed=0.zarr")
    noisy = str(root / "quickstart" / "corruption=0.6,seed=0.zarr")
    assert cross_sources([clean, noisy]) == {clean: ((0.6, "corruption=0.6,seed=0", noisy),)}
    run = stores.open_run(clean)
    cross = run["analysis/cross"].to_dataset()
    task = _task(clean)
    x, table = _slab(clean, task)
    labels = slabs.sample_table(noisy)["label_observed"]
    train = table["split"] == "train"
    settings = load_pipeline("quickstart", pipelines).runs()[0].analysis
    with threadpool_limits(1):
        masc = fit_spectral_probes(x[train], labels[train], settings.masc_ns[0], method="fast")[0]
    want = breakdown(masc.predict(x), Samples.of(table, labels))
    got = cross["accuracy"].sel(labels_from=0.6, layer=task.layer, epoch=task.epoch)
    assert [float(got.sel(score=s)) for s in SCORES] == pytest.approx(
        [want.scores[s] for s in SCORES], abs=0, nan_ok=True)
    assert "relabel" in stores.open_run(noisy)["analysis"] and "cross" not in stores.open_run(noisy)["analysis"]
    ns = [float(n) for n in stores.open_run(noisy)["analysis/masc_n"]["n"].values]
    assert ns == list(settings.masc_ns)
    # a second analysis with another n (on a copy) adds it and keeps every stored one
    raw = yaml.safe_load(pipelines.read_text())
    raw["quickstart"]["analysis"]["masc_components"] = [settings.masc_ns[0], 2]
    other = tmp_path / "p.yaml"
    other.write_text(yaml.safe_dump(raw))
    import shutil

    shutil.copytree(root, tmp_path / "runs")
    analyse(load_pipeline("quickstart", other), str(tmp_path / "runs"), client=None, progress=False)
    again = stores.open_run(str(tmp_path / "runs" / "quickstart" / "corruption=0.6,seed=0.zarr"))
    ablation = again["analysis/masc_n"].to_dataset()
    assert sorted(float(n) for n in ablation["n"].values) == sorted({*settings.masc_ns, 2.0})
    before = stores.open_run(noisy)["analysis/masc_n"].to_dataset()
    for n in settings.masc_ns:
        np.testing.assert_array_equal(ablation["accuracy"].sel(n=n).values, before["accuracy"].sel(n=n).values)


def test_a_new_relabel_seed_recomputes_the_final_epoch_only(tiny_root):
    from analyze import incremental
    from stores.results import stored_analysis
    from analyze.pipeline import settings_for

    pipelines, root = tiny_root
    pipeline = load_pipeline("quickstart", pipelines)
    analyse(pipeline, str(root), client=None, progress=False)
    noisy = str(root / "quickstart" / "corruption=0.6,seed=0.zarr")
    settings, layers = settings_for(pipeline), stores.layers(noisy)
    epochs = [int(e) for e in slabs.committed_slots(noisy)[1]]
    old = stored_analysis(noisy)
    assert old["relabel"].attrs["epoch"] == epochs[-1]
    seed = pipeline.runs()[0].analysis.relabel_seed
    assert old["relabel"].attrs["seed"] == seed
    same = incremental.done(old, settings, layers, final=epochs[-1], relabel_seed=seed)
    assert same == {(layer, e) for layer in layers for e in epochs}
    other = incremental.done(old, settings, layers, final=epochs[-1], relabel_seed=seed + 1)
    assert other == {(layer, e) for layer in layers for e in epochs[:-1]}


def test_the_n_ablation_on_the_fast_float32_path_keeps_each_fits_k_and_rows():
    """Above EXACT_BELOW the fast path forms V = Uᵀ X_c / s in float32; the family forms
    more rows at once, so a GEMM over more columns may round otherwise. Each row is then
    within twice the float32 bound of a length-n_c dot product (γ_{n_c} · |u|ᵀ|X_c|, with
    |u|ᵀ|X_c| ≤ √n_c · max|X_c| for a unit u), relative to its norm s = √λ, plus the
    normalisation's rounding; the k per class is the same rule's."""
    rng = np.random.default_rng(7)
    n_c, d, classes = 150, 300, 3  # Gram side (n_c < d), both above EXACT_BELOW
    X = np.maximum(rng.normal(size=(n_c * classes, d)), 0).astype(np.float32)
    y = np.repeat(np.arange(classes), n_c)
    ns = (0.99, 0.5, 1.0, 20.0)
    family, _ = fit_masc_family(X, y, ns, method="fast")
    spectra, _ = fast_class_spectra_multi(X, y, np.arange(classes), ns)
    u32 = np.finfo(np.float32).eps / 2
    for n, masc in zip(ns, family):
        alone = fit_spectral_probes(X, y, n, method="fast")[0]
        np.testing.assert_array_equal(masc.n_components_, alone.n_components_)
        for c, (a, b) in enumerate(zip(masc.components_, alone.components_)):
            lam = spectra[c][0][: len(a)]
            big = np.sqrt(n_c) * np.abs(X[y == c]).max()
            atol = 2 * (2 * gamma(np.float32, n_c) * big / np.sqrt(lam) + 4 * u32)
            assert np.all(np.abs(a - b) <= atol[:, None]), (n, c)
