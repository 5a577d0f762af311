"""Pipelines and run configs: frozen dataclasses parsed from YAML in one place.

A run store embeds its resolved run config and identifies it by a hash, so capture
(which writes stores) and analyze (which reads them) share this one definition.
The vocabularies the configs choose from (`PROBES`, `MODELS`, `DATASETS`, `DEVICES`,
...) are defined once in `vocab` and imported from here by capture and analyze.
"""

from ..errors import ConfigError
from .analysis import AnalysisConfig, ClusterConfig
from .blocks import CorruptionConfig, DataConfig, InitConfig, ModelConfig, TrainConfig
from .build import build_block, replace_checked, run_config_from_dict
from .capture import CaptureConfig, ScheduleConfig
from .pipeline import PIPELINE_KEYS, Pipeline, load_pipeline, load_pipelines, parse_pipeline
from .run import SWEEP_ALIASES, RunConfig, first_epoch, init_source
from .validators import MAX_SCHEDULED_EPOCHS, check_file_name, check_option, expand_epochs
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
    TOKEN_REDUCTIONS,
    VISION_DATASETS,
)
from .yamlio import DuplicateKeyError, parse_run_overrides, yaml_load

__all__ = [
    "AnalysisConfig", "BUNDLED_DATASETS", "CLUSTER_KINDS", "CORRUPTION_MODES", "CaptureConfig",
    "ClusterConfig", "ConfigError", "CorruptionConfig", "DATASETS", "DEVICES", "DataConfig",
    "DuplicateKeyError", "INIT_EDITS", "INIT_EPOCHS", "INIT_LABELS", "InitConfig", "LOSSES",
    "MAX_SCHEDULED_EPOCHS", "MODELS", "ModelConfig", "OPERATIONS", "OPTIMIZERS", "PIPELINE_KEYS",
    "PROBES", "Pipeline", "REDUCTIONS", "REDUCTION_KINDS", "RunConfig", "SCHEDULE_RULES",
    "SIZED_REDUCTION_KINDS", "SPECTRAL_METHODS", "SWEEP_ALIASES", "ScheduleConfig", "TOKEN_REDUCTIONS",
    "TrainConfig",
    "VISION_DATASETS", "build_block", "check_file_name", "check_option", "expand_epochs",
    "first_epoch", "init_source", "load_pipeline", "load_pipelines", "parse_pipeline",
    "parse_run_overrides", "replace_checked", "run_config_from_dict", "yaml_load",
]
