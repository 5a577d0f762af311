"""The report's table of the published numbers, for a published setup: the paper's
numbers (`analyze.published`) on the same rows as the report's final table."""

from __future__ import annotations

import dataclasses

from . import published

PUBLISHED_COLUMNS = {"model": "model (P1)", "masc_observed": "MASC, observed-label subspaces (P1)",
                     "masc_true": "MASC, true-label subspaces (P1)",
                     "unedited": "unedited (P2, run 1)", "edited": "edited, bias 0 (P2, run 1)",
                     "edited_max": "edited, max over epochs (P2, run 1)"}


def _published_cells(pipeline: str, key: dict) -> dict[str, float | None]:
    """The published numbers for one group of runs (by its corruption level), by
    PUBLISHED_COLUMNS key; None where the source has none."""
    cells = dict.fromkeys(PUBLISHED_COLUMNS)
    found = published.lookup(pipeline, key["corruption"]) if "corruption" in key else None
    for table in (found.p1, found.p2) if found else ():
        if table is not None:
            cells.update(dataclasses.asdict(table))
    return cells


def published_table(pipeline: str, rows: list[dict]) -> str:
    """The published numbers of a published setup, on the rows of the report's final table.

    One row per group of runs, by corruption level, "—" where the source has no number,
    then the setup's caveat and the sources.

    Parameters
    ----------
    pipeline : str
        The pipeline's name.
    rows : list of dict
        `analyze.report.summary_rows`: one per group of runs.

    Returns
    -------
    str
        A Markdown section; "" for a pipeline that is not a published setup.
    """
    setup = published.setup_of(pipeline)
    if setup is None:
        return ""
    columns = list(PUBLISHED_COLUMNS)
    if setup not in published.P2:  # P2's edit table covers the MLPs and CNNs only
        columns = columns[:3]
    lines = ["| runs | " + " | ".join(PUBLISHED_COLUMNS[c] for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for r in rows:
        cells = _published_cells(pipeline, r["key"])
        lines.append(f"| {r['label']} | "
                     + " | ".join("—" if cells[c] is None else f"{cells[c]:.1f}" for c in columns) + " |")
    sources = [published.P1_SOURCE] + ([published.P2_SOURCE] if "edited" in columns else [])
    caveat = published.CAVEATS.get(pipeline)
    caveat = f"\nCaveat: {caveat}\n" if caveat else ""
    table = "\n".join(lines)
    return f"""### Published: {setup}

The published numbers of the {setup} setup on the same rows (test accuracy, %; P1: mean
of 3 runs, best layer; "—": the source has no number, e.g. P1's table has no corruption
0.0).
{caveat}
{table}

P1 also reports MASC on a model trained on clean labels with subspaces from the
corrupted labels (the control in "A clean model probed with corrupted labels" below,
where the pipeline computes it); its numbers are not found in the source.

Sources: {"; ".join(sources)}.
"""
