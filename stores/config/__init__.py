"""Pipelines and run configs: frozen dataclasses parsed from YAML in one place.

A run store embeds its resolved run config and identifies it by a hash, so capture
(which writes stores) and analyze (which reads them) share this one definition.
The vocabularies the configs choose from (`PROBES`, `MODELS`, `DATASETS`, `DEVICES`,
...) are defined once in `vocab` and imported from here by capture and analyze.
"""

from ..errors import ConfigError
from .blocks import (
    MAX_SCHEDULED_EPOCHS,
    PIPELINE_KEYS,
    SWEEP_ALIASES,
    AnalysisConfig,
    CaptureConfig,
    ClusterConfig,
    CorruptionConfig,
    DataConfig,
    DuplicateKeyError,
    InitConfig,
    ModelConfig,
    Pipeline,
    RunConfig,
    ScheduleConfig,
    TrainConfig,
    _build,
    check_file_name,
    expand_epochs,
    first_epoch,
    init_source,
    load_pipeline,
    load_pipelines,
    parse_pipeline,
    parse_run_overrides,
    replace_checked,
    run_config_from_dict,
    yaml_load,
)
from .vocab import (
    BUNDLED_DATASETS,
    CLUSTER_KINDS,
    CORRUPTION_MODES,
    DATASETS,
    DEVICES,
    INIT_EDITS,
    INIT_EPOCHS,
    INIT_LABELS,
    LOSSES,
    MODELS,
    OPERATIONS,
    OPTIMIZERS,
    PROBES,
    REDUCTION_KINDS,
    REDUCTIONS,
    SCHEDULE_RULES,
    SIZED_REDUCTION_KINDS,
    SPECTRAL_METHODS,
    VISION_DATASETS,
)

__all__ = [
    "AnalysisConfig", "BUNDLED_DATASETS", "CLUSTER_KINDS", "CORRUPTION_MODES", "CaptureConfig",
    "ClusterConfig", "ConfigError", "CorruptionConfig", "DATASETS", "DEVICES", "DataConfig",
    "DuplicateKeyError", "INIT_EDITS", "INIT_EPOCHS", "INIT_LABELS", "InitConfig", "LOSSES",
    "MAX_SCHEDULED_EPOCHS", "MODELS", "ModelConfig", "OPERATIONS", "OPTIMIZERS", "PIPELINE_KEYS",
    "PROBES", "Pipeline", "REDUCTIONS", "REDUCTION_KINDS", "RunConfig", "SCHEDULE_RULES",
    "SIZED_REDUCTION_KINDS", "SPECTRAL_METHODS", "SWEEP_ALIASES", "ScheduleConfig", "TrainConfig",
    "VISION_DATASETS", "check_file_name", "expand_epochs", "first_epoch", "init_source",
    "load_pipeline", "load_pipelines", "parse_pipeline", "parse_run_overrides", "replace_checked",
    "run_config_from_dict", "yaml_load",
]
