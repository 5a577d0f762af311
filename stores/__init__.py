"""The run-store format: schema, writer, reader (xarray) and the catalog of runs.

The names below are the public, xarray-facing API: open a run (`open_run`) or many
(`open_runs`, with `tree.runs.sel(...)` to pick runs by swept parameter), read a
layer's activations, the metrics or the weights with their coordinates, and the
pipeline's analysis results as one Dataset or one tidy table. Modules with narrower
jobs are imported by name: `stores.config` (pipeline configs and their vocabularies),
`stores.results` (analysis results I/O), `stores.slabs` (the positional NumPy fast path
of analysis tasks), `stores.layout` (a store's layout, created and checked),
`stores.validate` and `stores.repair`, `stores.lock`, `stores.location`, `stores.schema`
(node names and codecs) and `stores.metadata` (the arrays' expected zarr.json).
"""

from .catalog import list_runs
from .config import Pipeline, RunConfig, load_pipeline, load_pipelines
from .errors import ConfigError, StoreError
from .groups import consolidate
from .reader import (
    activations,
    layer_attrs,
    layers,
    metrics,
    node_attrs,
    open_run,
    param_names,
    penultimate_layer,
    run_attrs,
    weights,
)
from .runs import analysis_results, analysis_table, open_runs
from .schema import SCHEMA_VERSION
from .writer import LayerSpec, RunWriter

__all__ = [
    "ConfigError",
    "LayerSpec",
    "Pipeline",
    "RunConfig",
    "RunWriter",
    "SCHEMA_VERSION",
    "StoreError",
    "activations",
    "analysis_results",
    "analysis_table",
    "consolidate",
    "layer_attrs",
    "layers",
    "list_runs",
    "load_pipeline",
    "load_pipelines",
    "metrics",
    "node_attrs",
    "open_run",
    "open_runs",
    "param_names",
    "penultimate_layer",
    "run_attrs",
    "weights",
]
