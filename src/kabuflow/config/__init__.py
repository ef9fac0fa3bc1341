"""Typed, frozen run configuration: YAML profiles plus type-checked `--set section.key=value` overrides."""

# The sections (one frozen dataclass each) live in data.py, models.py and cluster.py; the Config tree and
# every way of building one in loading.py. Callers import from here, so a section can move between them.

from kabuflow.config.cluster import PipelineConfig, StorageConfig
from kabuflow.config.data import (
    HORIZONS,
    DataConfig,
    FeaturesConfig,
    FoldsConfig,
    GraphConfig,
    JQuantsConfig,
    NormalizeConfig,
    Source,
    SyntheticConfig,
)
from kabuflow.config.loading import Config, ConfigError, field_type, from_dict, from_json, load
from kabuflow.config.models import (
    SEARCHABLE_SECTIONS,
    AuditConfig,
    EvaluateConfig,
    HPOConfig,
    LightGBMConfig,
    ModelConfig,
    ModelName,
    RidgeConfig,
    SearchDim,
    TrainConfig,
)

__all__ = [
    "HORIZONS",
    "SEARCHABLE_SECTIONS",
    "AuditConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvaluateConfig",
    "FeaturesConfig",
    "FoldsConfig",
    "GraphConfig",
    "HPOConfig",
    "JQuantsConfig",
    "LightGBMConfig",
    "ModelConfig",
    "ModelName",
    "NormalizeConfig",
    "PipelineConfig",
    "RidgeConfig",
    "SearchDim",
    "Source",
    "StorageConfig",
    "SyntheticConfig",
    "TrainConfig",
    "field_type",
    "from_dict",
    "from_json",
    "load",
]
