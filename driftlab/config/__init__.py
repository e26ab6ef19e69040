"""Experiment configuration: schema, loading and human-readable validation errors."""

from __future__ import annotations

from driftlab.config.loader import (
    ConfigError,
    Problem,
    canonical_json,
    config_hash,
    load_config,
    load_config_text,
    parse_config,
    plan_changes,
    plan_hash,
    read_config_text,
)
from driftlab.config.schema import (
    CategoricalParam,
    DatasetConfig,
    ExperimentConfig,
    FloatParam,
    GateConfig,
    IntParam,
    ModelConfig,
    ProfileConfig,
    ProfilesConfig,
    SeedPlanConfig,
    StorageConfig,
    TuningConfig,
)

__all__ = [
    "CategoricalParam", "ConfigError", "DatasetConfig", "ExperimentConfig", "FloatParam",
    "GateConfig", "IntParam", "ModelConfig", "Problem", "ProfileConfig", "ProfilesConfig",
    "SeedPlanConfig", "StorageConfig", "TuningConfig", "canonical_json", "config_hash",
    "load_config", "load_config_text", "parse_config", "plan_changes", "plan_hash", "read_config_text",
]
