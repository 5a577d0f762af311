"""The run-store format: schema, writer, reader (xarray) and the catalog of runs."""

from .catalog import list_runs
from .config import Pipeline, RunConfig, load_pipeline, load_pipelines
from .reader import (
    activations,
    committed_slots,
    layer_attrs,
    layers,
    metrics,
    node_attrs,
    open_run,
    param_names,
    penultimate_layer,
    run_attrs,
    sample_table,
    slab,
    weight_slab,
    weight_slabs,
    weights,
)
from .runs import analysis_results, analysis_table, open_runs
from .schema import SCHEMA_VERSION
from .errors import ConfigError, StoreError
from .writer import LayerSpec, RunWriter, consolidate

__all__ = [
    "SCHEMA_VERSION", "ConfigError", "LayerSpec", "Pipeline", "RunConfig", "RunWriter",
    "StoreError", "activations", "analysis_results", "analysis_table", "committed_slots", "consolidate", "layer_attrs", "layers", "list_runs",
    "load_pipeline", "load_pipelines", "metrics", "node_attrs", "open_run", "open_runs", "param_names", "penultimate_layer",
    "run_attrs", "sample_table", "slab", "weight_slab", "weight_slabs", "weights",
]
